"""MaxLogit (Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt and Song, "Scaling
Out-of-Distribution Detection for Real-World Settings", ICML 2022): the largest logit."""
from .base import Score


class MaxLogit(Score):
    """The largest logit, max_k logits_k (no settings)."""
    name, order = "MaxLogit", 70

    def score(self, data, state, head):
        return data["logits"].float().max(1).values
