"""Tiny datasets and input shards built in tests (models: devkit.tiny)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.core.params import PrepareParams
from pipeline.core.shards import CAPTIONS, write_table
from pipeline.datasets.tables import DatasetTables

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def augment_scratch(root: Path) -> Iterator[tuple[object, object, object]]:
    """(faults.Scratch under `root`, its plain params, the same with train.augment: official),
    with the scratch adapter registered while the block runs."""
    from devkit import faults

    faults.write_base_dataset(root / "base")
    with faults.registered_adapter():
        scratch = faults.Scratch(root / "base", root / "scratch")
        plain = scratch.params("fail")
        yield scratch, plain, dataclasses.replace(
            plain, train=dataclasses.replace(plain.train, augment="official"))


def write_json(path: Path, data: object) -> None:
    """Write `data` as JSON at `path`, creating its folder (annotation files of replicas)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}


def tiny_dataset(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Three colours x two sizes per split; queries ask for another colour."""
    images, gallery, triplets, descriptions = [], [], [], {}
    for split, n_pairs in (("train", 8), ("val", 4), ("test", 4)):
        for colour, rgb in COLOURS.items():
            for size in (8, 14):
                iid = f"{split}-{colour}-{size}"
                path = out_dir / "img" / f"{iid}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                img = Image.new("RGB", (32, 32), (200, 200, 200))
                img.paste(rgb, (16 - size, 16 - size, 16 + size, 16 + size))
                img.save(path)
                images.append({"image_id": iid, "path": str(path)})
                gallery.append({"split": split, "image_id": iid})
                descriptions[iid] = f"a {'small' if size == 8 else 'large'} {colour} square"
        names = list(COLOURS)
        for k in range(n_pairs):
            old, new, size = names[k % 3], names[(k + 1) % 3], (8, 14)[k % 2]
            triplets.append(
                {
                    "split": split,
                    "pair_id": f"{split}-{k}",
                    "reference_id": f"{split}-{old}-{size}",
                    "target_id": f"{split}-{new}-{size}",
                    "modification": f"make it {new} instead of {old}",
                    "caption": f"a {old} square",
                    "keywords": [new],
                    "subset": None,
                }
            )
    # Full descriptions, like the demo's, for the pretrain stage.
    ids = sorted(descriptions)
    write_table(pa.table({"image_id": ids, "caption": [descriptions[i] for i in ids]},
                         schema=CAPTIONS), out_dir / "image_captions.parquet", CAPTIONS)
    return DatasetTables.from_rows(triplets, images, gallery)


MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def write_inputs(root: Path, *, n_train: int = 24, n_val: int = 8, n_images: int = 20,
                 image_size: int = 16, context_length: int = 8, model: str = "dqu-test",
                 query_shards: int = 2, image_shards: int = 2, seed: int = 0,
                 row_group_size: int | None = None) -> dict:
    """Write a random inputs dir (meta, query/image shards, gallery); return what was written."""
    rng = np.random.default_rng(seed)
    raw_rng = np.random.default_rng([seed, 1])
    root.mkdir(parents=True, exist_ok=True)
    pixel_bytes = image_size * image_size * 3
    image_ids = [f"img{i:03d}" for i in range(n_images)]
    images = {i: rng.integers(0, 256, pixel_bytes, dtype=np.uint8).tobytes() for i in image_ids}
    queries = []
    for split, count in (("train", n_train), ("val", n_val)):
        for q in range(count):
            tokens = rng.integers(1, 49000, context_length).astype(np.int32)
            tokens[-1] = 49407  # CLIP pools the text at the highest (end-of-text) id
            # its own generator, so the other columns stay what they were before it existed
            modification = raw_rng.integers(1, 49000, context_length).astype(np.int32)
            modification[-1] = 49407
            reference, target = rng.choice(n_images, 2, replace=False)
            queries.append({
                "split": split,
                "pair_id": f"{split}-{q:04d}",
                "reference_id": image_ids[reference],
                "target_id": image_ids[target],
                "text_tokens": tokens.tolist(),
                "modification_tokens": modification.tolist(),
                "visual_pixels": rng.integers(0, 256, pixel_bytes, dtype=np.uint8).tobytes(),
            })
    queries.sort(key=lambda r: (r["split"], r["pair_id"]))
    schema = pa.schema([("split", pa.string()), ("pair_id", pa.string()),
                        ("reference_id", pa.string()), ("target_id", pa.string()),
                        ("text_tokens", pa.list_(pa.int32())),
                        ("modification_tokens", pa.list_(pa.int32())),
                        ("visual_pixels", pa.binary())])
    for shard, part in enumerate(np.array_split(np.arange(len(queries)), query_shards)):
        rows = [queries[i] for i in part]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                       root / f"queries-{shard:05d}-of-{query_shards:05d}.parquet",
                       row_group_size=row_group_size)
    image_schema = pa.schema([("image_id", pa.string()), ("pixels", pa.binary())])
    for shard, part in enumerate(np.array_split(np.arange(n_images), image_shards)):
        rows = [{"image_id": image_ids[i], "pixels": images[image_ids[i]]} for i in part]
        pq.write_table(pa.Table.from_pylist(rows, schema=image_schema),
                       root / f"images-{shard:05d}-of-{image_shards:05d}.parquet",
                       row_group_size=row_group_size)
    gallery = [{"split": s, "image_id": i} for s in ("train", "val") for i in image_ids]
    pq.write_table(pa.Table.from_pylist(gallery), root / "gallery.parquet")
    meta = {"model": model, "image_size": image_size, "mean": list(MEAN), "std": list(STD),
            "context_length": context_length}
    (root / "meta.json").write_text(json.dumps(meta))
    return {"queries": queries, "images": images, "image_ids": image_ids, "meta": meta}




def tiny_search_pipeline(root: Path) -> dict:
    """The tiny dataset through prepare..train dqu, evaluate's per_query rows and the index
    stage (KeyBERT on the packaged MiniLM), as dvc.yaml chains them; returns the folders."""
    import torch

    from pipeline.core.params import (
        CaptionParams,
        EvaluateParams,
        IndexParams,
        KeywordsParams,
        ParallelParams,
        Params,
        PrepareParams,
        RenderParams,
    )
    from pipeline.datasets import ADAPTERS
    from pipeline.stages import caption, evaluate, index, inputs, keywords, prepare, render, train
    from trainer.config import ClipConfig, TrainConfig
    from trainer.eval.embed import embed
    from trainer.eval.rank import rank
    from trainer.eval.split import load_eval_split
    from trainer.models.saved import load_trained

    ADAPTERS["tiny"] = tiny_dataset
    params = Params(
        parallel=ParallelParams(scheduler="sync"), prepare=PrepareParams(dataset="tiny"),
        caption=CaptionParams(backend="provided"), keywords=KeywordsParams(shards=1),
        render=RenderParams(shards=1, font_size=8), clip=ClipConfig(model="dqu-test"),
        train=TrainConfig(epochs=1, batch_size=4), evaluate=EvaluateParams(batch_size=8),
        index=IndexParams(device="cpu"),
    )
    dirs = {n: root / n for n in ("prepare", "caption", "keywords", "render", "inputs",
                                  "evaluate", "index")}
    dirs["model"] = root / "train" / "dqu"
    try:
        prepare.run(params, dirs["prepare"])
    finally:
        del ADAPTERS["tiny"]
    caption.run(params, dirs["prepare"], dirs["caption"])
    keywords.run(params, dirs["prepare"], dirs["keywords"])
    render.run(params, dirs["prepare"], dirs["caption"], dirs["keywords"], dirs["render"])
    inputs.run(params, dirs["prepare"], dirs["render"], dirs["inputs"])
    train.run(params, "dqu", dirs["inputs"], dirs["model"])
    # evaluate's own scoring of the dqu model, one mode (the stage scores all three).
    model = load_trained(params.clip, "dqu", params.train.dropout, dirs["model"], "cpu")
    split = load_eval_split(dirs["inputs"], "test")
    features = embed(model, split, params.evaluate.batch_size, torch.device("cpu"))
    rankings = rank(features, split, evaluate.PER_QUERY_TOP)
    rows = evaluate.per_query_rows(split, "dqu", rankings, features.weights)
    dirs["evaluate"].mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=evaluate.PER_QUERY),
                   dirs["evaluate"] / "per_query.parquet")
    index.run(params, dirs["inputs"], dirs["prepare"], dirs["model"], dirs["index"])
    return {"params": params, **dirs}


def evaluate_split(model: object, inputs_dir: Path, split: str, ks: tuple[int, ...],
                   batch_size: int, top_n: int = 10) -> SimpleNamespace:
    """The evaluate stage's flow on one split (embed -> rank -> R@K): metrics, ids, top ids."""
    import torch

    from trainer.eval.embed import embed
    from trainer.eval.protocols import protocols_for, score
    from trainer.eval.rank import rank
    from trainer.eval.split import load_eval_split

    data = load_eval_split(inputs_dir, split)
    rankings = rank(embed(model, data, batch_size, torch.device("cpu")), data, top_n)
    return SimpleNamespace(metrics=score(rankings, data, protocols_for(ks)),
                           pair_ids=data.queries.pair_ids, top_ids=rankings.top_ids())
