"""Training: the loop, one epoch's steps, best-epoch selection, checkpoints, logs, torchrun.

`loop` (train: epochs, validation, selection, early stopping), `run` (one rank's run: settings,
data, model, optimiser, resume), `optim` (AdamW groups, lr schedule, scaler), `epoch` (end to
end or on cached frozen-encoder features), `selection` (val metrics through trainer.eval and the
official stop rule), `checkpoint` (resumable state), `live_log` (DVCLive), `distributed`
(torchrun process groups and collectives), `pretrain` (the demo's contrastive pretraining).
"""
