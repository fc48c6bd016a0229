"""The rectified Hopfield dynamics behind the RecLag score (docs/method.md, "The dynamics"; this part is
reconstructed from the released code and a notebook of the authors, not quoted from the paper).

A modern Hopfield network with feature neurons v in R^d, memory neurons h = Xi v and
LSE_beta(h) = (1/beta) log sum_mu exp(beta h_mu):

    vanilla:   E_HE(v)  = 1/2 ||v||^2 - LSE_beta(Xi v),          v <- Xi^T softmax(beta Xi v)
    RecLag:    E_Rec(v) = 1/2 ||v||^2 - max{LSE_beta(Xi v), theta} = min{E_HE(v), 1/2 ||v||^2 - theta}
               v <- H(LSE_beta(Xi v) - theta) Xi^T softmax(beta Xi v)     (Heaviside, H(0) = 0)
    theta = (1/beta) log(lambda H),  lambda > 0 the inverse memory strength.

The RecLag score is S(phi) = beta LSE_beta(Xi phi) = logsumexp_mu(beta xi_mu . phi) (no 1/2 ||phi||^2 term,
no 1/beta factor, as in the reference), with Xi the matrix of the predicted class. An input is sent to
the OOD attractor v = 0 at its first step iff S(phi) <= beta theta = log(lambda H).

Precision of the decision: the gate and the OOD-attractor decision are evaluated in float64, as
``log mean_mu exp(beta xi_mu . v) > log(lambda)`` (``log_mean_exp``), whatever the dtype of the inputs.
A caller that compares scores with the decision threshold must use the float64 score
(``reclag_score(phi.double(), xi.double(), beta)``): the float32 score can round across the threshold.
"""
import math
import warnings

import torch

__all__ = ["lse", "theta_from_lambda", "log_mean_exp", "hopfield_energy", "rectified_energy",
           "rectified_update", "iterate", "ood_attractor_decision", "reclag_score", "reclag_score_routed"]


def lse(h, beta):
    """LSE_beta(h) = (1/beta) log sum_mu exp(beta h_mu) over the last axis."""
    return torch.logsumexp(beta * h, dim=-1) / beta


def theta_from_lambda(lam, beta, H):
    """theta = (1/beta) log(lambda H), the threshold of the rectified Lagrangian for inverse memory strength
    lambda >= 0 and H memories. The gate is open iff mean_mu exp(beta xi_mu . v) > lambda. lambda = 0 gives
    theta = -inf (infinite memory strength, the vanilla MHN)."""
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return float("-inf") if lam == 0 else (math.log(lam) + math.log(H)) / beta


def log_mean_exp(h, beta):
    """log mean_mu exp(beta h_mu) over the last axis, in float64 (= beta LSE_beta(h) - log H).

    Written as max + log(mean(exp(. - max))), so that it is exactly 0 for h = 0: v = 0 is then a fixed
    point for lambda = 1 too (property 1 of docs/method.md)."""
    bh = beta * h.double()
    top = bh.max(-1, keepdim=True).values
    return top.squeeze(-1) + torch.log(torch.exp(bh - top).mean(-1))


def _gate(h, beta, lam):
    """H(LSE_beta(h) - theta) with H(0) = 0, as a bool tensor over the leading axes of h, evaluated in
    float64 as log_mean_exp(h, beta) > log(lambda) (the same inequality as LSE_beta(h) > theta)."""
    if lam == 0:
        return torch.ones(h.shape[:-1], dtype=torch.bool, device=h.device)
    return log_mean_exp(h, beta) > math.log(lam)


def hopfield_energy(v, xi, beta):
    """E_HE(v) = 1/2 ||v||^2 - LSE_beta(Xi v), the vanilla modern Hopfield energy; v (n, d) or (d,)."""
    return 0.5 * (v * v).sum(-1) - lse(v @ xi.T, beta)


def rectified_energy(v, xi, beta, lam):
    """E_Rec(v) = 1/2 ||v||^2 - max{LSE_beta(Xi v), theta} = min{E_HE(v), 1/2 ||v||^2 - theta}."""
    theta = theta_from_lambda(lam, beta, xi.shape[0])
    return 0.5 * (v * v).sum(-1) - torch.clamp(lse(v @ xi.T, beta), min=theta)


