"""The learned candidate generator: a small BIO tagger over MiniLM word vectors.

Each word is described by its MiniLM vector and whether punctuation touches it; a projection,
a bidirectional GRU over the whole text (so "instead of X" or "now Y" can decide what X and Y
are) and a linear layer score O/B/I, and Viterbi decoding (no I after O) turns the scores into
spans. The weights are a few hundred KB of numpy arrays (`.npz`), made by
`python -m pipeline.keyphrases.train_tagger` and loaded by path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.keyphrases.encode import Encoded

N_TAGS = 3  # O, B, I
N_FLAGS = 2  # punctuation before / after the word
# Texts per tagger product: a fixed shape, since the float sums of a row can depend on it.
BLOCK_ROWS = 16
# Transition mask: I may follow only B or I (log-space, so -inf forbids).
_ALLOWED = np.array([[0.0, 0.0, -np.inf], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
# The tagger file shipped with the package (see docs/keywords.md for how it is made).
TAGGER_FILE = "keyword_tagger.npz"


def word_features(item: Encoded, text: str) -> np.ndarray:
    """(n_words, dim + 2) features: the word's vector and two punctuation flags."""
    n = len(item.spans)
    flags = np.zeros((n, N_FLAGS), dtype=np.float32)
    for k, (a, b) in enumerate(item.spans):
        before = text[item.spans[k - 1][1] : a] if k else text[:a]
        after = text[b : item.spans[k + 1][0]] if k + 1 < n else text[b:]
        flags[k, 0] = float(bool(before.strip()))
        flags[k, 1] = float(bool(after.strip()))
    return np.concatenate([item.word_vectors.astype(np.float32), flags], axis=1)


def build_network(width: int, hidden: int, dropout: float = 0.0) -> object:
    """The tagger network (torch): features -> hidden (GELU) -> BiGRU -> O/B/I logits."""
    import torch

    class TaggerNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = torch.nn.Dropout(dropout)
            self.inp = torch.nn.Linear(width, hidden)
            self.gru = torch.nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(2 * hidden, N_TAGS)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
            z = torch.nn.functional.gelu(self.inp(self.drop(x)))
            if lengths is None:  # every row has the same length: no packing
                context, _ = self.gru(z)
            else:
                packed = torch.nn.utils.rnn.pack_padded_sequence(
                    z, lengths, batch_first=True, enforce_sorted=False)
                context, _ = self.gru(packed)
                context, _ = torch.nn.utils.rnn.pad_packed_sequence(
                    context, batch_first=True, total_length=x.shape[1])
            # The word's own projection next to its context: boundaries are mostly local.
            return self.out(self.drop(torch.cat([z, context], dim=-1)))

    return TaggerNet()


@dataclass(frozen=True)
class Tagger:
    """Weights of the word tagger (the network's state, as numpy arrays) and the words of the
    keyword lists it learned from (typo correction prefers them)."""

    weights: dict[str, np.ndarray]
    vocabulary: frozenset[str] = frozenset()
    _net: list = field(default_factory=list, repr=False, compare=False)

    @property
    def width(self) -> int:
        """Features per word the tagger reads (the sentence model's width + 2)."""
        return int(self.weights["inp.weight"].shape[1])

    @property
    def hidden(self) -> int:
        """Width of the projection and of the GRU's two directions together."""
        return int(self.weights["inp.weight"].shape[0])

    def network(self) -> object:
        """The torch network with these weights, built once, in eval mode."""
        if not self._net:
            import torch

            net = build_network(self.width, self.hidden)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
            self._net.append(net.eval())
        return self._net[0]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Log-softmax O/B/I scores, one row per word, of one text."""
        return self.scores_batch([features])[0]

    def scores_batch(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Scores of many texts; texts of one word count run together, unpadded, in blocks of
        a fixed number of rows (zero rows fill the last), so every product has one shape and a
        text's scores do not depend on which texts share its batch."""
        import torch

        out: list[np.ndarray | None] = [None] * len(features)
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            groups.setdefault(len(f), []).append(i)
        net = self.network()
        with torch.inference_mode():
            for n, rows in groups.items():
                if n == 0:
                    for i in rows:
                        out[i] = np.zeros((0, N_TAGS), dtype=np.float32)
                    continue
                for start in range(0, len(rows), BLOCK_ROWS):
                    part = rows[start : start + BLOCK_ROWS]
                    x = np.zeros((BLOCK_ROWS, n, self.width), dtype=np.float32)
                    x[: len(part)] = np.stack([features[i] for i in part])
                    log = torch.log_softmax(net(torch.from_numpy(x)), dim=-1).numpy()
                    for k, i in enumerate(part):
                        out[i] = log[k]
        return out

    def spans(self, features: np.ndarray) -> list[tuple[int, int]]:
        """Word spans [a, b) tagged as keywords in one text (see `spans_of`)."""
        return spans_of(self.scores(features))

    def save(self, path: Path) -> None:
        """Write the weights as a compressed .npz (float32)."""
        np.savez_compressed(path, **{f"w:{k}": v for k, v in self.weights.items()},
                            vocab=np.array(sorted(self.vocabulary), dtype=str))


def spans_of(scores: np.ndarray) -> list[tuple[int, int]]:
    """Word spans [a, b) from O/B/I scores, in text order; never none for a text with words
    (a text asks for something: its likeliest phrase start then stands alone)."""
    found = decode_spans(viterbi(scores))
    if found or not len(scores):
        return found
    start = int(np.argmax(scores[:, 1]))
    end = start + 1
    while end < len(scores) and scores[end, 2] > scores[end, 0]:
        end += 1
    return [(start, end)]


def load_tagger(path: str | Path) -> Tagger:
    """Load tagger weights from an .npz file written by `Tagger.save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"keyword tagger {path} not found; build it with "
            "`python -m pipeline.keyphrases.train_tagger` (docs/keywords.md)")
    with np.load(path, allow_pickle=False) as data:
        weights = {k[2:]: data[k].astype(np.float32) for k in data.files if k.startswith("w:")}
        if "inp.weight" not in weights:
            raise ValueError(f"keyword tagger {path} holds no tagger network weights; rebuild "
                             "it with `python -m pipeline.keyphrases.train_tagger`")
        return Tagger(weights, vocabulary=frozenset(str(w) for w in data["vocab"]))


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
