"""`dqu index --clip --pretrained` (no trained head): training-free DQU search at a fixed lambda.

The tiny CLIP is saved into a local Hugging Face cache and named by an open_clip tag, so it
loads through the very path a hub tag (e.g. ViT-H-14 laion2b_s32b_b79k) takes, offline.
"""

from __future__ import annotations

import json

import huggingface_hub.constants as hub
import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.search import Query, Searcher
from trainer.config import ClipConfig
from trainer.eval.index import load_index
from trainer.models.clip import load_clip

RUNNER = CliRunner()
TAG = "tiny_hub"  # open_clip cleans tags to this form
REPO = "dqu/tiny-test"


@pytest.fixture(scope="module")
def hub_clip(tmp_path_factory):
    """A tiny dqu-test CLIP in a local HF cache under an open_clip tag; also as a plain file."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(7)
    state = {k: v.contiguous() for k, v in load_clip(ClipConfig("dqu-test")).model
             .state_dict().items()}
    repo = root / "cache" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file(state, str(snapshot / "open_clip_model.safetensors"))
    save_file(state, str(root / "clip.safetensors"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub, "HF_HUB_OFFLINE", True)
        patch.setattr(hub, "HF_HUB_CACHE", str(root / "cache"))
        patch.setitem(open_clip.pretrained._PRETRAINED, "dqu-test",
                      {TAG: open_clip.pretrained._pcfg(hf_hub=f"{REPO}/")})
        yield {"root": root, "file": root / "clip.safetensors"}


def _index(tiny_search, tmp_path, *extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"
    params.write_text("clip:\n  model: dqu-tiny\ncaption:\n  backend: provided\n"
                      "render:\n  font_size: 8\nindex:\n  device: cpu\n  batch_size: 4\n")
    out = tmp_path / "index"
    result = RUNNER.invoke(app, ["index", "--params", str(params), "--clip", "dqu-test",
                                 "--images", str(tiny_search["prepare"] / "img"), "--out",
                                 str(out), *extra])
    return result, out


def _search(index, reference, *extra: str) -> dict:
    result = RUNNER.invoke(app, ["search", "--index", str(index), "--reference", str(reference),
                                 "--text", "make it green instead of red", "--caption",
                                 "a red square", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_hub_tag_index_searches_at_lambda_one_half(hub_clip, tiny_search, tmp_path):
    result, out = _index(tiny_search, tmp_path, "--pretrained", TAG)
    assert result.exit_code == 0, result.output
    assert "training-free, lambda 0.5" in result.output
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["training_free"] == {"lambda": 0.5}
    assert manifest["backbone"] == {"model": "dqu-test", "pretrained": TAG}
    assert manifest["model_dir"] is None and manifest["params"]["clip"]["model"] == "dqu-test"
    body = _search(out, tiny_search["prepare"] / "img" / "test-red-8.png")
    assert body["lambda"] == 0.5 and body["lambda_fixed"] is True
    assert len(body["results"]) == 10  # 18 images, the reference masked
    assert "test-red-8" not in [h["image_id"] for h in body["results"]]
    text = RUNNER.invoke(app, ["search", "--index", str(out), "--reference",
                               str(tiny_search["prepare"] / "img" / "test-red-8.png"), "--text",
                               "make it green", "--caption", "a red square"]).output
    assert "0.500 (fixed: training-free index)" in text


def test_hub_tag_and_file_load_the_same_weights(hub_clip, tiny_search, tmp_path):
    _, by_tag = _index(tiny_search, tmp_path / "tag", "--pretrained", TAG)
    result, by_file = _index(tiny_search, tmp_path / "file", "--pretrained",
                             str(hub_clip["file"]), "--lambda", "1")
    assert result.exit_code == 0, result.output
    tag, file = load_index(by_tag), load_index(by_file)
    assert np.array_equal(tag.embeddings, file.embeddings)
    # other weights give other embeddings: the tag really loaded the saved ones
    torch.manual_seed(8)
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in load_clip(ClipConfig("dqu-test")).model
               .state_dict().items()}, str(other))
    _, by_other = _index(tiny_search, tmp_path / "other", "--pretrained", str(other))
    assert not np.allclose(load_index(by_other).embeddings, tag.embeddings, atol=1e-3)
    assert json.loads((by_file / "index.json").read_text())["model_sha256"]


def test_lambda_one_is_the_textual_query_alone(hub_clip, tiny_search, tmp_path):
    _, text_only = _index(tiny_search, tmp_path / "t", "--pretrained", TAG, "--lambda", "1")
    _, visual_only = _index(tiny_search, tmp_path / "v", "--pretrained", TAG, "--lambda", "0")
    reference = tiny_search["prepare"] / "img" / "test-red-8.png"
    searcher = Searcher(text_only)
    hit = searcher.search_many([Query(reference, "make it green instead of red",
                                      caption="a red square")], 3, with_unified=True)[0]
    text_feat = searcher.model.encode_text(torch.from_numpy(
        hit["unified"].tokens[None].astype(np.int64)))[0].detach().numpy()
    top = searcher.index.embeddings[searcher.index.position(hit["results"][0]["image_id"])]
    assert hit["lambda"] == 1.0
    assert hit["results"][0]["score"] == pytest.approx(float(top @ text_feat), abs=1e-5)
    assert _search(visual_only, reference)["lambda"] == 0.0


@pytest.mark.parametrize(("extra", "says"), [
    ([], "needs pretrained weights"),
    (["--pretrained", TAG, "--lambda", "1.5"], "between 0"),
    (["--pretrained", "no_such_tag"], "no pretrained tag"),
    (["--pretrained", "missing/clip.safetensors"], "does not exist"),
])
def test_training_free_option_errors(hub_clip, tiny_search, tmp_path, extra, says):
    result, _ = _index(tiny_search, tmp_path, *extra)
    assert result.exit_code != 0 and says in result.output, result.output


def test_model_and_training_free_options_do_not_mix(hub_clip, tiny_search, tmp_path):
    result, out = _index(tiny_search, tmp_path, "--pretrained", TAG, "--model",
                         str(tiny_search["model"]))
    assert result.exit_code == 2 and "one or the other" in result.output
    _, out = _index(tiny_search, tmp_path, "--pretrained", TAG)
    result = RUNNER.invoke(app, ["search", "--index", str(out), "--model",
                                 str(tiny_search["model"]), "--reference",
                                 str(tiny_search["prepare"] / "img" / "test-red-8.png"),
                                 "--text", "make it green", "--caption", "x"])
    assert result.exit_code == 2 and "training-free" in result.output


def test_the_server_shows_lambda_as_fixed(hub_clip, tiny_search, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from pipeline.search.server import create_app

    _, out = _index(tiny_search, tmp_path, "--pretrained", TAG)
    client = TestClient(create_app(Searcher(out)))
    body = client.post("/search", data={"text": "make it green", "caption": "a red square",
                                        "reference_id": "test-red-8.png"}).json()
    assert body["lambda"] == 0.5 and body["lambda_fixed"] is True
    assert client.get("/gallery").json()["lambda_fixed"] is True
