"""Train the keyword tagger on reference keyword lists (one command, seeded).

    python -m pipeline.keyphrases.train_tagger --seed 0 \
        --train ../shared/data/fashioniq_shirt_keywords.json \
        --train ../shared/data/cirr_train_keywords.json \
        --exclude ../shared/data/cirr_train_keywords_5k.json \
        --out pipeline/resources/keyword_tagger.npz

Each reference phrase is aligned to its span of the normalised text (`align.py`); texts where
some phrase finds no span are left out (their words would teach a wrong O). The MiniLM
(integer-code linears, as in the keywords stage) gives the word vectors; a BiGRU tagger learns
O/B/I from them (about 2 CPU minutes for the network, as long again for the MiniLM pass).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.keyphrases.align import align
from pipeline.keyphrases.encode import encode_texts, split_words
from pipeline.keyphrases.normalise import normalise
from pipeline.keyphrases.tagger import N_TAGS, Tagger, build_network, word_features

HIDDEN = 128
EPOCHS = 6
BATCH = 64  # texts per step
LEARNING_RATE = 2e-3  # the peak of a one-cycle schedule
DROPOUT = 0.2
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class Example:
    """One text's word features and BIO labels."""

    features: np.ndarray
    labels: np.ndarray


def read_references(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{pair id: (modification text, reference phrases)} of an official keyword file."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: (v[0], [x.strip() for x in v[-1].split(",") if x.strip()]) for k, v in raw.items()}


def build_examples(st: object, items: list[tuple[str, list[str]]]) -> list[Example]:
    """Features and labels of every fully aligned (text, phrases) item."""
    texts = [normalise(text) for text, _ in items]
    out: list[Example] = []
    for start in range(0, len(texts), 1024):
        batch = texts[start : start + 1024]
        for text, item, (_, phrases) in zip(
            batch, encode_texts(st, batch), items[start : start + 1024], strict=True
        ):
            labels, found = align(item.words, phrases)
            if found == len(phrases) and item.words:
                out.append(Example(word_features(item, text), np.array(labels, dtype=np.int64)))
    return out


def keyword_vocabulary(items: list[tuple[str, list[str]]], min_count: int = 2) -> frozenset[str]:
    """Words used at least `min_count` times in the reference phrases."""
    counts = Counter(w for _, phrases in items for p in phrases
                     for w in split_words(normalise(p))[0])
    return frozenset(w for w, n in counts.items() if n >= min_count and w.isalpha())


def train(examples: list[Example], seed: int = 0, epochs: int = EPOCHS,
          vocabulary: frozenset[str] = frozenset(), hidden: int = HIDDEN) -> Tagger:
    """Fit the tagger network on whole texts with a fixed seed (deterministic on CPU)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = [torch.from_numpy(e.features) for e in examples]
    ys = [torch.from_numpy(e.labels) for e in examples]
    net = build_network(xs[0].shape[1], hidden, DROPOUT)
    opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps = epochs * ((len(xs) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, LEARNING_RATE, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for start in range(0, len(xs), BATCH):
            rows = order[start : start + BATCH]
            x = pad_sequence([xs[i] for i in rows], batch_first=True)
            y = pad_sequence([ys[i] for i in rows], batch_first=True, padding_value=-100)
            lengths = torch.tensor([len(xs[i]) for i in rows])
            logits = net(x, lengths)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, N_TAGS), y.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    weights = {k: v.detach().numpy().astype(np.float32).copy()
               for k, v in net.state_dict().items()}
    return Tagger(weights, vocabulary=vocabulary)


def main(argv: list[str] | None = None) -> int:
    """Command line: read the reference files, train, write the .npz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, action="append", required=True,
                        help="official keyword file to learn from (repeatable)")
    parser.add_argument("--exclude", type=Path, action="append", default=[],
                        help="keyword file whose pair ids are left out (a dev slice)")
    parser.add_argument("--max-pairs", type=int, default=0,
                        help="use only the first N kept pairs, files in --train order (0 = all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="sentence-transformers folder")
    args = parser.parse_args(argv)
    import torch

    from pipeline.keyphrases.model import default_model_path, load_sentence_model

    # Two threads whatever the machine: the seeded run then repeats its float sums exactly.
    torch.set_num_threads(2)
    # Integer-code linears, as the keywords stage runs them on every machine.
    st = load_sentence_model(args.model or default_model_path())
    excluded = {k for path in args.exclude for k in read_references(path)}
    items = [v for path in args.train for k, v in read_references(path).items()
             if k not in excluded]
    items = items[: args.max_pairs or None]
    examples = build_examples(st, items)
    tagger = train(examples, seed=args.seed, vocabulary=keyword_vocabulary(items))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tagger.save(args.out)
    print(f"trained on {len(examples)} of {len(items)} texts (fully aligned); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
