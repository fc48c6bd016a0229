"""What every score is: one small class in one file, declaring its name, its place in the tables and
its hyper-parameters (``params``, see ``ood.params.Param``) once, with ``fit`` on the cached training
features and ``score`` on cached features. Scores never run the backbone and never touch files.

Inputs are dicts of cached tensors: ``features`` (N x d, phi), ``logits`` (N x C), ``labels`` (N,).
``head`` is the backbone's final linear layer as ``{"weight": C x d, "bias": C}``.
Every score returns one float per input, in input order, **higher = more in-distribution**.
The fitted state is a dict of tensors and plain python values (it is saved with ``weights_only``).

Adding a score: a new file under ``scores/`` with a ``Score`` subclass, and one line
``"scores.<file>:<Class>"`` in ``scores/__init__.py``; see docs/method.md ("Adding a score"). A score of
one's own, outside this repository, imports ``Score`` from here (``__all__``: also the helpers the
built-in scores on stored patterns use) and runs with ``--score package.module:Class`` (docs/extending.md).
"""
import re
import warnings

import torch

from ood.errors import UserError
from ood.params import Context

__all__ = ["Score", "score_key", "correct_by_class", "missing_classes_warning"]


class Score:
    name = ""            # as printed in tables and result rows
    order = 1000         # place in the tables: lower first (the paper's six are 10..60)
    paper = False        # one of the paper's six scores (``--score all``)
    params = ()          # ood.params.Param declarations
    version = 1          # bump when ``fit`` changes what it stores: old stored patterns are refitted
    #                      (a plug-in's patterns are also keyed on its code, ood/plugins.py)
    paper_evaluation = "sampled"  # how its published row was evaluated (--protocol paper, ood/evaluation/protocols.py)

    def __init__(self, *, ctx=None, device=None, **settings):
        """Settings by name; a missing one takes its declared default for ``ctx`` (a Context).
        ``device`` is where ``fit`` may compute (e.g. RecLag's learner); it is not a setting."""
        self.device = device
        known = {p.name: p for p in self.params}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(unknown)}; "
                            f"it has {', '.join(known) or 'none'}")
        ctx = ctx or Context()
        self.settings = {}
        for p in self.params:
            value = p.resolve(settings.get(p.name), ctx, flag=p.flag(self.key()))
            self.settings[p.name] = value
            setattr(self, p.name, value)

    @classmethod
    def key(cls):
        """The flag prefix and file-name stem: the name in lower case, other characters as '_'."""
        return score_key(cls.name)

    @classmethod
    def needs_fit(cls):
        return cls.fit is not Score.fit

    def fit_settings(self):
        """The settings that change what ``fit`` produces (they key the stored pattern); a setting at one
        of its ``implicit`` values is left out (it fits as before the setting existed)."""
        return {p.name: self.settings[p.name] for p in self.params if p.fit and not self._implicit(p)}

    def shared_settings(self):
        """The settings two runs must share to be averaged together (everything but seeds; a setting at
        one of its ``implicit`` values is left out, as in ``fit_settings``)."""
        return {p.name: self.settings[p.name] for p in self.params if not p.replicate and not self._implicit(p)}

    def _implicit(self, p):
        return any(self.settings[p.name] == v and type(self.settings[p.name]) is type(v) for v in p.implicit)

    def replicate_settings(self):
        return {p.name: self.settings[p.name] for p in self.params if p.replicate}

    def fit_split(self):
        """The ID split ``fit`` reads: "train" (the training features), or "val" for a score that, as
        OpenOOD v1.5's ReAct does, fits on the ID validation split (a benchmark that has one)."""
        return "train"

    def fit(self, train, head):
        return {}

    def score(self, data, state, head):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


def score_key(name):
    """"ASH-S" -> "ash_s": how a score name appears in flags and file names (and is matched)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def correct_by_class(train, num_classes):
    """The stored-pattern set (docs/method.md, "Stored patterns"): training features the backbone
    classifies correctly, grouped by class. Returns (features sorted by class, offsets of length C+1).
    Classes without any such feature have an empty slice."""
    feats, labels = train["features"].float(), train["labels"].long()
    pred = train["logits"].argmax(1)
    keep = pred == labels
    if not keep.any():
        raise UserError("no training image is classified correctly by this backbone, so the scores built "
                        "on stored patterns (HE, SHE, RecLag, ...) have none. Is the checkpoint trained (see "
                        "its .log.csv) and for this data set?")
    feats, labels = feats[keep], labels[keep]
    order = torch.argsort(labels, stable=True)  # stable: each class keeps the stored order
    counts = torch.bincount(labels, minlength=num_classes)
    offsets = torch.zeros(num_classes + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    return feats[order].contiguous(), offsets


def missing_classes_warning(score_name, pred, offsets):
    """Warn when inputs are routed to a class without stored patterns; returns the mask of those inputs."""
    counts = offsets[1:] - offsets[:-1]
    empty = counts[pred] == 0
    if empty.any():
        classes = sorted(set(pred[empty].tolist()))
        warnings.warn(f"{score_name}: {int(empty.sum())} inputs are predicted as classes {classes}, which "
                      f"have no stored pattern; they were scored against the patterns of all classes.",
                      stacklevel=3)
    return empty
