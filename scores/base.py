"""What every score is: a small class whose hyper-parameters live in its constructor (with the reference
default and where it comes from), ``fit`` on the cached training features, and ``score`` on cached
features. Scores never run the backbone and never touch files.

Inputs are dicts of cached tensors: ``features`` (N x d, phi), ``logits`` (N x C), ``labels`` (N,).
``head`` is the backbone's final linear layer as ``{"weight": C x d, "bias": C}``.
Every score returns one float per input, in input order, **higher = more in-distribution**.
"""
import warnings

import torch

from ood.errors import UserError


class Score:
    name = ""
    needs_fit = False

    def fit_settings(self):
        """Settings that change what ``fit`` produces (they go into the stored pattern's fingerprint)."""
        return {}

    def fit(self, train, head):
        return {}

    def score(self, data, state, head):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def correct_by_class(train, num_classes):
    """The stored-pattern set of METHOD.md section 2: training features the backbone classifies
    correctly, grouped by class. Returns (features sorted by class, offsets of length C+1)."""
    feats, labels = train["features"].float(), train["labels"].long()
    pred = train["logits"].argmax(1)
    keep = pred == labels
    feats, labels = feats[keep], labels[keep]
    order = torch.argsort(labels, stable=True)  # stable: each class keeps the stored order
    if not keep.any():
        raise UserError("no training image is classified correctly by this backbone, so HE, SHE and RecLag "
                        "have no stored patterns. Is the checkpoint trained (see its .log.csv) and for "
                        "this data set?")
    counts = torch.bincount(labels, minlength=num_classes)
    offsets = torch.zeros(num_classes + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        warnings.warn(f"classes {empty} have no correctly classified training sample, so no stored "
                      f"pattern; inputs predicted as one of them are scored against the stored patterns "
                      f"of all classes.", stacklevel=2)
    return feats[order].contiguous(), offsets


def missing_classes_warning(score_name, pred, offsets):
    """Warn (once per call) when inputs are routed to a class without stored patterns."""
    counts = offsets[1:] - offsets[:-1]
    empty = counts[pred] == 0
    if empty.any():
        classes = sorted(set(pred[empty].tolist()))
        warnings.warn(f"{score_name}: {int(empty.sum())} inputs are predicted as classes {classes}, which "
                      f"have no stored pattern; they were scored against the patterns of all classes.",
                      stacklevel=3)
    return empty
