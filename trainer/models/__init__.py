"""The model: CLIP through one open_clip gateway, the fusion methods, the loss, weights on disk.

`clip` (the only module that builds open_clip models or tokenizers, and our configs in
`configs/`, registered with open_clip), `names` (whether a model name exists, without importing
torch), `fusion` (FUSIONS, the registry of query modes, and DQUModel), `loss` (batch InfoNCE,
with DDP-wide negatives), `saved` (build_model, load_trained, the weights file names).
"""
