"""The DQU-CIR trainer: a library over open_clip taking typed configs (no params.yaml, no CLI).

Packages, each with one job; dependencies point down this list, never up:

- `util/`: atomic writes, shard naming and progress, shared with the pipeline's stages;
- `models/`: the one open_clip gateway and our model configs, the fusion methods behind one
  registry, the loss, saving and loading a trained model;
- `data/`: the one reader of the inputs stage's shards (meta, pixels, tables, streaming), the
  training Dataset, its sampler and augmentation;
- `eval/`: one evaluation flow, embed -> rank -> score, its protocols, and the FAISS index for
  search; nothing in it imports training;
- `train/`: the training loop, epoch step, selection and early stopping, checkpoints, DVCLive,
  torchrun, and the demo's contrastive pretraining.

The root holds the configs (`config.py`), their value checks (`checks.py`) and run-time
choices (`runtime.py`: device, precision, seeds, threads, rank).
"""
