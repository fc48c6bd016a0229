"""NNGuide (Park, Jung and Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection", ICCV
2023): the energy E(x) = logsumexp(logits) times the guidance G(x), the mean of the k largest inner
products of phi/||phi|| with the bank {E(x_j) phi_j/||phi_j||} of a random fraction of the training set.
The guidance is computed block by block with a running top-k."""
import warnings

import torch

from ood.params import Param

from .base import Score
from .knn import normalise, top_similarities


class NNGuide(Score):
    """Energy times the mean similarity to the k nearest energy-scaled training features."""
    name, order = "NNGuide", 130
    params = (
        Param("k", int, 10, "neighbours averaged in the guidance", "Park et al. 2023, nnguide code",
              bounds="[1, inf)"),
        Param("bank_fraction", float, 0.01, "fraction of the training images in the bank (a fixed random draw)",
              "Park et al. 2023, nnguide code (bankset_ratio 0.01; the paper's ImageNet setting, used on every "
              "data set here)", bounds="(0, 1]", fit=True),
    )

    def fit(self, train, head):
        n = max(1, round(self.bank_fraction * len(train["features"])))
        idx = torch.randperm(len(train["features"]), generator=torch.Generator().manual_seed(0))[:n]
        energy = torch.logsumexp(train["logits"][idx].double(), 1)
        return {"bank": (normalise(train["features"][idx].double()) * energy[:, None]).float()}

    def score(self, data, state, head):
        bank, k = state["bank"], self.k
        if k > len(bank):
            warnings.warn(f"NNGuide: k = {k} is more than the {len(bank)} features of the bank; using k = {len(bank)}.")
            k = len(bank)
        guidance = top_similarities(normalise(data["features"].float()), bank, k, self.device).double().mean(1)
        return (guidance * torch.logsumexp(data["logits"].double(), 1)).float()
