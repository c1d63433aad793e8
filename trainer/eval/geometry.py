"""Where a mode's queries land in the embedding space, the measure behind DQU-CIR's motivation.

The paper argues that a nonlinear fusion network can move the fused query away from CLIP's
common embedding space, while DQU-CIR's linear mix of two CLIP features stays in it. Three
numbers per mode, from normalised query and gallery features:

- `query_target_cos`: mean cosine of a query to its own target (queries whose target is in the
  gallery); higher means queries land nearer what they should retrieve;
- `query_nearest_cos`: mean cosine of a query to its nearest gallery image (the reference
  masked, as ranking does); low means queries sit away from every image, off the manifold the
  gallery occupies;
- `modality_gap`: the distance between the mean query and the mean gallery embedding (Liang et
  al., NeurIPS 2022: "Mind the Gap"); 0 when the two clouds share a centre.
"""

from __future__ import annotations

import torch

from trainer.eval.embed import SplitFeatures
from trainer.eval.split import EvalSplit


def geometry(features: SplitFeatures, split: EvalSplit, nearest: torch.Tensor
             ) -> dict[str, float]:
    """The three numbers of one mode; `nearest` is each query's top-1 gallery position."""
    queries = features.queries.float().cpu()
    gallery = features.gallery.float().cpu()
    if len(queries) == 0 or len(gallery) == 0:
        return {}
    target = split.target_index.cpu()
    present = target >= 0
    to_target = (queries[present] * gallery[target[present]]).sum(dim=1)
    to_nearest = (queries * gallery[nearest.cpu().long()]).sum(dim=1)
    gap = (queries.mean(dim=0) - gallery.mean(dim=0)).norm()
    return {
        "query_target_cos": round(float(to_target.mean()) if len(to_target) else float("nan"),
                                  4),
        "query_nearest_cos": round(float(to_nearest.mean()), 4),
        "modality_gap": round(float(gap), 4),
    }
