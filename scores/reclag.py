"""RecLag (Moriai et al., "Rectified Lagrangian for Out-of-Distribution Detection in Modern Hopfield
Networks", AAAI 2025): logsumexp_mu(beta xi_mu^(c) . phi), c the predicted class, with Xi^(c) learned from
the correctly classified training features of class c (scores/reclag_learner.py). The rectified dynamics
that give the score its meaning are in scores/reclag_dynamics.py; docs/method.md states both.

The declarations below are the one place of RecLag's defaults: those of the reference learner
(``learn_RecLag.py`` of github.com/RyoMoriai/RecLag_ood_detection, commit ee9c4e9).
"""
import torch

from ood.params import Param, Rule

from .base import Score, correct_by_class
from .reclag_dynamics import reclag_score_routed
from .reclag_learner import INITS, SAMPLERS, fit_memories

LEARNER = "learn_RecLag.py"


class RecLag(Score):
    """RecLag score: logsumexp_mu(beta xi_mu^(c) . phi) over the learned memories of the predicted class."""
    name, order, paper = "RecLag", 60, True
    paper_evaluation = "full"  # test_RecLag.py: every OOD image, FPR95 at the first ROC point with TPR > 95 %
    params = (
        Param("hidden", int, 10, "memory neurons H per class", LEARNER, bounds="[1, inf)", fit=True,
              retired=("--hidden",), grid=(5, 10, 20), grid_source="this project's: around the paper's H = 10"),
        Param("beta", float, 5.0, "inverse temperature (learning and score)", LEARNER, bounds="(0, inf)",
              fit=True, retired=("--beta",), grid=(2, 5, 10), grid_source="this project's: around the paper's 5"),
        Param("n_samples", int, 5, "memory samples S per input and step", LEARNER, bounds="[1, inf)",
              fit=True, retired=("--n_samples",)),
        Param("batch_size", int, 50, "learner batch size B (the remainder is dropped)", LEARNER,
              bounds="[1, inf)", fit=True, aliases=("--reclag_batch",)),
        Param("epochs", int, 50, "learner epochs", LEARNER, bounds="[0, inf)", fit=True),
        Param("lr", float, 1e-3, "Adam learning rate (betas 0.9/0.98, eps 1e-9)", LEARNER, bounds="(0, inf)",
              fit=True),
        Param("init", str, "random", "initial memories: distinct random rows of X_c, or k-means++ centres; "
              "rescaled to norm 10", LEARNER, choices=INITS, fit=True, retired=("--init",)),
        Param("sampler", str, "reference", "reference: samples from softmax(z), as the published code "
              "(tf.random.categorical on probabilities); posterior: samples from z, the paper's intent",
              LEARNER, choices=SAMPLERS, fit=True, retired=("--sampler",)),
        Param("seed", int, Rule(lambda ctx: ctx.seed, "the run's --seed"),
              "seed of the learner's init and sampler; several values: one fit each, reported as mean ± std",
              "the reference is unseeded", bounds="[0, inf)", fit=True, replicate=True),
    )

    def fit(self, train, head):
        num_classes = head["weight"].shape[0]
        patterns, offsets = correct_by_class(train, num_classes)
        labels = torch.repeat_interleave(torch.arange(num_classes), offsets[1:] - offsets[:-1])
        xis = fit_memories(patterns, labels, num_classes, hidden=self.hidden, beta=self.beta,
                           n_samples=self.n_samples, batch_size=self.batch_size, epochs=self.epochs, lr=self.lr,
                           init=self.init, sampler=self.sampler, seed=self.seed, device=self.device)
        sizes = torch.tensor([0 if x is None else x.shape[0] for x in xis])
        stacked = torch.zeros(num_classes, int(sizes.max()), patterns.shape[1])
        for c, x in enumerate(xis):
            if x is not None:
                stacked[c, :x.shape[0]] = x
        return {"xi": stacked, "sizes": sizes}

    @staticmethod
    def memories(state):
        """The per-class matrices Xi^(c) (None for a class without stored patterns)."""
        return [state["xi"][c, :n] if n else None for c, n in enumerate(state["sizes"].tolist())]

    def score(self, data, state, head):
        return reclag_score_routed(data["features"], data["logits"].argmax(1), self.memories(state), self.beta)
