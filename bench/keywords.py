"""Keyword extraction: phrase F1 against the LLM reference keywords, texts/s, both CPU paths.

    python bench/keywords.py [--limit N] [--baseline N] [--train-limit N] [--demo N]
    python -m bench keywords [--tiny]        # or `dqu bench keywords`

Per dev set in ../shared/data (or $DQU_SHARED/data), one `bench keywords-<set>` line with the
phrase F1 (official scorer) of ours, of the naive split (commas, "and", "with") and of plain
KeyBERT (1-3 grams, MMR, top 3; first --baseline texts), texts/s (cold phrase cache,
start-up excluded), and ours with spans free to join clauses (`keywords.within_clauses:
false`). Then the cross-domain figure: a tagger trained on one dev set's domain only, scored
on the other (FashionIQ shirt -> CIRR 5k; CIRR train minus the 5k -> FashionIQ), both ways.
Then demo coverage: the share of demo texts whose keywords name every changed attribute value.
Last, the kernel the MiniLM's integer-code linears were summed on (pipeline.keyphrases.kernels'
probe), the other kernel forced (DQU_INT8) and how many keyword lists differ between them (goal 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import BenchResult, check_scale, emit, forced_int8, kernel_path, note  # noqa: E402
from bench.demo_keywords import demo_cases, names_every_change  # noqa: E402
from pipeline.keyphrases import (  # noqa: E402
    KeywordModel,
    Selection,
    default_model_path,
    extract_keywords,
    load_keyword_model,
    naive_split,
)

SHARED = Path(os.environ.get("DQU_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
DEV_SETS = {
    "fashioniq-shirt": DATA / "fashioniq_shirt_keywords.json",
    "cirr-train5k": DATA / "cirr_train_keywords_5k.json",
}
CIRR_ALL = DATA / "cirr_train_keywords.json"
PLAIN_TEXTS = 500  # texts plain KeyBERT scores in `dqu bench keywords`


def load_scorer():  # noqa: ANN201 - a module loaded by path
    """The official scorer module, loaded by path."""
    spec = importlib.util.spec_from_file_location("keyword_f1", SHARED / "eval" / "keyword_f1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phrase_f1(scorer, preds: list[list[str]], golds: list[list[str]]) -> float:  # noqa: ANN001
    """Mean phrase F1 over paired predictions and references."""
    pairs = list(zip(preds, golds, strict=True))
    return sum(scorer.phrase_f1(p, g) for p, g in pairs) / max(len(pairs), 1)


def plain_keybert(model: KeywordModel, texts: list[str]) -> list[list[str]]:
    """The baseline: KeyBERT n-grams 1-3, MMR, top 3, English stop words."""
    found = model.keybert.extract_keywords(
        texts, keyphrase_ngram_range=(1, 3), stop_words="english", use_mmr=True, top_n=3)
    if texts and found and isinstance(found[0], tuple):
        found = [found]
    return [[k for k, _ in row] for row in found]


def timed_extract(model: KeywordModel, texts: list[str]) -> tuple[list[list[str]], float]:
    """Keywords of `texts` from a cold phrase cache, and texts per second."""
    model.phrase_cache.clear()
    start = time.perf_counter()
    preds = extract_keywords(model, texts)
    return preds, len(texts) / max(time.perf_counter() - start, 1e-9)


# Ours with the tagger's spans free to run across commas, "and" and "with".
JOINED = Selection(within_clauses=False)


def other_mode() -> str:
    """The DQU_INT8 value that takes the kernel the process did not choose."""
    return "off" if kernel_path().startswith("int8") else "on"


def dev_sets(scorer, model: KeywordModel, limit: int, baseline: int  # noqa: ANN001
             ) -> dict[str, tuple[list[str], list[list[str]], list[list[str]], float]]:
    """Score ours, the naive split and plain KeyBERT per dev set; (texts, golds, ours,
    texts/s) each."""
    out = {}
    for name, path in DEV_SETS.items():
        if not path.exists():
            print(f"bench keywords-{name}: skipped ({path} not found)")
            continue
        items = list(scorer.load_gold(str(path)).values())[: limit or None]
        texts, golds = [t for t, _ in items], [g for _, g in items]
        preds, rate = timed_extract(model, texts)
        naive = phrase_f1(scorer, [naive_split(t) for t in texts], golds)
        sub = slice(0, min(baseline, len(texts)))
        plain = phrase_f1(scorer, plain_keybert(model, texts[sub]), golds[sub]) if baseline else 0
        joined = phrase_f1(scorer, extract_keywords(model, texts, selection=JOINED), golds)
        print(f"bench keywords-{name}: ours={phrase_f1(scorer, preds, golds):.4f} "
              f"naive_split={naive:.4f} plain_keybert={plain:.4f}(n={sub.stop}) "
              f"ours_joining_clauses={joined:.4f} "
              f"texts_per_s={rate:.1f} n={len(texts)} kernel={kernel_path().replace(' ', '')} "
              f"loadavg={os.getloadavg()[0]:.1f}", flush=True)
        out[name] = (texts, golds, preds, rate)
    return out


def cross_domain(scorer, model: KeywordModel, found: dict, train_limit: int) -> None:  # noqa: ANN001
    """Train a tagger on one domain only, score it on the other dev set."""
    from pipeline.keyphrases.train_tagger import (
        build_examples,
        keyword_vocabulary,
        read_references,
        train,
    )

    if "cirr-train5k" not in found or "fashioniq-shirt" not in found or not CIRR_ALL.exists():
        print("bench keywords-cross-domain: skipped (needs both dev sets and the CIRR 28k file)")
        return
    dev5k = set(read_references(DEV_SETS["cirr-train5k"]))
    cirr = [v for k, v in read_references(CIRR_ALL).items() if k not in dev5k]
    fiq = list(read_references(DEV_SETS["fashioniq-shirt"]).values())
    runs = (("fashioniq-shirt", fiq, "cirr-train5k"),
            ("cirr-train-minus-5k", cirr[: train_limit or None], "fashioniq-shirt"))
    for train_name, items, test_name in runs:
        examples = build_examples(model.sentence_model, items)
        tagger = train(examples, seed=0, vocabulary=keyword_vocabulary(items))
        other = dataclasses.replace(model, tagger=tagger, phrase_cache={})
        texts, golds, _, _ = found[test_name]
        score = phrase_f1(scorer, extract_keywords(other, texts), golds)
        joined = phrase_f1(scorer, extract_keywords(other, texts, selection=JOINED), golds)
        print(f"bench keywords-cross-domain: trained_on={train_name}({len(examples)} texts) "
              f"scored_on={test_name} ours={score:.4f} ours_joining_clauses={joined:.4f} "
              f"naive_split={phrase_f1(scorer, [naive_split(t) for t in texts], golds):.4f}",
              flush=True)


def demo_coverage(model: KeywordModel, n: int) -> tuple[list[str], list[list[str]], float]:
    """Print the share of demo texts whose keywords name every changed attribute value;
    (texts, keywords, texts/s)."""
    cases = demo_cases(n)
    texts = [c.text for c in cases]
    preds, rate = timed_extract(model, texts)
    hits = sum(names_every_change(c, p) for c, p in zip(cases, preds, strict=True))
    print(f"bench keywords-demo-coverage: {hits / max(n, 1):.4f} ({hits} of {n} texts name "
          f"every changed attribute) naive_split="
          f"{sum(names_every_change(c, naive_split(c.text)) for c in cases) / max(n, 1):.4f}")
    return texts, preds, rate


def path_check(model: KeywordModel, texts: list[str], preds: list[list[str]]
               ) -> tuple[str, float, int]:
    """`preds` (from the chosen kernel) against the other kernel forced: (that kernel, its
    texts/s, lists that differ)."""
    with forced_int8(other_mode()):
        other = kernel_path()
        other_preds, other_rate = timed_extract(model, texts)
    return other, other_rate, sum(a != b for a, b in zip(preds, other_preds, strict=True))


def print_paths(name: str, model: KeywordModel, texts: list[str], preds: list[list[str]],
                rate: float) -> None:
    """One `bench keywords-paths-<name>` line: both kernels' texts/s (`rate`: the chosen
    one's, already measured) and differing lists."""
    other, other_rate, differ = path_check(model, texts, preds)
    print(f"bench keywords-paths-{name}: chosen={kernel_path().replace(' ', '')} "
          f"texts_per_s={rate:.1f} forced={other.replace(' ', '')} texts_per_s={other_rate:.1f} "
          f"differing_lists={differ} of {len(texts)}", flush=True)


