"""NNGuide (Park, Jung and Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection", ICCV
2023): the energy E(x) = logsumexp(logits) times the guidance G(x), the mean of the k largest inner
products of phi/||phi|| with the bank {E(x_j) phi_j/||phi_j||} of a random fraction of the training set.
The guidance is computed block by block with a running top-k."""
from ood.params import Param

from .base import Score
from .knn import fixed_subset, normalise, top_similarities, usable_k
from .logits import energy


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
        idx = fixed_subset(len(train["features"]), self.bank_fraction)
        feats, logits = (train["features"], train["logits"]) if idx is None else \
            (train["features"][idx], train["logits"][idx])
        return {"bank": (normalise(feats.double()) * energy(logits)[:, None]).float()}

    def score(self, data, state, head):
        bank = state["bank"]
        guidance = top_similarities(normalise(data["features"].float()), bank, usable_k(self, bank),
                                    self.device).double().mean(1)
        return (guidance * energy(data["logits"])).float()
