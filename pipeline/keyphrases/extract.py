"""Batched keyword extraction: tagger-made candidates (every clause heard), scored and
filtered by KeyBERT."""

from __future__ import annotations

import numpy as np

from pipeline.keyphrases.clauses import (
    clauses_of,
    removal_scope,
    rescue_bare_clauses,
    within_clauses,
)
from pipeline.keyphrases.encode import Encoded, encode_texts
from pipeline.keyphrases.model import KeywordModel, Selection
from pipeline.keyphrases.normalise import normalise
from pipeline.keyphrases.phrases import SAME, drop_repeats, phrase_of
from pipeline.keyphrases.tagger import spans_of, word_features


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
    progress: str | None = None,
) -> list[list[str]]:
    """Target keyword phrases for each text, in rendering (text) order; deterministic.

    An empty or whitespace-only text gives an empty list. `selection` defaults to Selection().
    `progress` names a progress bar / log line (trainer.util.progress) for long runs.
    """
    from trainer.util.progress import Progress

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    selection = selection or Selection()
    results: list[list[str]] = []
    with Progress(progress or "keywords", len(texts), "texts", enabled=bool(progress)) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            results.extend(_extract_batch(model, batch, selection))
            bar.update(len(batch))
    return results


def candidates_of(model: KeywordModel, texts: list[str], items: list[Encoded],
                  clause_margin: float, within: bool) -> list[list[str]]:
    """Candidate phrases of normalised texts: the tagger's spans, inside each clause when
    `within` (removals kept with their object, bare clauses rescued within `clause_margin`),
    worded as keywords."""
    scores = model.tagger.scores_batch([word_features(item, text)
                                        for text, item in zip(texts, items, strict=True)])
    out = []
    for text, item, score in zip(texts, items, scores, strict=True):
        clauses = clauses_of(text, item.words, item.spans)
        if within:
            score = within_clauses(score, clauses)
        found = removal_scope(spans_of(score), item.words, clauses)
        found = rescue_bare_clauses(found, score, item.words, clauses, clause_margin)
        worded = [phrase_of(list(item.words[a:b]), model.corrector) for a, b in found]
        out.append(drop_repeats([p for p in worded if p]))  # a span of only "is": no phrase
    return out


def _extract_batch(
    model: KeywordModel, texts: list[str], selection: Selection
) -> list[list[str]]:
    """One batch: one forward pass per text (tagger + document vector), then the phrases."""
    norm = [normalise(t) for t in texts]
    live = [i for i, t in enumerate(norm) if t.strip()]
    encoded = dict(zip(live, encode_texts(model.sentence_model, [norm[i] for i in live]),
                       strict=True))
    candidates = dict(zip(live, candidates_of(model, [norm[i] for i in live],
                                              [encoded[i] for i in live],
                                              selection.clause_margin,
                                              selection.within_clauses), strict=True))
    # A lone candidate is kept whatever its score, so only texts with a choice are scored.
    phrase_vectors = model.embed_phrases(
        [p for c in candidates.values() if len(c) > 1 for p in c])
    out: list[list[str]] = [[] for _ in texts]
    for i, cands in candidates.items():
        out[i] = cands if len(cands) <= 1 else select_phrases(
            cands, encoded[i].doc_vector, phrase_vectors, selection)
    return out
