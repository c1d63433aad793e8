"""Fusion model, InfoNCE loss, recall@K and the open_clip gateway on the tiny `dqu-test` CLIP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import QUERY_MODES, ClipConfig
from trainer.models.clip import EncoderConfigError, input_spec, load_clip, tokenize
from trainer.models.combiner import CombinerHead
from trainer.models.fusion import FUSIONS, DQUModel, fusion_method, register
from trainer.models.loss import gather_with_grad, info_nce_loss


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


@pytest.mark.parametrize("mode", QUERY_MODES)
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
    assert (model.head is None) == (mode not in ("dqu", "combiner"))
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


def test_every_query_mode_is_a_registered_fusion_method() -> None:
    assert tuple(FUSIONS) == QUERY_MODES
    assert [(m.uses_text, m.uses_visual, m.raw_inputs) for m in FUSIONS.values()] == [
        (True, True, False), (True, False, False), (False, True, False), (True, True, True),
        (True, True, True)]
    with pytest.raises(ValueError, match="unknown query mode 'late'"):
        fusion_method("late")
    with pytest.raises(ValueError, match="registered already"):
        register(FUSIONS["dqu"])


def test_fixed_lambda_is_the_training_free_mix_without_a_head(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "dqu", fixed_lambda=0.5).eval()
    assert model.head is None and model.head_parameters() == [model.logit_scale]
    tokens, visual, _ = _batch(3)
    with torch.no_grad():
        text, image = model.encode_query_parts(tokens, visual)
        fused, weight = model.fuse(text, image)
    assert torch.equal(weight, torch.full((3, 1), 0.5))
    # Bit for bit the normalised equal mix the paper's training-free DQU is.
    assert torch.equal(fused, torch.nn.functional.normalize(0.5 * text + 0.5 * image, dim=-1))
    with pytest.raises(ValueError, match="fixed_lambda is a dqu setting"):
        DQUModel(bundle.model, bundle.embed_dim, "text", fixed_lambda=0.5)


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


def test_compiled_blocks_compute_the_same_features_and_gradients() -> None:
    # aot_eager runs the same dynamo capture and autograd split as inductor without generating
    # C++ (minutes on 2 cores); the GPU benchmark exercises inductor itself.
    from trainer.models.clip import compile_blocks

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


def test_combiner_has_clip4cirs_layout_and_size() -> None:
    head = CombinerHead(128, 0.5)
    # 2 x Linear(128, 512) + 2 x Linear(1024, 1024) + Linear(1024, 128) + Linear(1024, 1)
    assert sum(p.numel() for p in head.parameters()) == 2_363_521
    assert [type(m).__name__ for m in head.dynamic_scalar] == [
        "Linear", "ReLU", "Dropout", "Linear", "Sigmoid"]
    assert head.text_projection[2].p == 0.5


def test_combiner_output_is_the_residual_plus_the_scalar_mix_of_raw_features(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "combiner", dropout=0.5).eval()
    tokens, visual, _ = _batch(4)
    with torch.no_grad():
        text, image = model.encode_query_parts(tokens, visual)
        # raw encoder outputs, as CLIP4Cir feeds them (not normalised)
        torch.testing.assert_close(text, bundle.model.encode_text(tokens).float())
        torch.testing.assert_close(image, bundle.model.encode_image(visual).float())
        fused, weight = model.fuse(text, image)
        head = model.head
        joint = torch.cat([head.text_projection(text), head.image_projection(image)], dim=-1)
        expected = head.residual(joint) + weight * text + (1 - weight) * image
    assert weight.shape == (4, 1) and bool(((weight > 0) & (weight < 1)).all())
    torch.testing.assert_close(fused, torch.nn.functional.normalize(expected, dim=-1))


def test_sum_is_the_normalised_sum_of_raw_features(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "sum").eval()
    tokens, visual, target = _batch(3)
    with torch.no_grad():
        query, target_features = model(tokens, visual, target)
        raw = bundle.model.encode_text(tokens) + bundle.model.encode_image(visual)
    torch.testing.assert_close(query, torch.nn.functional.normalize(raw.float(), dim=-1))
    torch.testing.assert_close(target_features, model.encode_image(target))
    assert model.head is None


def test_a_fixed_logit_scale_is_not_trained(bundle) -> None:
    model = DQUModel(bundle.model, bundle.embed_dim, "combiner", logit_scale_init=100.0,
                     learn_logit_scale=False)
    assert model.logit_scale.item() == 100.0 and not model.logit_scale.requires_grad
    assert all(p is not model.logit_scale for p in model.head_parameters())
    assert len(model.head_parameters()) == len(list(model.head.parameters()))
