"""fDBD (Liu and Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024): the mean
distance of phi to the decision boundaries between its predicted class and the others, normalised by
its distance to the mean training feature:
(1 / (C - 1)) sum_{c != y} |l_y - l_c| / ||w_y - w_c||  /  ||phi - mu_train||."""
from .base import Score


class fDBD(Score):
    """Mean distance to the decision boundaries of the predicted class, over the distance to the training mean."""
    name, order = "fDBD", 140

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
        boundary = gap.sum(1) / max(1, C - 1)  # the predicted class's own term is 0
        norm = (data["features"].double() - state["mean"]).norm(dim=1).clamp_min(1e-8)
        return (boundary / norm).float()
