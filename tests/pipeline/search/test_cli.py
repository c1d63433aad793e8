"""`dqu index --images`, `dqu search` (one query, --json, batch, --figure) and their errors."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.search import build
from trainer.eval.index import load_index

RUNNER = CliRunner()


def _params_file(tmp_path, model: str = "dqu-test"):
    path = tmp_path / "params.yaml"
    path.write_text(f"clip:\n  model: {model}\ncaption:\n  backend: provided\n"
                    "render:\n  font_size: 8\nindex:\n  device: cpu\n  batch_size: 4\n")
    return path


@pytest.fixture(scope="module")
def folder_index(tiny_search, tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    images = root / "images"
    shutil.copytree(tiny_search["prepare"] / "img", images / "shop")
    (images / "broken.png").write_bytes(b"not a png")
    out = root / "index"
    result = RUNNER.invoke(app, ["index", "--params", str(_params_file(root)), "--model",
                                 str(tiny_search["model"]), "--images", str(images),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    return root, out


def test_index_folder_embeds_like_the_stage(folder_index, tiny_search):
    _, out = folder_index
    folder = load_index(out)
    stage = load_index(tiny_search["index"])
    assert len(folder) == 18  # 18 readable images, the broken one skipped
    assert json.loads((out / "report.json").read_text())["n_skipped"] == 1
    assert folder.manifest["backbone"] == stage.manifest["backbone"]
    # the same image gives the same embedding from the folder and from the inputs stage
    row = folder.position("shop/test-red-8.png")
    assert folder.embeddings[row] == pytest.approx(
        stage.embeddings[stage.position("test-red-8")], abs=1e-5)
    assert not (out / build.PARTS).exists()


def test_index_folder_resumes_from_finished_chunks(folder_index, tiny_search, monkeypatch,
                                                   tmp_path):
    root, _ = folder_index
    monkeypatch.setattr(build, "CHUNK_IMAGES", 8)
    calls = []
    real = build._embed_chunk
    monkeypatch.setattr(build, "_embed_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "index"
    args = ["index", "--params", str(_params_file(root)), "--model", str(tiny_search["model"]),
            "--images", str(root / "images"), "--out", str(out)]

    def killed_after_two(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(build, "_embed_chunk", lambda *a, **k: calls.append(1) or
                        killed_after_two(*a, **k))
    assert RUNNER.invoke(app, args).exit_code != 0
    assert len(list((out / build.PARTS).glob("part-*.parquet"))) == 1
    calls.clear()
    monkeypatch.setattr(build, "_embed_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert RUNNER.invoke(app, args).exit_code == 0
    assert len(calls) == 2  # 19 files in chunks of 8: the first chunk was reused
    assert load_index(out).image_ids == load_index(folder_index[1]).image_ids


def test_search_one_query_json_and_figure(tiny_search, tmp_path):
    reference = tiny_search["prepare"] / "img" / "test-red-8.png"
    figure = tmp_path / "case.png"
    result = RUNNER.invoke(app, ["search", "--index", str(tiny_search["index"]), "--reference",
                                 str(reference), "--text", "make it green instead of red",
                                 "--caption", "a red square", "-k", "3", "--json",
                                 "--figure", str(figure)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) >= {"id", "lambda", "text_query", "keywords", "results"}
    assert len(body["results"]) == 3
    assert "test-red-8" not in [h["image_id"] for h in body["results"]]  # reference masked
    assert Image.open(figure).size[0] > 3 * 100


def test_search_batch(tiny_search, tmp_path):
    queries = tmp_path / "q.jsonl"
    reference = str(tiny_search["prepare"] / "img" / "test-blue-14.png")
    queries.write_text(json.dumps({"id": "a", "reference": reference, "text": "make it red",
                                   "caption": "a blue square"}) + "\n\n"
                       + json.dumps({"id": "b", "reference": reference, "text": "make it green",
                                     "caption": "a blue square"}) + "\n")
    out = tmp_path / "r.jsonl"
    result = RUNNER.invoke(app, ["search", "--index", str(tiny_search["index"]), "--queries",
                                 str(queries), "--out", str(out), "-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(len(r["results"]) == 2 for r in rows)


@pytest.mark.parametrize(("args", "says"), [
    (["--text", "make it red"], "give --reference"),
    (["--reference", "REF", "--text", ""], "text is empty"),
    (["--reference", "REF", "--text", "make it red", "--caption", " "],
     "give the reference's caption"),
    (["--reference", "missing.png", "--text", "make it red", "--caption", "x"],
     "image file not found"),
    (["--reference", "REF", "--text", "x", "--caption", "x", "-k", "0"], "at least one"),
])
def test_search_errors_say_what_is_wrong(tiny_search, args, says):
    reference = str(tiny_search["prepare"] / "img" / "test-blue-14.png")
    args = [reference if a == "REF" else a for a in args]
    result = RUNNER.invoke(app, ["search", "--index", str(tiny_search["index"]), *args])
    assert result.exit_code == 2
    assert says in result.output


def test_a_model_of_another_backbone_is_refused(tiny_search, tmp_path):
    result = RUNNER.invoke(app, ["index", "--params", str(_params_file(tmp_path, "dqu-tiny")),
                                 "--model", str(tiny_search["model"]), "--images",
                                 str(tiny_search["prepare"] / "img"), "--out",
                                 str(tmp_path / "i")])
    assert result.exit_code == 2 and "does not fit" in result.output
    # an index and a model dir from different backbones: search refuses the pair
    manifest = json.loads((tiny_search["index"] / "index.json").read_text())
    other = tmp_path / "index"
    shutil.copytree(tiny_search["index"], other)
    manifest["backbone"]["model"] = "dqu-tiny"
    (other / "index.json").write_text(json.dumps(manifest))
    result = RUNNER.invoke(app, ["search", "--index", str(other), "--reference",
                                 str(tiny_search["prepare"] / "img" / "test-red-8.png"),
                                 "--text", "make it green", "--caption", "x"])
    assert result.exit_code == 2 and "backbone 'dqu-tiny'" in result.output
    assert pq.read_table(other / "gallery.parquet").num_rows == 6


def test_an_unknown_index_folder_says_so(tmp_path):
    result = RUNNER.invoke(app, ["search", "--index", str(tmp_path), "--reference", "x.png",
                                 "--text", "x"])
    assert result.exit_code == 2 and "not an index folder" in result.output


def test_the_index_stage_gives_equal_bytes_on_a_rerun(tiny_search, tmp_path):
    from pipeline.stages import index

    params = tiny_search["params"]
    index.run(params, tiny_search["inputs"], tiny_search["prepare"], tiny_search["model"],
              tmp_path)
    for name in ("gallery.parquet", "index.faiss", "index.json", "report.json"):
        assert (tmp_path / name).read_bytes() == (tiny_search["index"] / name).read_bytes()
