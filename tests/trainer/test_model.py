"""Fusion model, InfoNCE loss, recall@K and the open_clip gateway on the tiny `dqu-test` CLIP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import ClipConfig
from trainer.encoders import EncoderConfigError, input_spec, load_clip, tokenize
from trainer.fusion import DQUModel
from trainer.loss import gather_with_grad, info_nce_loss
from trainer.metrics import recall_at_k, topk_ids


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return load_clip(ClipConfig(model="dqu-test"), "cpu")


def _batch(size: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.randint(1, 49000, (size, 8))
    tokens[:, -1] = 49407
    return tokens, torch.randn(size, 3, 16, 16), torch.randn(size, 3, 16, 16)


def test_input_spec_and_tokenize_without_building_the_model() -> None:
    spec = input_spec("dqu-test")
    assert (spec.image_size, spec.context_length) == (16, 8)
    assert len(spec.mean) == 3 and len(spec.std) == 3
    ids = tokenize("dqu-test", ["a red dress, but blue", ""])
    assert ids.dtype == np.int32 and ids.shape == (2, 8)
    assert ids[0, 0] == 49406  # start-of-text


def test_unknown_model_and_missing_checkpoint_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderConfigError, match="unknown open_clip model"):
        input_spec("no-such-model")
    with pytest.raises(EncoderConfigError, match="does not exist"):
        load_clip(ClipConfig("dqu-test", str(tmp_path / "missing.pt")))


def test_local_checkpoint_is_loaded(tmp_path: Path, bundle) -> None:
    path = tmp_path / "clip.pt"
    torch.save(bundle.model.state_dict(), path)
    loaded = load_clip(ClipConfig("dqu-test", str(path)))
    for name, value in bundle.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value)


@pytest.mark.parametrize("mode", ["dqu", "text", "visual"])
def test_modes_give_normalised_features_of_the_right_shape(bundle, mode: str) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, mode, dropout=0.5).eval()
    tokens, visual, target = _batch()
    query, target_features = model(tokens, visual, target)
    assert query.shape == target_features.shape == (4, bundle.embed_dim)
    torch.testing.assert_close(query.norm(dim=-1), torch.ones(4))
    with torch.no_grad():
        if mode == "text":
            torch.testing.assert_close(query, model.encode_text(tokens))
        if mode == "visual":
            torch.testing.assert_close(query, model.encode_image(visual))
    assert (model.head is None) == (mode != "dqu")
    assert model.logit_scale.item() == 10.0


def test_fused_query_is_lambda_mix_of_text_and_visual(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "dqu", dropout=0.5).eval()
    tokens, visual, _ = _batch(5)
    with torch.no_grad():
        text, image = model.encode_query_parts(tokens, visual)
        fused, weight = model.fuse(text, image)
    assert weight.shape == (5, 1)
    assert bool(((weight > 0) & (weight < 1)).all())
    expected = weight * text + (1 - weight) * image
    torch.testing.assert_close(fused, expected / expected.norm(dim=-1, keepdim=True))


def test_head_layout_is_the_official_one(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "dqu", dropout=0.3)
    layers = [type(m).__name__ for m in model.head.mlp]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear",
                      "Sigmoid"]
    assert model.head.mlp[0].in_features == 2 * bundle.embed_dim
    assert model.head.mlp[2].p == 0.3


def test_info_nce_equals_hand_computed_log_softmax() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    targets = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    scale = torch.tensor(2.0)
    expected = 0.0
    for i in range(3):
        logits = [2.0 * sum(q * t for q, t in zip(queries[i].tolist(), targets[j].tolist(),
                                                    strict=True)) for j in range(3)]
        expected -= logits[i] - math.log(sum(math.exp(v) for v in logits))
    loss = info_nce_loss(queries, targets, scale)
    assert loss.item() == pytest.approx(expected / 3, rel=1e-6)


def test_gather_is_identity_without_a_process_group() -> None:
    tensor = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(tensor) is tensor


def _naive_recall(scores, targets, excludes, k) -> float:
    hits = 0
    for row, target, exclude in zip(scores.tolist(), targets.tolist(), excludes.tolist(),
                                    strict=True):
        ranked = sorted((i for i in range(len(row)) if i != exclude), key=lambda i: -row[i])
        hits += target in ranked[:k]
    return 100.0 * hits / len(scores)


def test_recall_matches_a_naive_implementation_with_masking() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 30, generator=generator)
    targets = torch.randint(0, 30, (50,), generator=generator)
    excludes = torch.randint(-1, 30, (50,), generator=generator)
    # Make the reference the best-scoring item for half the queries, so masking matters.
    rows = torch.arange(0, 50, 2)
    keep = excludes[rows] >= 0
    scores[rows[keep], excludes[rows[keep]]] = 100.0
    ks = (1, 5, 10)
    got = recall_at_k(scores, targets, ks, excludes)
    for k in ks:
        assert got[f"R@{k}"] == pytest.approx(_naive_recall(scores, targets, excludes, k))
    unmasked = recall_at_k(scores, targets, ks)
    no_exclusion = torch.full((50,), -1)
    for k in ks:
        assert unmasked[f"R@{k}"] == pytest.approx(_naive_recall(scores, targets, no_exclusion, k))
    assert unmasked != got  # the planted references change the ranking only when not masked


def test_recall_counts_missing_or_masked_targets_as_misses() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.1, 0.2, 0.3]])
    result = recall_at_k(scores, torch.tensor([0, 1, -1]), (1, 3), torch.tensor([0, -1, -1]))
    assert result == {"R@1": pytest.approx(100 / 3), "R@3": pytest.approx(100 / 3)}


def test_topk_ids_rank_descending_and_skip_the_reference() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    assert topk_ids(scores, 3).tolist() == [[1, 3, 2]]
    assert topk_ids(scores, 3, torch.tensor([1])).tolist() == [[3, 2, 0]]
    assert topk_ids(scores, 10).shape == (1, 4)


def test_compiled_blocks_compute_the_same_features_and_gradients() -> None:
    # aot_eager runs the same dynamo capture and autograd split as inductor without generating
    # C++ (minutes on 2 cores); the GPU benchmark exercises inductor itself.
    from trainer.encoders import compile_blocks

    torch.manual_seed(0)
    bundles = [load_clip(ClipConfig(model="dqu-test"), "cpu") for _ in range(2)]
    eager, compiled = (DQUModel(b.model, b.embed_dim, "dqu", dropout=0.0) for b in bundles)
    compiled.load_state_dict(eager.state_dict())
    assert compile_blocks(compiled.clip, backend="aot_eager") > 0
    batch = _batch()
    features = []
    for model in (eager, compiled):
        query, target = model(*batch)
        (query.sum() + target.sum()).backward()
        features.append(torch.cat([query, target]))
    torch.testing.assert_close(features[1], features[0], rtol=1e-5, atol=1e-6)
    grads = [{name: p.grad for name, p in model.clip.named_parameters()}
             for model in (eager, compiled)]
    for name, grad_eager in grads[0].items():
        if name == "logit_scale":  # CLIP's own scale; DQU uses its own
            continue
        torch.testing.assert_close(grads[1][name], grad_eager, rtol=1e-4, atol=1e-6, msg=name)
