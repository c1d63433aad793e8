"""Contrastive pretraining of the tiny CLIP and where train takes its start weights from."""

import numpy as np
import torch

from trainer.config import ClipConfig, PretrainConfig
from trainer.encoders import load_clip
from trainer.pretrain import CHECKPOINT, PairSet, clip_loss, pair_recall, pretrain, start_weights


def test_clip_loss_is_low_for_matched_pairs() -> None:
    features = torch.nn.functional.normalize(torch.eye(4), dim=-1)
    scale = torch.tensor(np.log(100.0))
    assert clip_loss(features, features, scale) < 0.01
    assert clip_loss(features, features.roll(1, 0), scale) > 10


def test_pretrain_learns_to_match_images_to_texts() -> None:
    bundle = load_clip(ClipConfig(model="dqu-test"))
    rng = np.random.default_rng(0)
    side, length = bundle.spec.image_size, bundle.spec.context_length
    # Four distinct images, each with its own text, repeated.
    images = rng.integers(0, 255, (4, side, side, 3), dtype=np.uint8)
    tokens = np.zeros((4, length), dtype=np.int32)
    tokens[:, 0], tokens[:, 1], tokens[:, 2] = 49406, np.arange(4) + 100, 49407
    pairs = PairSet(np.repeat(images, 4, 0), np.repeat(tokens, 4, 0), bundle.spec.mean,
                    bundle.spec.std)
    losses = pretrain(bundle.model, pairs, PretrainConfig(epochs=30, batch_size=8, lr=3e-3,
                                                          warmup_steps=2, device="cpu"))
    assert losses[-1] < losses[0] * 0.5
    assert pair_recall(bundle.model, pairs, torch.device("cpu")) == 100.0


def test_start_weights_prefer_the_pretrain_checkpoint(tmp_path) -> None:
    clip = ClipConfig(model="dqu-test", pretrained=None)
    assert start_weights(clip, None) == clip
    assert start_weights(clip, tmp_path) == clip  # pretrain.epochs 0 wrote no checkpoint
    (tmp_path / CHECKPOINT).write_bytes(b"")
    assert start_weights(clip, tmp_path).pretrained == str(tmp_path / CHECKPOINT)
