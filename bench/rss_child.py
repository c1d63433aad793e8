"""Subprocesses of `bench eval-rss`: one split's evaluation, then the process's peak RSS.

A module of its own so the measured process imports only what evaluation needs (the
benchmark helpers pull in the pipeline stages and keyword models, which evaluation never does).

    python -m bench.rss_child ours INPUTS_DIR CONFIG_DIR MODEL_NAME TRAIN_DIR OUT_DIR
    python -m bench.rss_child official INPUTS_DIR CONFIG_DIR MODEL_NAME

`ours` runs the evaluate stage's `run` on the `val` split (every query mode from TRAIN_DIR, the
training-free rows, per_query.parquet, metrics.json). `official` holds the split as the official
CIRR dataset class does (`get_val_queries`: per query float32 tensors of the source image, the
target image and the drawn visual query, and one per gallery image, all preprocessed up front)
and runs `test_cirr_valset`'s flow on them: batched encoding, NumPy similarities, a full argsort
per query, the recall and subset-recall loops. Each prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

KS = (1, 5, 10, 50)  # the official CIRR recalls
SUBSET_KS = (1, 2, 3)
BATCH_SIZE = 256  # params.yaml evaluate.batch_size; the official's batch is its training batch


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory, in MiB.

    Linux: VmHWM from /proc/self/status. getrusage's ru_maxrss is not used there because the
    kernel carries the parent's peak across fork + exec into it, so a child of a big parent
    would report the parent's peak. Elsewhere: ru_maxrss (bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def ours(inputs_dir: Path, model_name: str, train_dir: Path, out_dir: Path) -> dict:
    """The evaluate stage's call on the val split; what it scored."""
    from pipeline.core.params import EvaluateParams, Params
    from pipeline.stages import evaluate
    from trainer.config import ClipConfig

    params = Params(clip=ClipConfig(model=model_name),
                    evaluate=EvaluateParams(split="val", device="cpu", batch_size=BATCH_SIZE))
    metrics = evaluate.run(params, inputs_dir, train_dir, out_dir)
    rows = json.loads((out_dir / "metrics.json").read_text())["val"]
    return {"modes": sorted(metrics), "training_free": sorted(rows["training_free"]),
            "queries": evaluate_queries(out_dir)}


def evaluate_queries(out_dir: Path) -> int:
    """Queries per mode in per_query.parquet (every mode scores every query)."""
    import pyarrow.parquet as pq

    table = pq.read_table(out_dir / "per_query.parquet", columns=["mode"])
    return table.num_rows // len(set(table["mode"].to_pylist()))


def official_records(inputs_dir: Path) -> tuple[list[dict], list[dict]]:
    """val_queries / val_targets as the official CIRR class builds them, from the shards."""
    import pyarrow.parquet as pq
    import torch

    from trainer.data.meta import read_meta, shard_paths
    from trainer.data.pixels import to_model_pixels

    meta = read_meta(inputs_dir)
    side = meta.image_size

    def tensor(raw: bytes) -> torch.Tensor:
        pixels = np.frombuffer(raw, dtype=np.uint8).reshape(1, side, side, 3)
        return to_model_pixels(torch.from_numpy(pixels.copy()), meta.mean, meta.std)[0]

    gallery_ids = pq.read_table(inputs_dir / "gallery.parquet")["image_id"].to_pylist()
    position = {image_id: i for i, image_id in enumerate(gallery_ids)}
    pixels = {}
    for shard in shard_paths(inputs_dir, "images"):
        table = pq.read_table(shard)
        pixels.update(zip(table["image_id"].to_pylist(), table["pixels"].to_pylist(),
                          strict=True))
    rng = np.random.default_rng(0)
    queries = []
    for shard in shard_paths(inputs_dir, "queries"):
        table = pq.read_table(shard, columns=["pair_id", "reference_id", "target_id",
                                              "visual_pixels"])
        for row in table.to_pylist():
            queries.append({
                "source_img_id": position[row["reference_id"]],
                "source_img_data": tensor(pixels[row["reference_id"]]),
                "target_img_id": position[row["target_id"]],
                "target_img_data": tensor(pixels[row["target_id"]]),
                "subset_id": [int(i) for i in rng.integers(0, len(gallery_ids), 6)],
                "textual_query": f"a photo of {row['pair_id']}, but with another colour",
                "visual_query": tensor(row["visual_pixels"]),
            })
    targets = [{"target_img_id": i, "target_img_data": tensor(pixels[image_id])}
               for i, image_id in enumerate(gallery_ids)]
    return queries, targets


