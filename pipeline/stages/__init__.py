"""Pipeline stages: one module per DVC stage, each with a `run(params, ...)` entry point."""
