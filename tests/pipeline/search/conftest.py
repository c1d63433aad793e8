"""One tiny trained pipeline + index shared by the search tests (built once per session)."""

from __future__ import annotations

import pytest

from tests.factories import tiny_search_pipeline


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return tiny_search_pipeline(tmp_path_factory.mktemp("search"))
