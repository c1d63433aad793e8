"""Bad and odd text records: empty, duplicate, off-gallery, long/emoji/RTL, non-UTF-8, overflow."""

from __future__ import annotations

import json

from devkit.faults.harness import (
    bad_record,
    cli_text,
    error_line,
    expect,
    fault,
    short,
    victim,
)
from devkit.faults.scratch import Scratch, read_report
from pipeline.core.params import RenderParams
from trainer.config import QUERY_MODES


@fault("empty modification text")
def empty_text(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 1, modification="")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "empty modification", "on_bad_record: skip"], pair)


@fault("whitespace-only modification text")
def whitespace_text(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 1, modification=" \t\n  ")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "empty modification", "on_bad_record: skip"], pair)


@fault("duplicate pair id")
def duplicate_pair(scratch: Scratch) -> str:
    dataset = scratch.dataset()
    first = next(t for t in dataset["triplets"] if t["split"] == "test")
    dataset["triplets"].append({**first, "modification": "make it green"})
    scratch.save(dataset)
    pair = f"test/{first['pair_id']}"
    return bad_record(scratch, [pair, "duplicate pair id", "on_bad_record: skip"], pair)


@fault("target missing from the gallery")
def target_not_in_gallery(scratch: Scratch) -> str:
    row = scratch.edit_triplet("test", 2, target_id="train-00")
    pair = f"test/{row['pair_id']}"
    return bad_record(scratch, [pair, "not in the test gallery", "on_bad_record: skip"], pair)


@fault("every bad record at once, skip mode, through train and evaluate")
def all_bad_records_skipped(scratch: Scratch) -> str:
    """One bad record of each kind; with skip, all stages, training and evaluation complete."""
    path = scratch.image_file(victim(scratch))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    scratch.edit_triplet("test", 1, modification=" ")
    scratch.edit_triplet("test", 2, target_id="train-00")
    dataset = scratch.dataset()
    dataset["triplets"].append({**dataset["triplets"][-1], "modification": "make it green"})
    scratch.save(dataset)
    params = scratch.params("skip")
    reports = scratch.run_stages(params, "skip")
    metrics = scratch.train_and_evaluate(params, "skip")
    expect(set(metrics) == set(QUERY_MODES), f"evaluate returned {metrics}")
    for mode in QUERY_MODES:
        reports[f"train {mode}"] = read_report(scratch.out("skip", "train") / mode)
    reports["evaluate"] = read_report(scratch.out("skip", "evaluate"))
    counts = {s: r["n_skipped"] for s, r in reports.items() if r["n_skipped"]}
    n_in = reports["prepare"]["n_in"]
    n_trained = reports["train dqu"]["n_out"]
    n_scored = reports["evaluate"]["n_out"]
    return (
        f"{n_in} triplets in, skipped per stage {counts}, {n_trained} trained on, "
        f"{n_scored} test queries evaluated"
    )


ODD_TEXTS = {
    "10,000-character modification text": ("make it a much redder shade " * 400)[:10_000],
    "emoji modification text": "make it blue 🔵 and shinier ✨🙂",
    "right-to-left modification text": "اجعلها زرقاء and make it blue",
}


def odd_texts(scratch: Scratch, keywords_backend: str) -> dict[str, str]:
    """Odd but valid texts flow through every stage, train and evaluate, unchanged."""
    from pipeline.core.shards import KEYWORDS, RENDERED, read_shards, read_table

    pairs = {}
    for index, (name, text) in enumerate(ODD_TEXTS.items()):
        row = scratch.edit_triplet("test", index, modification=text)
        pairs[name] = (row["pair_id"], text, row["caption"])
    params = scratch.params("fail", keywords=keywords_backend)
    reports = scratch.run_stages(params)
    metrics = scratch.train_and_evaluate(params)
    for stage, report in reports.items():
        expect(report["n_skipped"] == 0, f"{stage} skipped {report['skipped']}")
    expect(set(metrics) == set(QUERY_MODES), f"evaluate returned {metrics}")
    rendered = {
        r["pair_id"]: r
        for r in read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    }
    keyword_rows = read_table(scratch.out("run", "keywords") / "keywords.parquet", KEYWORDS)
    with_keywords = set(keyword_rows["pair_id"].to_pylist())
    details = {}
    for name, (pair_id, text, caption) in pairs.items():
        expect(pair_id in with_keywords, f"{name}: no keywords row")
        expect(
            rendered[pair_id]["text_query"]
            == params.render.text_template.format(caption=caption, modification=text),
            f"{name}: the text query does not carry the text unchanged",
        )
        details[name] = (
            f"{len(text)} chars kept exactly; keywords {rendered[pair_id]['keywords'][:3]}; "
            f"train + evaluate ran (dqu R@5 {metrics['dqu']['R@5']:.1f})"
        )
    return details