def rectified_update(v, xi, beta, lam):
    """One step v <- H(LSE_beta(Xi v) - theta) Xi^T softmax(beta Xi v) (H(0) = 0); v (n, d) or (d,).

    The gated softmax f(h) = H(LSE_beta(h) - theta) softmax(beta h) is the gradient of the rectified
    memory Lagrangian max{LSE_beta(h), theta} (the ``RLSEGate`` layer of the authors' notebook)."""
    h = v @ xi.T
    out = torch.softmax(beta * h, dim=-1) @ xi
    gate = _gate(v.double() @ xi.double().T, beta, lam)
    return out * gate.unsqueeze(-1).to(out.dtype)


def iterate(v, xi, beta, lam, steps=100, tol=1e-6, return_trajectory=False):
    """Iterate ``rectified_update`` from v until no coordinate moves more than ``tol`` or ``steps`` updates.

    Returns the final state (like v); with return_trajectory=True a (T+1, *v.shape) tensor of all states.
    lam = 0 iterates the vanilla MHN update."""
    states = [v]
    for _ in range(steps):
        new = rectified_update(states[-1], xi, beta, lam)
        states.append(new)
        if (new - states[-2]).abs().max() <= tol:
            break
    return torch.stack(states) if return_trajectory else states[-1]


def ood_attractor_decision(features, xi, beta, lam):
    """True where the first update sends phi to the OOD attractor v = 0, i.e. where the gate is closed:
    LSE_beta(Xi phi) <= theta, equivalently reclag_score(phi) <= beta theta = log(lambda H), evaluated in
    float64 (see the module docstring). With H(0) = 0 a tie goes to the attractor."""
    return ~_gate(features.double() @ xi.double().T, beta, lam)


def reclag_score(features, xi, beta):
    """RecLag score S(phi) = beta LSE_beta(Xi phi) = logsumexp_mu(beta xi_mu . phi) for one class's Xi
    (no 1/2 ||phi||^2 term, no 1/beta factor, as the reference). features (n, d) or (d,); computed in float32,
    or float64 if either input is float64. Higher = more ID."""
    dtype = torch.promote_types(torch.promote_types(features.dtype, xi.dtype), torch.float32)
    return torch.logsumexp(beta * (features.to(dtype) @ xi.to(features.device, dtype).T), dim=-1)


def reclag_score_routed(features, pred, xis, beta, chunk_elements=1 << 22):
    """RecLag scores routed by the predicted class, in input order.

    features (n, d); pred (n,) predicted classes; xis a list of per-class Xi (H_c x d, H_c may differ, None
    for a class without stored pattern); returns (n,) float32 scores logsumexp_mu(beta xi_mu^(pred) . phi).
    Vectorised: the Xi are stacked and padded to (C, H_max, d) (padding masked with -inf) and each block of
    inputs is scored against its gathered Xi with one bmm. An input predicted as a class with no Xi is
    scored against the memories of all classes (the project's rule for HE, see docs/method.md), with a
    warning.
    """
    features = features.float()
    pred = torch.as_tensor(pred, device=features.device).long()
    present = [x for x in xis if x is not None]
    if not present:
        raise ValueError("no class has a RecLag matrix")
    d = present[0].shape[1]
    H = max(x.shape[0] for x in present)
    C = len(xis)
    if pred.numel() and (pred.min() < 0 or pred.max() >= C):
        raise ValueError(f"predicted classes must lie in [0, {C})")
    stack = torch.zeros(C, H, d, device=features.device)
    n_mem = torch.zeros(C, dtype=torch.long, device=features.device)
    for c, x in enumerate(xis):
        if x is not None:
            stack[c, : x.shape[0]] = x.to(features.device, torch.float32)
            n_mem[c] = x.shape[0]
    out = torch.empty(features.shape[0], device=features.device)
    missing = n_mem[pred] == 0
    rows = (~missing).nonzero().flatten()
    block = max(1, chunk_elements // (H * d))
    for i in range(0, rows.numel(), block):
        r = rows[i:i + block]
        p = pred[r]
        h = torch.bmm(stack[p], features[r].unsqueeze(-1)).squeeze(-1)          # (m, H)
        h = h.masked_fill(torch.arange(H, device=h.device) >= n_mem[p].unsqueeze(1), float("-inf"))
        out[r] = torch.logsumexp(beta * h, dim=-1)
    if missing.any():
        classes = sorted(set(pred[missing].tolist()))
        warnings.warn(f"RecLag: {int(missing.sum())} inputs are predicted as classes {classes}, which have "
                      f"no RecLag matrix; they were scored against the memories of all classes.",
                      stacklevel=2)
        out[missing] = reclag_score(features[missing], torch.cat([x.to(features.device) for x in present]),
                                    beta)
    return out


