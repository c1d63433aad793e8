"""Batched keyword extraction: rule-made candidates, scored and filtered by KeyBERT embeddings."""

from __future__ import annotations

import numpy as np

from pipeline.keyphrases.candidates import SAME, generate_candidates
from pipeline.keyphrases.clauses import normalise
from pipeline.keyphrases.model import KeywordModel, Selection


def select_phrases(
    candidates: list[str],
    doc_vector: np.ndarray,
    phrase_vectors: dict[str, np.ndarray],
    selection: Selection,
) -> list[str]:
    """Keep on-topic, non-duplicate candidates (count adapts to the text), in text order."""
    if not candidates:
        return []
    matrix = np.stack([phrase_vectors[c] for c in candidates])
    # Rounded so that float noise from batch composition cannot flip a threshold decision.
    scores = np.round(matrix @ doc_vector, 4)
    best = int(np.argmax(scores))
    keep = [i for i, s in enumerate(scores) if s >= selection.min_score or i == best]
    # Near-duplicates ("grey" / "gray"): keep the one KeyBERT ranks higher.
    by_score = sorted(keep, key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for i in by_score:
        if candidates[i] == SAME or all(
            float(matrix[i] @ matrix[j]) < selection.duplicate_similarity for j in chosen
        ):
            chosen.append(i)
    chosen = sorted(chosen[: selection.max_phrases])
    return [candidates[i] for i in chosen]


def extract_keywords(
    model: KeywordModel,
    texts: list[str],
    batch_size: int = 256,
    selection: Selection | None = None,
) -> list[list[str]]:
    """Target keyword phrases for each text, in rendering (text) order; deterministic.

    An empty or whitespace-only text gives an empty list. `selection` defaults to Selection().
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    selection = selection or Selection()
    results: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        results.extend(_extract_batch(model, texts[start : start + batch_size], selection))
    return results


def _extract_batch(
    model: KeywordModel, texts: list[str], selection: Selection
) -> list[list[str]]:
    """One batch: candidates for every text, then two batched embedding calls."""
    candidates = [generate_candidates(t, model.corrector) if t.strip() else [] for t in texts]
    # A lone candidate is kept whatever its score, so only texts with a choice are embedded.
    live = [i for i, c in enumerate(candidates) if len(c) > 1]
    doc_vectors = model.embed([normalise(texts[i]) for i in live])
    phrase_vectors = model.embed_phrases([p for i in live for p in candidates[i]])
    out: list[list[str]] = [list(c) if len(c) == 1 else [] for c in candidates]
    for row, i in enumerate(live):
        out[i] = select_phrases(candidates[i], doc_vectors[row], phrase_vectors, selection)
    return out
