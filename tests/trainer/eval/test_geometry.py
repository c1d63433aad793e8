"""Embedding geometry (trainer.eval.geometry) on hand-made unit vectors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from trainer.eval.embed import SplitFeatures
from trainer.eval.geometry import geometry


def test_geometry_numbers_worked_out_by_hand() -> None:
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # query 0 sits on image 0 (its target); query 1 halfway between images 0 and 1, target 2
    queries = torch.tensor([[1.0, 0.0], [2 ** -0.5, 2 ** -0.5]])
    split = SimpleNamespace(target_index=torch.tensor([0, 2]))
    nearest = torch.tensor([0, 1])
    shape = geometry(SplitFeatures(queries, gallery), split, nearest)
    assert shape["query_target_cos"] == pytest.approx((1.0 - 2 ** -0.5) / 2, abs=1e-4)
    assert shape["query_nearest_cos"] == pytest.approx((1.0 + 2 ** -0.5) / 2, abs=1e-4)
    mean_query = queries.mean(dim=0)
    mean_gallery = torch.tensor([0.0, 1 / 3])
    assert shape["modality_gap"] == pytest.approx(float((mean_query - mean_gallery).norm()),
                                                  abs=1e-4)


def test_queries_without_a_target_in_the_gallery_are_left_out_of_the_target_cosine() -> None:
    gallery = torch.eye(3)
    queries = torch.eye(3)[:2]
    split = SimpleNamespace(target_index=torch.tensor([0, -1]))
    shape = geometry(SplitFeatures(queries, gallery), split, torch.tensor([0, 1]))
    assert shape["query_target_cos"] == 1.0 and shape["query_nearest_cos"] == 1.0