def official(inputs_dir: Path, model_name: str) -> dict:
    """The official CIRR validation on its in-memory records; its recalls."""
    import torch

    from trainer.config import ClipConfig
    from trainer.models.clip import get_tokenizer
    from trainer.models.saved import build_model

    test_queries, test_targets = official_records(inputs_dir)
    torch.manual_seed(0)
    model = build_model(ClipConfig(model=model_name), "dqu", 0.5, 10.0,
                        torch.device("cpu")).eval()
    tokenizer = get_tokenizer(model_name)
    queries, gallery = official_features(model, tokenizer, test_queries, test_targets,
                                         BATCH_SIZE)
    return {"recall": official_cirr_recall(queries, gallery, test_queries, test_targets),
            "queries": len(test_queries)}


def official_features(model, tokenizer, test_queries: list[dict],  # noqa: ANN001
                      test_targets: list[dict], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The official test loops' feature extraction: (query features, gallery features).

    Per batch it stacks the records' tensors, tokenizes the strings inside the encoding call
    (the official `extract_query`), encodes and moves the features to NumPy, as test.py does.
    """
    import torch

    model.eval()
    with torch.no_grad():
        all_queries, visual, textual = [], [], []
        for t in test_queries:
            visual.append(t["visual_query"])
            textual.append(t["textual_query"])
            if len(visual) >= batch_size or t is test_queries[-1]:
                features = model.encode_query(tokenizer(textual), torch.stack(visual).float())
                all_queries.append(features.data.cpu().numpy())
                visual, textual = [], []
        all_imgs, imgs = [], []
        for t in test_targets:
            imgs.append(t["target_img_data"])
            if len(imgs) >= batch_size or t is test_targets[-1]:
                all_imgs.append(model.encode_image(torch.stack(imgs).float()).data.cpu().numpy())
                imgs = []
    return np.concatenate(all_queries), np.concatenate(all_imgs)


def official_cirr_recall(all_queries: np.ndarray, all_imgs: np.ndarray, test_queries: list[dict],
                         test_targets: list[dict]) -> dict[str, float]:
    """test_cirr_valset after feature extraction, loops and lookups kept as written."""
    for i in range(all_queries.shape[0]):
        all_queries[i, :] /= np.linalg.norm(all_queries[i, :])
    for i in range(all_imgs.shape[0]):
        all_imgs[i, :] /= np.linalg.norm(all_imgs[i, :])
    sims = all_queries.dot(all_imgs.T)
    ids = [t["target_img_id"] for t in test_targets]
    for i, t in enumerate(test_queries):
        sims[i, ids.index(t["source_img_id"])] = -10e10
    nn_result = [np.argsort(-sims[i, :]) for i in range(sims.shape[0])]
    out = {}
    for k in KS:
        hits = sum(ids.index(test_queries[i]["target_img_id"]) in nns[:k]
                   for i, nns in enumerate(nn_result))
        out[f"R@{k}"] = 100 * hits / len(nn_result)
    for k in SUBSET_KS:
        hits = 0
        for i, nns in enumerate(nn_result):
            subset = np.array([ids.index(j) for j in test_queries[i]["subset_id"]])
            members = nns[(nns[..., None] == subset[None, ...]).sum(-1).astype(bool)]
            hits += ids.index(test_queries[i]["target_img_id"]) in members[:k]
        out[f"Rsubset@{k}"] = 100 * hits / len(nn_result)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run one side on the `val` split of INPUTS_DIR; print {"peak_rss_mb", "imports_mb", ...}."""
    side, inputs_dir, config_dir, model_name, *dirs = argv or sys.argv[1:]
    import open_clip
    import torch  # noqa: F401  (imported before the first figure: both sides pay for it)

    imports_mb = peak_rss_mb()  # interpreter, torch, open_clip: paid before any data is read
    # A benchmark-only backbone: registered here, not in trainer/models/configs.
    open_clip.add_model_config(Path(config_dir))
    if side == "ours":
        result = ours(Path(inputs_dir), model_name, Path(dirs[0]), Path(dirs[1]))
    elif side == "official":
        result = official(Path(inputs_dir), model_name)
    else:
        raise SystemExit(f"unknown side {side!r}: use ours or official")
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "imports_mb": imports_mb, **result}))


if __name__ == "__main__":
    main()
