"""A score of a user's own, loaded through ``--score plugin_scores:Prototype`` (tests/test_registry.py)."""
import torch

from ood.params import Param
from scores.base import Score


class Prototype(Score):
    """Negative distance of phi to the nearest class mean raised to a power (a toy score for tests)."""
    name = "Prototype"
    params = (Param("power", float, 1.0, "exponent of the distance", "a test's choice", bounds="(0, inf)"),
              Param("shrink", float, 0.0, "shrinks the class means towards their mean", "a test's choice",
                    bounds="[0, 1]", fit=True))

    def fit(self, train, head):
        C = head["weight"].shape[0]
        means = torch.stack([train["features"][train["labels"] == c].mean(0) for c in range(C)])
        return {"means": (1 - self.shrink) * means + self.shrink * means.mean(0)}

    def score(self, data, state, head):
        return -torch.cdist(data["features"].float(), state["means"]).min(1).values ** self.power
