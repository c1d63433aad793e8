"""Helpers shared by the stages: params, shards, atomic writes, reports, images, parallelism."""
