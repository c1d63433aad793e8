"""Helpers shared by the stages: params, shards, reports, images, parallelism."""
