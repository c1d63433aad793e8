"""Raw-data unification of a new query, by the pipeline's own code (so search matches evaluate).

caption (the caption backend, or the caption given) -> KeyBERT keywords of the modification
(pipeline.keyphrases, the keywords stage's settings) -> text template (render.text_template) ->
keywords drawn on the reference (pipeline.core.drawing, as the render stage draws them) ->
encoder inputs (the inputs stage's resize + centre crop, the backbone's tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.core.drawing import DrawStyle, fit_canvas, render_visual_query
from pipeline.core.geometry import to_model_pixels
from pipeline.core.param_checks import check_template
from pipeline.core.params import Params
from trainer.models.clip import tokenize

# Longer texts are refused, not cut: CLIP reads 77 tokens of the text query anyway, and KeyBERT's
# cost grows with the text; a shop's modification is a phrase, a caption one sentence.
MAX_TEXT_CHARS = 1000
MAX_CAPTION_CHARS = 1000


class QueryError(ValueError):
    """A query that cannot be unified (empty text, missing caption, ...); says what to give."""


@dataclass
class UnifiedQuery:
    """One query after unification: the two unified queries and the encoder inputs."""

    caption: str
    modification: str
    keywords: list[str]  # the keywords actually drawn
    text_query: str
    visual_query: Image.Image
    tokens: np.ndarray  # (L,) int32
    pixels: np.ndarray  # (S, S, 3) uint8, the inputs stage's geometry


class QueryUnifier:
    """Unifies (reference image, modification text[, caption]) queries with fixed params."""

    def __init__(self, params: Params, image_size: int) -> None:
        self.params = params
        self.image_size = image_size
        self.style = DrawStyle.from_params(params.render)
        check_template(params.render.text_template)
        self._captioner = None

    def warm(self) -> None:
        """Load the keyword model now (a server's start), not on the first user's query."""
        if self.params.keywords.backend == "keybert":
            from transformers.utils import logging as hf_logging

            from pipeline.stages.keywords import keyword_model

            # transformers draws a "Loading weights" bar for a local model; a server's log
            # should say what it serves, not that.
            hf_logging.disable_progress_bar()
            keyword_model(self.params.keywords.model)

    def captions(self, images: list[Image.Image], given: list[str | None]) -> list[str]:
        """The given caption where there is one, else the caption backend's."""
        for i, caption in enumerate(given):
            if caption is not None and len(caption) > MAX_CAPTION_CHARS:
                raise QueryError(f"query {i}: the caption is {len(caption)} characters, over the "
                                 f"limit of {MAX_CAPTION_CHARS}; give a shorter one")
        missing = [i for i, c in enumerate(given) if c is None or not c.strip()]
        out = [c.strip() if c else "" for c in given]
        if not missing:
            return out
        backend = self.params.caption.backend
        if backend == "provided":
            raise QueryError("this index captions with caption.backend 'provided' (the dataset's "
                             "own captions): give the reference's caption (--caption / "
                             "'caption' field)")
        if backend != "blip2":
            raise QueryError(f"caption backend {backend!r} cannot caption a new image; give "
                             "a caption")
        cfg = self.params.caption.blip2
        if self._captioner is None:
            from pipeline.captioners.blip2 import load_captioner

            self._captioner = load_captioner(cfg.model, cfg.device, compile=cfg.compile)
        made = self._captioner.caption([images[i] for i in missing], cfg.prompt,
                                       cfg.max_new_tokens, cfg.num_beams)
        for i, caption in zip(missing, made, strict=True):
            out[i] = caption
        return out

    def keywords(self, texts: list[str], given: list[list[str] | None]) -> list[list[str]]:
        """KeyBERT keywords of each text (keywords.backend keybert), or the ones given."""
        cfg = self.params.keywords
        todo = [i for i, g in enumerate(given) if g is None]
        out = [list(g) if g is not None else [] for g in given]
        if not todo:
            return out
        if cfg.backend != "keybert":
            raise QueryError("this index reads keywords.backend 'provided' (the dataset's "
                             "keyword files): give the query's 'keywords' list")
        from pipeline.keyphrases import extract_keywords
        from pipeline.stages.keywords import keyword_model, keyword_selection

        found = extract_keywords(keyword_model(cfg.model), [texts[i] for i in todo],
                                 batch_size=cfg.batch_size, selection=keyword_selection(cfg))
        for i, words in zip(todo, found, strict=True):
            out[i] = words
        return out

    def unify(self, references: list[Image.Image], texts: list[str],
              captions: list[str | None] | None = None,
              keywords: list[list[str] | None] | None = None) -> list[UnifiedQuery]:
        """Unify a batch of queries (references are decoded RGB images)."""
        texts = [_modification(t, i) for i, t in enumerate(texts)]
        captions = self.captions(references, captions or [None] * len(texts))
        words = self.keywords(texts, keywords or [None] * len(texts))
        template = self.params.render.text_template
        text_queries = [template.format(caption=c, modification=t)
                        for c, t in zip(captions, texts, strict=True)]
        tokens = tokenize(self.params.clip.model, text_queries)
        out = []
        for i, reference in enumerate(references):
            drawn = render_visual_query(fit_canvas(reference, self.style), words[i], self.style)
            pixels = np.frombuffer(to_model_pixels(drawn.image, self.image_size), np.uint8)
            out.append(UnifiedQuery(captions[i], texts[i], list(drawn.layout.drawn),
                                    text_queries[i], drawn.image, tokens[i],
                                    pixels.reshape(self.image_size, self.image_size, 3)))
        return out


def _modification(text: object, index: int) -> str:
    """The modification text, stripped; a QueryError when it is missing or blank."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError(f"query {index}: the modification text is empty; say what to change "
                         "(e.g. 'with long sleeves')")
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"query {index}: the modification text is {len(text)} characters, over "
                         f"the limit of {MAX_TEXT_CHARS}; say what to change in fewer words")
    # Used as given, not stripped: the render stage formats the dataset's text unchanged.
    return text
