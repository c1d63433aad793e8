"""One MiniLM forward pass per text gives both KeyBERT's document vector and per-word vectors.

The tagger reads the word vectors (mean of each word's sub-word token vectors from the last
layer), KeyBERT the pooled sentence vector, so candidates cost no second pass over the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Words the tagger labels: the scorer's own token pattern ("v-neck" is two words, as scored).
WORD = re.compile(r"[a-z0-9]+")
# Inner batch for the transformer: on CPU, small batches of one length run fastest.
ENCODE_BATCH = 32


@dataclass(frozen=True)
class Encoded:
    """One normalised text: its words, their character spans, vectors and the document vector."""

    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    word_vectors: np.ndarray  # (n_words, dim) float32
    doc_vector: np.ndarray  # (dim,) unit norm


def split_words(text: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Words of a normalised text and their character spans."""
    found = list(WORD.finditer(text))
    return tuple(m.group() for m in found), tuple(m.span() for m in found)


def encode_texts(st: object, texts: list[str]) -> list[Encoded]:
    """Word and document vectors of normalised `texts` from one forward pass each."""
    if not texts:
        return []
    enc = _tokenize(st, texts, offsets=True)
    tokens, docs = _forward(st, enc["input_ids"], keep_tokens=True)
    return [
        _words_of(text, offsets, tok, doc)
        for text, offsets, tok, doc in zip(texts, enc["offset_mapping"], tokens, docs, strict=True)
    ]


def embed_sentences(st: object, texts: list[str]) -> np.ndarray:
    """(n, dim) sentence vectors of `texts` (the model's own pooling and normalisation), as
    sentence-transformers' encode gives them, batched the same unpadded way."""
    if not texts:  # the tokenizer fails on an empty batch
        return np.zeros((0, sentence_width(st)), dtype=np.float32)
    _, docs = _forward(st, _tokenize(st, texts, offsets=False)["input_ids"], keep_tokens=False)
    return np.stack(docs)


def sentence_width(st: object) -> int:
    """Embedding width of a sentence-transformers model (older releases name the getter
    differently)."""
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def _tokenize(st: object, texts: list[str], offsets: bool) -> dict:
    limit = int(getattr(st, "max_seq_length", 256) or 256)
    return st.tokenizer(texts, truncation=True, max_length=limit,
                        return_offsets_mapping=offsets, return_token_type_ids=False,
                        return_attention_mask=False)


def _forward(st: object, input_ids: list[list[int]], keep_tokens: bool
             ) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
    """Token vectors (when asked) and sentence vectors of tokenized texts.

    Texts of one token length are encoded together, unpadded: a text's vectors then do not
    depend on which other texts share its batch, so sharding cannot change keywords.
    """
    import torch

    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(input_ids):
        groups.setdefault(len(ids), []).append(i)
    tokens: list[np.ndarray | None] = [None] * len(input_ids)
    docs: list[np.ndarray | None] = [None] * len(input_ids)
    with torch.inference_mode():
        for rows in groups.values():
            for start in range(0, len(rows), ENCODE_BATCH):
                part = rows[start : start + ENCODE_BATCH]
                ids = torch.tensor([input_ids[i] for i in part])
                features = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                if "token_type_ids" in st.tokenizer.model_input_names:
                    features["token_type_ids"] = torch.zeros_like(ids)
                out = st(features)
                tok = out["token_embeddings"].float().numpy() if keep_tokens else None
                doc = out["sentence_embedding"].float().numpy()
                for k, i in enumerate(part):
                    docs[i] = doc[k]
                    if keep_tokens:
                        tokens[i] = tok[k]
    return tokens, docs


def _words_of(text: str, offsets: list, tok: np.ndarray, doc: np.ndarray) -> Encoded:
    """Average each word's sub-word vectors (a word cut off by truncation gets zeros)."""
    words, spans = split_words(text)
    vectors = np.zeros((len(words), tok.shape[1]), dtype=np.float32)
    w = 0
    counts = np.zeros(len(words), dtype=np.float32)
    for t, (a, b) in enumerate(offsets):
        if b <= a:
            continue  # special tokens
        while w < len(spans) and spans[w][1] <= a:
            w += 1
        if w < len(spans) and spans[w][0] <= a < spans[w][1]:
            vectors[w] += tok[t]
            counts[w] += 1
    vectors /= np.maximum(counts, 1)[:, None]
    return Encoded(words, spans, vectors, doc.astype(np.float32))
