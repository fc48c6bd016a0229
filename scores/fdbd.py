"""fDBD (Liu and Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024): the mean
distance of phi to the decision boundaries between its predicted class and the others, normalised by
its distance to the mean training feature:
(1 / (C - 1)) sum_{c != y} |l_y - l_c| / ||w_y - w_c||  /  ||phi - mu_train||.
OpenOOD v1.5 sums over the classes instead of averaging (the same order; ``reduction``) and searches the
normaliser: the distance to the training mean, or ||phi|| (``distance_as_normalizer`` false)."""
from ood.params import Param

from .base import Score

OPENOOD = "OpenOOD v1.5 (fdbd.yml, fdbd_postprocessor.py)"


class fDBD(Score):
    """Mean distance to the decision boundaries of the predicted class, over the distance to the training mean."""
    name, order = "fDBD", 140
    params = (
        Param("distance_as_normalizer", bool, True, "divide by the distance to the mean training feature "
              "(true, the paper's) or by ||phi|| (false)", "Liu and Qin 2024; fdbd code", grid=(True, False),
              implicit=(True,), grid_source="OpenOOD v1.5 (fdbd.yml)", benchmarks={"openood": True}, benchmark_source=OPENOOD),
        Param("reduction", str, "mean", "mean (the paper's, over the C - 1 other classes) or sum (OpenOOD's) of "
              "the distances to the boundaries: the same order, other values", "Liu and Qin 2024",
              choices=("mean", "sum"), implicit=("mean",), benchmarks={"openood": "sum"},
              benchmark_source=OPENOOD),
    )

    def fit(self, train, head):
        W = head["weight"].double()
        sq = (W * W).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2 * W @ W.T).clamp_min(0).sqrt()
        return {"mean": train["features"].double().mean(0), "wdist": dist.fill_diagonal_(1.0)}

    def score(self, data, state, head):
        logits = data["logits"].double()
        pred = logits.argmax(1)
        gap = (logits.gather(1, pred[:, None]) - logits).abs() / state["wdist"][pred]
        C = logits.shape[1]
        boundary = gap.sum(1) / (1 if self.reduction == "sum" else max(1, C - 1))  # the own class's term is 0
        centre = state["mean"] if self.distance_as_normalizer else 0
        norm = (data["features"].double() - centre).norm(dim=1).clamp_min(1e-8)
        return (boundary / norm).float()
