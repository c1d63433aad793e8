"""Search with a trained model: unify a new query, look it up in a gallery index, serve it.

Public API: `Searcher` (load a model dir + index once; `search(image, text, k)`), `Query`.
Imported lazily, so the index stage's code (build, manifest, model) pulls in nothing else.
"""

from __future__ import annotations

__all__ = ["Query", "Searcher"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from pipeline.search import searcher

        return getattr(searcher, name)
    raise AttributeError(f"module 'pipeline.search' has no attribute {name!r}")
