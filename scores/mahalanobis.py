"""Mahalanobis (Lee, Lee, Lee and Shin, NeurIPS 2018) on the penultimate features, without input
perturbation or feature ensemble, and Relative Mahalanobis (Ren, Fort, Liu, Roy, Padhy and
Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection", 2021).

Class means mu_c of the training features (true labels), one covariance shared by the classes,
MD_c(x) = (phi - mu_c)^T Sigma^+ (phi - mu_c) with the pseudo-inverse of sklearn's ``pinvh`` (eigenvalues
below max |lambda| d eps are dropped, so a unit that is always 0 does not explode); the background MD_0
uses the mean and covariance of all training features. Mahalanobis = -min_c MD_c; RMD = -min_c (MD_c -
MD_0). Everything is float64 and block by block: the covariance is accumulated over blocks of training
features and the inputs are whitened block by block, so memory does not grow with the set sizes; the
block products run on ``--device`` (a GPU's fp64 units make the ImageNet covariance a matter of seconds).
"""
import torch

from .base import Score

BLOCK = 16384


def _dev(device):
    return torch.device(device) if device is not None else torch.device("cpu")


def second_moment(X, centre_rows, device=None):
    """The mean of (x - c)(x - c)^T over the rows x of X, c the row's centre (``centre_rows(i0, i1)``),
    accumulated in float64 over blocks of rows on ``device``; returned on the CPU. Also ViM's."""
    dev = _dev(device)
    d = X.shape[1]
    cov = torch.zeros(d, d, dtype=torch.float64, device=dev)
    for i in range(0, len(X), BLOCK):
        xc = X[i:i + BLOCK].to(dev, torch.float64) - centre_rows(i, min(i + BLOCK, len(X))).to(dev)
        cov += xc.T @ xc
    return (cov / max(1, len(X))).cpu()


def _whitening(X, centre_rows, device=None):
    """W (d x r) with (x - c) W the whitened coordinates: Sigma^+ = W W^T, Sigma = ``second_moment``."""
    evals, evecs = torch.linalg.eigh(second_moment(X, centre_rows, device))
    keep = evals > evals.abs().max() * X.shape[1] * torch.finfo(torch.float64).eps
    return evecs[:, keep] / evals[keep].sqrt()


def _class_fit(train, device=None):
    """The class means (true labels) in whitened coordinates, the shared whitening, and the mean of all
    training features."""
    X, y = train["features"], train["labels"].long()
    C = int(y.max()) + 1 if len(y) else 0
    sums = torch.zeros(C, X.shape[1], dtype=torch.float64)
    for i in range(0, len(X), BLOCK):
        sums.index_add_(0, y[i:i + BLOCK], X[i:i + BLOCK].double())
    counts = torch.bincount(y, minlength=C)
    means = sums / counts.clamp(min=1)[:, None].double()
    W = _whitening(X, lambda i0, i1: means[y[i0:i1]], device)
    return {"whiten": W, "means_w": means[counts > 0] @ W}, sums.sum(0) / max(1, len(X))


def _min_distance(feats, whiten, means_w, device=None):
    """min_c ||(phi - mu_c) W||^2 for every input, block by block, in float64."""
    dev = _dev(device)
    whiten, means_w = whiten.to(dev), means_w.to(dev)
    out = torch.empty(len(feats), dtype=torch.float64)
    m2 = (means_w * means_w).sum(1)
    for i in range(0, len(feats), BLOCK):
        z = feats[i:i + BLOCK].to(dev, torch.float64) @ whiten
        d2 = (z * z).sum(1, keepdim=True) - 2 * z @ means_w.T + m2
        out[i:i + BLOCK] = d2.clamp_min(0).min(1).values.cpu()
    return out


class Mahalanobis(Score):
    """Minus the smallest Mahalanobis distance to a class mean (shared covariance, penultimate layer)."""
    name, order = "Mahalanobis", 100

    def fit(self, train, head):
        return _class_fit(train, self.device)[0]

    def score(self, data, state, head):
        return (-_min_distance(data["features"], state["whiten"], state["means_w"], self.device)).float()


class RMD(Score):
    """Relative Mahalanobis: minus the smallest class distance minus the background distance."""
    name, order = "RMD", 101
    version = 2  # the background mean is stored whitened

    def fit(self, train, head):
        state, mean = _class_fit(train, self.device)
        whiten0 = _whitening(train["features"], lambda i0, i1: mean, self.device)
        return {**state, "whiten0": whiten0, "mean_w0": (mean @ whiten0)[None]}

    def score(self, data, state, head):
        md = _min_distance(data["features"], state["whiten"], state["means_w"], self.device)
        md0 = _min_distance(data["features"], state["whiten0"], state["mean_w0"], self.device)
        return (md0 - md).float()
