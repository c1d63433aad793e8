"""Utilities the trainer and the pipeline's stages both use, with no torch and no training.

`atomic` (files written by temp file, fsync and rename), `shards` (STEM-00000-of-00004.parquet
naming and the whole-set check) and `progress` (a tqdm bar on a terminal, periodic lines in
DVC logs).
"""
