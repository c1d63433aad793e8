"""Stage `index`: the evaluation split's gallery embedded by the trained dqu model, for search.

Embeds the inputs stage's stored gallery pixels (the very pixels evaluate embeds, in its gallery
order) with the model's image encoder and writes gallery.parquet (image_id, path, embedding),
index.faiss (`index.kind`: flat = exact inner product; ivf / hnsw approximate, for millions of
images) and index.json (backbone, weights digest, the params a query is unified with), which
`dqu search` and `dqu serve` read.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.params import Params
from pipeline.core.report import StageReport
from pipeline.core.shards import IMAGES, read_table
from pipeline.search.build import embed, open_model
from trainer.data.meta import read_gallery, read_meta
from trainer.data.streaming import streamed_gallery
from trainer.eval.index import IndexSpec, write_index
from trainer.runtime import resolve_device


def index_spec(params: Params) -> IndexSpec:
    """The FAISS index the index section asks for."""
    cfg = params.index
    return IndexSpec(cfg.kind, cfg.nlist, cfg.nprobe, cfg.hnsw_m, cfg.ef_search)


def run(params: Params, inputs_dir: Path, prepare_dir: Path, model_dir: Path,
        out_dir: Path) -> StageReport:
    """Write gallery.parquet, index.faiss, index.json and report.json into out_dir."""
    cfg = params.index
    inputs_dir, model_dir = Path(inputs_dir), Path(model_dir)
    meta = read_meta(inputs_dir)
    if meta.model != params.clip.model:
        raise ValueError(f"{inputs_dir}/meta.json was made for clip.model {meta.model!r}, "
                         f"params say {params.clip.model!r}; rerun `dvc repro inputs`")
    gallery_ids = read_gallery(inputs_dir, cfg.split)
    if not gallery_ids:
        raise ValueError(f"index.split {cfg.split!r} has an empty gallery in {inputs_dir}; "
                         "check it against prepare/summary.json")
    images = read_table(Path(prepare_dir) / "images.parquet", IMAGES)
    path_of = dict(zip(images["image_id"].to_pylist(), images["path"].to_pylist(), strict=True))
    device = resolve_device(cfg.device)
    model, manifest = open_model(params, model_dir, meta, device)
    pixels = streamed_gallery(inputs_dir, cfg.split, gallery_ids, meta)
    embeddings = embed(model, pixels, meta, cfg.batch_size, device)
    manifest["source"] = {"split": cfg.split}
    write_index(Path(out_dir), gallery_ids, [path_of.get(i, "") for i in gallery_ids],
                embeddings, index_spec(params), manifest)
    report = StageReport("index")
    report.n_in = report.n_out = len(gallery_ids)
    report.write(Path(out_dir) / "report.json")
    print(f"[index] {cfg.split}: {len(gallery_ids)} images x {embeddings.shape[1]} "
          f"({cfg.kind})")
    return report
