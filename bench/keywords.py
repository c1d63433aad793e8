"""Benchmark keyword extraction against the LLM reference keywords in ../shared/data.

    python bench/keywords.py [--limit N] [--baseline N]

For each dev set present, prints phrase F1 / token F1 (official scorer) and texts per second,
for the whole set and for each half (rules were tuned on the first half only), the reference's
agreement with itself on texts that occur more than once (its noise), then the plain KeyBERT
baseline (1-3 grams, MMR, top 3) on a subset of the same texts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.keyphrases import default_model_path, extract_keywords, load_keyword_model  # noqa: E402

SHARED = REPO.parent / "shared"
DEV_SETS = {
    "fashioniq-shirt": SHARED / "data" / "fashioniq_shirt_keywords.json",
    "cirr-train5k": SHARED / "data" / "cirr_train_keywords_5k.json",
}


def load_scorer():
    """The official scorer module, loaded by path."""
    path = SHARED / "eval" / "keyword_f1.py"
    spec = importlib.util.spec_from_file_location("keyword_f1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_scores(scorer, preds: list[list[str]], golds: list[list[str]]) -> tuple[float, float]:
    """Mean phrase F1 and token F1 over paired predictions and references."""
    n = max(len(golds), 1)
    pf = sum(scorer.phrase_f1(p, g) for p, g in zip(preds, golds, strict=True)) / n
    tf = sum(scorer.token_f1(p, g) for p, g in zip(preds, golds, strict=True)) / n
    return pf, tf


def self_agreement(
    scorer, texts: list[str], golds: list[list[str]], preds: list[list[str]]
) -> tuple[float, float, int, int] | None:
    """On texts that occur more than once: the reference against itself, and us, mean F1.

    The LLM was run once per pair, so a repeated text got several reference lists; one fixed
    answer cannot match two that differ, so their agreement shows the reference's own noise.
    """
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_text.setdefault(text.strip().lower(), []).append(i)
    groups = [rows for rows in by_text.values() if len(rows) > 1]
    pairs = [(a, b) for rows in groups for k, a in enumerate(rows) for b in rows[k + 1 :]]
    if not pairs:
        return None
    # F1 is symmetric in its two lists except for the greedy order: average both directions.
    ref = sum(scorer.phrase_f1(golds[a], golds[b]) + scorer.phrase_f1(golds[b], golds[a])
              for a, b in pairs) / (2 * len(pairs))
    rows = [i for group in groups for i in group]
    ours = sum(scorer.phrase_f1(preds[i], golds[i]) for i in rows) / len(rows)
    return ref, ours, len(rows), len(pairs)


def plain_keybert(model, texts: list[str]) -> list[list[str]]:
    """The baseline: KeyBERT n-grams 1-3, MMR, top 3, English stop words."""
    found = model.keybert.extract_keywords(
        texts, keyphrase_ngram_range=(1, 3), stop_words="english", use_mmr=True, top_n=3
    )
    if texts and found and isinstance(found[0], tuple):
        found = [found]
    return [[k for k, _ in row] for row in found]


def main() -> int:
    """Run the benchmark; prints one `bench keywords-<set>` line per set and half."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts per set")
    parser.add_argument("--baseline", type=int, default=500, help="texts for plain KeyBERT")
    parser.add_argument("--model", default=default_model_path())
    args = parser.parse_args()

    scorer = load_scorer()
    model = load_keyword_model(args.model)
    extract_keywords(model, ["warm up the model and is darker"])
    for name, path in DEV_SETS.items():
        if not path.exists():
            print(f"bench keywords-{name}: skipped ({path} not found)")
            continue
        items = list(scorer.load_gold(str(path)).items())
        if args.limit:
            items = items[: args.limit]
        texts = [text for _, (text, _) in items]
        golds = [gold for _, (_, gold) in items]
        model.phrase_cache.clear()  # time a cold cache, as a fresh stage run would see
        start, cpu_start = time.perf_counter(), time.process_time()
        preds = extract_keywords(model, texts)
        rate = len(texts) / (time.perf_counter() - start)
        # CPU seconds too: on a shared machine wall-clock rate drops with other tenants' load.
        cpu_s = time.process_time() - cpu_start
        pf, tf = mean_scores(scorer, preds, golds)
        print(f"bench keywords-{name}: phrase_f1={pf:.4f} token_f1={tf:.4f} "
              f"texts_per_s={rate:.1f} cpu_s={cpu_s:.1f} n={len(texts)} "
              f"loadavg={os.getloadavg()[0]:.1f}")
        half = len(texts) // 2
        halves = (("first-half(tuned)", slice(0, half)), ("second-half", slice(half, None)))
        for label, sl in halves:
            pf, tf = mean_scores(scorer, preds[sl], golds[sl])
            print(f"bench keywords-{name}-{label}: phrase_f1={pf:.4f} token_f1={tf:.4f} "
                  f"n={len(golds[sl])}")
        agreement = self_agreement(scorer, texts, golds, preds)
        if agreement:
            ref, ours, n_rows, n_pairs = agreement
            print(f"bench keywords-{name}-repeated-texts: reference_vs_itself={ref:.4f} "
                  f"ours={ours:.4f} texts={n_rows} pairs={n_pairs}")
        if args.baseline:
            sub = slice(0, min(args.baseline, len(texts)))
            start = time.perf_counter()
            base = plain_keybert(model, texts[sub])
            rate = len(base) / (time.perf_counter() - start)
            pf, tf = mean_scores(scorer, base, golds[sub])
            print(f"bench keywords-{name}-plain-keybert: phrase_f1={pf:.4f} token_f1={tf:.4f} "
                  f"texts_per_s={rate:.1f} n={len(base)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
