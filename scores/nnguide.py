"""NNGuide (Park, Jung and Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection", ICCV
2023): the energy E(x) = logsumexp(logits) times the guidance G(x), the mean of the k largest inner
products of phi/||phi|| with the bank {E(x_j) phi_j/||phi_j||} of a fraction of the training set: a fixed
random draw (the NNGuide code's bankset), or as OpenOOD v1.5 takes it (``bank`` first): the first whole
batches of its training loader until they hold more than int(N alpha) images, i.e. the first
min(N, B (int(N alpha) // B + 1)) training images in the list's order (B: OpenOOD's evaluator batch size,
200; its CIFAR and ImageNet-200 scripts do not shuffle). The guidance is computed block by block with a
running top-k."""
import torch

from ood.params import Param

from .base import Score
from .knn import fixed_subset, normalise, top_similarities, usable_k
from .logits import energy

OPENOOD = "OpenOOD v1.5 (nnguide.yml, nnguide_postprocessor.py)"


class NNGuide(Score):
    """Energy times the mean similarity to the k nearest energy-scaled training features."""
    name, order = "NNGuide", 130
    params = (
        Param("k", int, 10, "neighbours averaged in the guidance", "Park et al. 2023, nnguide code",
              bounds="[1, inf)", benchmarks={"openood": 100}, benchmark_source=OPENOOD),
        Param("bank_fraction", float, 0.01, "fraction alpha of the training images in the bank",
              "Park et al. 2023, nnguide code (bankset_ratio 0.01; the paper's ImageNet setting, used on every "
              "data set here)", bounds="(0, 1]", fit=True, benchmarks={"openood": 0.01}, benchmark_source=OPENOOD),
        Param("bank", str, "random", "which training images: random (a fixed random draw of round(alpha N)) or "
              "first (OpenOOD's: the first whole batches of bank_batch images holding more than int(alpha N))",
              "nnguide code (random)", choices=("random", "first"), fit=True, implicit=("random",), benchmarks={"openood": "first"},
              benchmark_source=OPENOOD),
        Param("bank_batch", int, 200, "with bank first: the batch size B of the loader whose whole batches "
              "make the bank", "OpenOOD v1.5's evaluator (batch_size 200)", bounds="[1, inf)", fit=True,
              implicit=(200,)),
    )

    def bank_rows(self, n):
        """The indices of the bank among ``n`` training rows (None: all of them)."""
        if self.bank == "first":
            size = min(n, self.bank_batch * (int(n * self.bank_fraction) // self.bank_batch + 1))
            return None if size >= n else torch.arange(size)
        return fixed_subset(n, self.bank_fraction)

    def fit(self, train, head):
        idx = self.bank_rows(len(train["features"]))
        feats, logits = (train["features"], train["logits"]) if idx is None else \
            (train["features"][idx], train["logits"][idx])
        return {"bank": (normalise(feats.double()) * energy(logits)[:, None]).float()}

    def score(self, data, state, head):
        bank = state["bank"]
        guidance = top_similarities(normalise(data["features"].float()), bank, usable_k(self, bank),
                                    self.device).double().mean(1)
        return (guidance * energy(data["logits"])).float()