@fault(*ODD_TEXTS)
def odd_texts_keybert(scratch: Scratch) -> dict[str, str]:
    """Odd texts with the configured KeyBERT keyword model (the real extraction path)."""
    return odd_texts(scratch, "keybert")


@fault("non-UTF-8 modification text")
def non_utf8_text(scratch: Scratch) -> str:
    """`dqu keywords TEXTS.jsonl`: a non-UTF-8 line is named by file and line, or skipped."""
    texts = scratch.root / "texts.jsonl"
    texts.write_bytes(
        b'{"id": 1, "text": "make it blue"}\n'
        + b'{"id": 2, "text": "caf\xe9 colour"}\n'  # Latin-1, as a spreadsheet export writes it
        + b'{"id": 3, "text": "make it smaller"}\n'
    )
    pred = scratch.root / "pred.jsonl"
    failed = scratch.invoke(["keywords", str(texts), "--out", str(pred)])
    message = cli_text(failed)
    expect(failed.exit_code != 0, "a non-UTF-8 line did not stop `dqu keywords`")
    expect(f"{texts}:2" in message and "UTF-8" in message, f"unclear error: {message[-300:]}")
    expect(not pred.exists(), "a partial output was written")
    skipped = scratch.invoke(["keywords", str(texts), "--out", str(pred), "--skip-bad"])
    expect(skipped.exit_code == 0, f"--skip-bad failed: {cli_text(skipped)[-300:]}")
    ids = [json.loads(line)["id"] for line in pred.read_text(encoding="utf-8").splitlines()]
    expect(ids == [1, 3], f"--skip-bad wrote ids {ids}")
    expect("skipped=1" in skipped.output, f"skip not counted: {skipped.output[-200:]}")
    return f"fail -> {short(error_line(message))} | --skip-bad -> lines 1, 3 kept, skipped=1"


@fault("keyword list that overflows the canvas")
def keyword_overflow(scratch: Scratch) -> str:
    from pipeline.core.drawing import DrawStyle, layout_keywords
    from pipeline.core.images import decode_png
    from pipeline.core.shards import RENDERED, read_shards

    many = [f"an extraordinarily long keyword phrase number {k}" for k in range(30)]
    row = scratch.edit_triplet("test", 0, keywords=many)
    # A canvas big enough that some phrases fit, so shrinking, wrapping and dropping all happen.
    params = scratch.params("fail", render=RenderParams(shards=2, font_size=14, canvas_size=96))
    reports = scratch.run_stages(params, stages=("prepare", "caption", "keywords", "render"))
    expect(reports["render"]["n_skipped"] == 0, "render skipped the overflowing query")
    rendered = read_shards(scratch.out("run", "render"), "queries", RENDERED).to_pylist()
    out = next(r for r in rendered if r["pair_id"] == row["pair_id"])
    size = decode_png(out["visual_query"]).size
    expect(size == (96, 96), f"the canvas is {size}, not the 96x96 asked for")
    layout = layout_keywords(many, size, DrawStyle.from_params(params.render))
    inside = all(
        0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
        for left, top, right, bottom in (line.box for line in layout.lines)
    )
    expect(inside, "a keyword box lies outside the image")
    return (
        f"{len(many)} phrases on {size[0]}x{size[1]}: {len(out['keywords'])} drawn at "
        f"{layout.font_size}px, the rest dropped, all boxes inside, nothing skipped"
    )