def run(scale: str = "full", workdir: Path | None = None) -> list[BenchResult]:
    """`dqu bench keywords`: texts/s on the kernel the probe chose against the other forced.

    Texts: at full scale the first 2,000 FashionIQ shirt dev texts where ../shared/data has
    them (a second line scores phrase F1 against the better of plain KeyBERT and the naive
    split), else demo texts;
    tiny: 40 demo texts.
    """
    n = 2000 if check_scale(scale) == "full" else 40
    model_dir = default_model_path()
    model = load_keyword_model(model_dir)
    extract_keywords(model, ["warm up the model and is darker"])
    scorer = load_scorer() if (SHARED / "eval" / "keyword_f1.py").exists() else None
    dev = DEV_SETS["fashioniq-shirt"]
    if scale == "full" and scorer and dev.exists():
        items = list(scorer.load_gold(str(dev)).values())[:n]
        texts, golds, source = [t for t, _ in items], [g for _, g in items], "FashionIQ shirt"
    else:
        texts, golds, source = [c.text for c in demo_cases(n)], None, "demo"
    preds, rate = timed_extract(model, texts)
    other, other_rate, differ = path_check(model, texts, preds)
    note(f"keywords: {len(texts)} {source} texts; kernel taken {kernel_path()} ({rate:.0f} "
         f"texts/s), forced {other}: {other_rate:.0f} texts/s; "
         f"{differ} keyword lists differ between the two")
    results = [emit(BenchResult("keywords", rate, other_rate,
                                f"texts/s (start-up excluded; baseline: {other} forced)", True,
                                vs="ours", path=kernel_path(), check=f"lists-differ={differ}"))]
    if golds is not None:
        # Plain KeyBERT is what a user of the design card's library writes, the naive split a
        # rule anyone can write; KeyBERT embeds every candidate n-gram, so all three are scored
        # on the first PLAIN_TEXTS texts.
        sub = slice(0, min(PLAIN_TEXTS, len(texts)))
        ours = phrase_f1(scorer, preds[sub], golds[sub])
        plain = phrase_f1(scorer, plain_keybert(model, texts[sub]), golds[sub])
        naive = phrase_f1(scorer, [naive_split(t) for t in texts[sub]], golds[sub])
        note(f"keywords-f1: first {sub.stop} {source} texts, official phrase F1: ours "
             f"{ours:.4f}, plain KeyBERT (1-3 grams, MMR, top 3) {plain:.4f}, naive split "
             f"(commas, 'and', 'with') {naive:.4f}")
        # The stronger of the two alternatives is the baseline (on FashionIQ the naive split).
        best, name = max((plain, "plain KeyBERT"), (naive, "the naive split"))
        results.append(emit(BenchResult("keywords-f1", ours, best, f"phrase F1 vs {name}",
                                        True, vs="strong", path=kernel_path())))
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one `bench keywords-...` line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="first N texts per dev set")
    parser.add_argument("--baseline", type=int, default=500, help="texts for plain KeyBERT")
    parser.add_argument("--train-limit", type=int, default=8000,
                        help="CIRR pairs the cross-domain tagger trains on (0 = all 23k)")
    parser.add_argument("--demo", type=int, default=2000, help="demo texts for coverage")
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-domain runs")
    parser.add_argument("--model", default=default_model_path())
    args = parser.parse_args(argv)
    model = load_keyword_model(args.model)
    extract_keywords(model, ["warm up the model and is darker"])
    scorer = load_scorer() if (SHARED / "eval" / "keyword_f1.py").exists() else None
    found = dev_sets(scorer, model, args.limit, args.baseline) if scorer else {}
    if not args.no_cross and scorer:
        cross_domain(scorer, model, found, args.train_limit)
    texts, preds, rate = demo_coverage(model, args.demo)
    for name, (dev_texts, _, dev_preds, dev_rate) in found.items():
        print_paths(name, model, dev_texts, dev_preds, dev_rate)
    print_paths("demo", model, texts, preds, rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
