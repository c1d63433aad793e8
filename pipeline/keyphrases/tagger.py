"""The learned candidate generator: a small BIO tagger over MiniLM word vectors.

Each word is described by its own vector, its neighbours' vectors and whether punctuation
touches it; a one-hidden-layer network scores O/B/I, and Viterbi decoding (no I after O)
turns the scores into spans. The weights are a few hundred KB of numpy arrays (`.npz`),
made by `python -m pipeline.keyphrases.train_tagger` and loaded by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.keyphrases.encode import Encoded

N_TAGS = 3  # O, B, I
# Transition mask: I may follow only B or I (log-space, so -inf forbids).
_ALLOWED = np.array([[0.0, 0.0, -np.inf], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
# The tagger file shipped with the package (see docs/keywords.md for how it is made).
TAGGER_FILE = "keyword_tagger.npz"


def word_features(item: Encoded, text: str) -> np.ndarray:
    """(n_words, 3*dim + 2) features: previous, own and next word vector, punctuation flags."""
    v = item.word_vectors
    n, dim = v.shape
    zero = np.zeros((1, dim), dtype=np.float32)
    prev = np.concatenate([zero, v[:-1]]) if n else v
    nxt = np.concatenate([v[1:], zero]) if n else v
    flags = np.zeros((n, 2), dtype=np.float32)
    for k, (a, b) in enumerate(item.spans):
        before = text[item.spans[k - 1][1] : a] if k else text[:a]
        after = text[b : item.spans[k + 1][0]] if k + 1 < n else text[b:]
        flags[k, 0] = float(bool(before.strip()))
        flags[k, 1] = float(bool(after.strip()))
    return np.concatenate([prev, v, nxt, flags], axis=1)


@dataclass(frozen=True)
class Tagger:
    """Weights of the word tagger (features -> hidden (ReLU) -> O/B/I scores) and the words
    of the keyword lists it learned from (typo correction prefers them)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    vocabulary: frozenset[str] = frozenset()

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Log-softmax O/B/I scores, one row per word."""
        hidden = np.maximum(features @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        logits = logits - logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def spans(self, features: np.ndarray) -> list[tuple[int, int]]:
        """Word spans [a, b) tagged as keywords, in text order; never none for a text with
        words (a text asks for something: its likeliest phrase start then stands alone)."""
        scores = self.scores(features)
        found = decode_spans(viterbi(scores))
        if found or not len(scores):
            return found
        start = int(np.argmax(scores[:, 1]))
        end = start + 1
        while end < len(scores) and scores[end, 2] > scores[end, 0]:
            end += 1
        return [(start, end)]

    def save(self, path: Path) -> None:
        """Write the weights as a compressed .npz (float32)."""
        np.savez_compressed(path, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
                            vocab=np.array(sorted(self.vocabulary), dtype=str))


def load_tagger(path: str | Path) -> Tagger:
    """Load tagger weights from an .npz file written by `Tagger.save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"keyword tagger {path} not found; build it with "
            "`python -m pipeline.keyphrases.train_tagger` (docs/keywords.md)")
    with np.load(path, allow_pickle=False) as data:
        weights = [data[k].astype(np.float32) for k in ("w1", "b1", "w2", "b2")]
        return Tagger(*weights, vocabulary=frozenset(str(w) for w in data["vocab"]))


def default_tagger_path() -> Path:
    """The tagger shipped in pipeline/resources."""
    return Path(__file__).resolve().parents[1] / "resources" / TAGGER_FILE


def viterbi(scores: np.ndarray) -> list[int]:
    """Best tag sequence under the BIO constraint (no I straight after O or at the start)."""
    n = scores.shape[0]
    if n == 0:
        return []
    best = scores[0] + np.array([0.0, 0.0, -np.inf])
    back = np.zeros((n, N_TAGS), dtype=np.int64)
    for t in range(1, n):
        total = best[:, None] + _ALLOWED
        back[t] = total.argmax(axis=0)
        best = total.max(axis=0) + scores[t]
    tags = [int(best.argmax())]
    for t in range(n - 1, 0, -1):
        tags.append(int(back[t, tags[-1]]))
    return tags[::-1]


def decode_spans(tags: list[int]) -> list[tuple[int, int]]:
    """[a, b) spans of B I* runs."""
    spans: list[tuple[int, int]] = []
    start = None
    for k, tag in enumerate([*tags, 0]):
        if tag != 2 and start is not None:
            spans.append((start, k))
            start = None
        if tag == 1:
            start = k
    return spans
