"""Batched keyword extraction: tagger-made candidates (every clause heard), ranked by KeyBERT.

Per batch of texts: one sentence-model pass gives each text's document vector and the tagger's
word features; the tagger proposes candidate phrases; KeyBERT's own `extract_keywords` ranks
each text's candidates against it (its cosine ranking, given the candidates through a
vectorizer and the embeddings we already hold, so nothing is embedded twice); then three
documented post-filters on KeyBERT's ranked list: drop candidates below `min_score` (the best
is always kept), drop near-duplicates of a better-ranked phrase (`duplicate_similarity`), keep
at most `max_phrases`, and give them back in text order.
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.feature_extraction.text import CountVectorizer

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

Ranked = list[tuple[str, float]]  # KeyBERT's (phrase, cosine) list, best first


def keybert_rank(keybert: object, candidates: list[list[str]], doc_vectors: np.ndarray,
                 phrase_vectors: dict[str, np.ndarray]) -> list[Ranked]:
    """KeyBERT's `extract_keywords` over given candidates and precomputed embeddings.

    Each document is a key whose analyzer yields that text's candidates, so KeyBERT's
    vectorizer sees exactly them (typo-corrected phrases need not occur in the raw text); the
    word embeddings follow the vectorizer's vocabulary order, as KeyBERT requires.
    """
    keys = [str(i) for i in range(len(candidates))]
    by_key = dict(zip(keys, candidates, strict=True))
    # A fixed vocabulary: its order is the word embeddings' order by construction.
    words = sorted({phrase for phrases in candidates for phrase in phrases})
    vectorizer = CountVectorizer(analyzer=by_key.__getitem__, lowercase=False, vocabulary=words)
    # KeyBERT scores each document with one sklearn cosine_similarity call, whose argument
    # validation costs ~0.9 ms a call here (most of KeyBERT's time); our embeddings are finite
    # float arrays by construction, so it is skipped: the same cosines, ~1 ms less per text.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        found = keybert.extract_keywords(
            keys, vectorizer=vectorizer, doc_embeddings=doc_vectors,
            word_embeddings=np.stack([phrase_vectors[w] for w in words]),
            top_n=max(len(c) for c in candidates))
    # KeyBERT returns a single document's list unwrapped
    return [found] if len(keys) == 1 else found


def select_phrases(candidates: list[str], ranked: Ranked,
                   phrase_vectors: dict[str, np.ndarray], selection: Selection) -> list[str]:
    """The post-filters on KeyBERT's ranking: on-topic, not a near-duplicate, in text order."""
    if not ranked:
        return []
    # KeyBERT rounds its cosines to 4 decimals, so float noise from batch composition cannot
    # flip a threshold decision; the best phrase is kept whatever its score.
    keep = [phrase for n, (phrase, score) in enumerate(ranked)
            if score >= selection.min_score or n == 0]
    chosen: list[str] = []
    for phrase in keep:  # near-duplicates ("grey" / "gray"): the better-ranked one stays
        if phrase == SAME or all(float(phrase_vectors[phrase] @ phrase_vectors[other])
                                 < selection.duplicate_similarity for other in chosen):
            chosen.append(phrase)
    kept = set(chosen[: selection.max_phrases])
    return [c for c in candidates if c in kept]


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
    # A lone candidate is kept whatever its score (the best always is), so KeyBERT ranks the
    # texts with a choice.
    choice = [i for i, c in candidates.items() if len(c) > 1]
    phrase_vectors = model.embed_phrases([p for i in choice for p in candidates[i]])
    out: list[list[str]] = [list(candidates.get(i, [])) for i in range(len(texts))]
    if choice:
        ranked = keybert_rank(model.keybert, [candidates[i] for i in choice],
                              np.stack([encoded[i].doc_vector for i in choice]),
                              phrase_vectors)
        for i, ranking in zip(choice, ranked, strict=True):
            out[i] = select_phrases(candidates[i], ranking, phrase_vectors, selection)
    return out
