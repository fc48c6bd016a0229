"""The RecLag learner: the interaction matrix Xi^(c) of every class, learned from its stored patterns.

Moriai, Inoue, Tanaka, Kawakami, Ikehata, Sato, "Rectified Lagrangian for Out-of-Distribution Detection
in Modern Hopfield Networks", AAAI 2025 (arXiv 2502.14003); reference learner ``learn_RecLag.py`` of the
first commit (ee9c4e9) of github.com/RyoMoriai/RecLag_ood_detection. docs/method.md, "The RecLag learner",
states the algorithm; this module is pure tensor code (no file I/O, no argument parsing, no backbone).

For one class with stored patterns X_c (N x d, correctly classified training features, in stored order)
the learner fits a matrix Xi in R^{H x d} (H memory neurons). One step on a batch x in R^{B x d}
(consecutive slices, remainder dropped, no shuffle) with S samples:

    h = x Xi^T                      (B x H)            z = softmax(beta h)
    mu_{s,b} ~ Categorical(.)       S memory indices per input, with replacement
    D_{s,b} = ||x_b - xi_{mu_{s,b}}||^2                (the decoder is Xi itself: x_hat = xi_mu)
    g_{s,b} = (2 pi)^{-1/2} exp(-D_{s,b} / 2)
    w_{s,b} = (g_{s,b} + 1e-16) / mean_s (g_{s,b} + 1e-16)           (a constant: no gradient)
    loss    = mean_{s,b} w_{s,b} ( D_{s,b} / d - log(z_{b, mu_{s,b}} + 1e-12) )

and Adam (betas (0.9, 0.98), eps 1e-9). The gradient reaches Xi through the reconstruction x_hat and
through z. The reference samples with ``tf.random.categorical(z, S)``, which reads the probabilities z as
*logits*, i.e. it samples from softmax(z) (the "reference" sampler: it produced the published numbers);
the evident intent, sampling from z itself, is the "posterior" sampler.

``fit_memories`` learns all classes at once in one batched tensor program (classes stacked into a
C x H x d tensor, one bmm per product, a hand-written Adam on the stack). Its settings are explicit
keyword arguments without defaults: the defaults live in one place, the declaration of the RecLag
score (scores/reclag.py). ``scores/reclag_loop.py`` holds the reference's structure (one class after
another, autograd and torch.optim.Adam), the oracle the tests and the benchmark compare this with.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["fit_memories", "initial_memories", "reclag_loss", "reclag_loss_and_grad", "draw_memory_indices",
           "SAMPLERS", "INITS"]

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-9
INIT_NORM = 10.0          # every initial row is rescaled to this L2 norm (reference: 10 * xi / ||xi||)
LOG_EPS = 1e-12           # log(z + 1e-12) in the loss
GAUSS_EPS = 1e-16         # (g + 1e-16) in the importance weights
GAUSS_COEF = 1.0 / math.sqrt(2.0 * math.pi)
SAMPLERS = ("reference", "posterior")
INITS = ("random", "kmeans")
_CHUNK_STEPS = 128        # at most this many global steps get their batch rows and draws prepared together
_CHUNK_DRAWS = 1 << 21    # ... and at most this many random draws / injected indices (steps x C x S x B)


# ----------------------------------------------------------------------------------------------------
# One step: loss and gradient
# ----------------------------------------------------------------------------------------------------

def _importance_weights(dist2, dim):
    """w = (g + 1e-16) / mean_s(g + 1e-16) with g = (2 pi)^{-1/2} exp(-D/2); ``dim`` is the sample axis.

    Computed in float32 like the reference: for ||x - xi||^2 beyond about 106, g + 1e-16 rounds to 1e-16
    and the weights are exactly 1, as the reference's are (its features give such distances often)."""
    g = torch.exp(dist2 * -0.5).mul_(GAUSS_COEF).add_(GAUSS_EPS)
    return g / g.mean(dim, keepdim=True)


def reclag_loss(x, xi, beta, samples):
    """The RecLag training loss of one batch, written directly like the reference ``loss_function``.

    x: (B, d) batch, xi: (H, d) memories (may require grad), samples: (S, B) int memory indices.
    Returns the scalar loss  mean_{s,b} w_{s,b} (mean_d (x_b - xi_{mu_sb})^2 - log(z_{b,mu_sb} + 1e-12))
    with z = softmax(beta x xi^T) and the importance weights w detached. Differentiable in ``xi`` (through
    both the reconstruction and z): ``torch.autograd.grad(reclag_loss(...), xi)`` is the step's gradient.
    Builds the S x B x d reconstruction, as the reference does; ``reclag_loss_and_grad`` avoids it.
    """
    samples = torch.as_tensor(samples, device=xi.device).long()
    z = torch.softmax(beta * (x @ xi.T), dim=-1)                  # (B, H)
    diff = x.unsqueeze(0) - xi[samples]                           # (S, B, d)
    sq = diff * diff
    with torch.no_grad():
        w = _importance_weights(sq.sum(-1), dim=0)                # (S, B), a constant
    z_sel = torch.gather(z, 1, samples.T).T                       # (S, B): z_{b, mu_sb}
    return (w * (sq.mean(-1) - torch.log(z_sel + LOG_EPS))).mean()


def _loss_grad_core(x, x_sq, xi, hT, z, samples, beta, need_loss, grad_out=None):
    """Analytic loss, gradient and weights of one step for a stack of classes (see reclag_loss_and_grad).

    Memory-major layout, so that the samples index the memory axis directly and the softmax runs over a
    non-innermost axis (much faster on CPU for H = 10): x (C, B, d), x_sq (C, B) = ||x_b||^2,
    xi (C, H, d), hT = xi x^T and z = softmax(beta hT, dim=1) (C, H, B), samples (C, S, B).
    Padded memory rows (z = 0, never sampled) get a zero gradient. Returns loss (C,) or None, grad
    (C, H, d) (written into ``grad_out`` if given) and the importance weights (C, S, B).
    """
    C, B, d = x.shape
    S = samples.shape[1]
    # ||x - xi_mu||^2 = ||x||^2 - 2 h_mu + ||xi_mu||^2 (no S x B x d tensor; it
    # matches the reference's direct difference to float32 round-off, see tests/test_reclag_learner.py)
    xi_sq = torch.linalg.vector_norm(xi, dim=2).square_()        # (C, H), one pass, no temporary
    dist2 = torch.add(xi_sq.unsqueeze(2), hT, alpha=-2.0).add_(x_sq.unsqueeze(1))    # (C, H, B)
    d_sel = torch.gather(dist2, 1, samples)                       # (C, S, B): ||x_b - xi_{mu_sb}||^2
    w = _importance_weights(d_sel, dim=1)                         # (C, S, B)
    # loss = sum_{mu,b} A_{mu,b} (||x_b - xi_mu||^2 / d - log(z_{mu,b} + eps)),
    # A_{mu,b} = sum_s w_{s,b} [mu_{s,b} = mu] / (S B): the weighted sample counts
    coef = w * (1.0 / (S * B))
    A = torch.zeros_like(hT).scatter_add_(1, samples, coef)       # (C, H, B)
    # d loss / d h through z = softmax(beta h) with G = d loss / d z = -A / (z + eps):
    #   dh = beta z (G - sum_mu G_mu z_mu) = beta (z sum_mu P_mu - P),  P = -G z = A z / (z + eps)
    P = A * (z / (z + LOG_EPS))
    M = torch.mul(z, P.sum(1, keepdim=True)).sub_(P).mul_(beta)
    # d loss / d xi_mu = (2/d) sum_b A_{mu,b} (xi_mu - x_b) + sum_b dh_{mu,b} x_b
    M.sub_(A, alpha=2.0 / d)
    grad = torch.bmm(M, x, out=grad_out)
    grad.addcmul_(xi, A.sum(2, keepdim=True).mul_(2.0 / d))
    loss = None
    if need_loss:
        z_sel = torch.gather(z, 1, samples)
        loss = (coef * (d_sel / d - torch.log(z_sel + LOG_EPS))).sum((1, 2))
    return loss, grad, w


def reclag_loss_and_grad(x, xi, beta, samples):
    """Loss, gradient and importance weights of one step, in closed form (no autograd, no S x B x d).

    x: (B, d) or (C, B, d); xi: (H, d) or (C, H, d); samples: (S, B) or (C, S, B) memory indices.
    Returns (loss, grad, weights): loss a scalar (or (C,)), grad like xi, weights (S, B) (or (C, S, B)).
    The gradient of the loss of ``reclag_loss`` is

        d loss / d xi_mu = (2/d) sum_b A_{mu b} (xi_mu - x_b)
                           + beta sum_b (z_{mu b} sum_nu P_{nu b} - P_{mu b}) x_b
        A_{mu b} = sum_s w_{sb} [mu_sb = mu] / (S B),   P_{mu b} = A_{mu b} z_{mu b} / (z_{mu b} + 1e-12)

    with ||x - xi_mu||^2 = ||x||^2 - 2 h_mu + ||xi_mu||^2 reusing h = x xi^T. This is what ``fit_memories``
    runs, batched over classes.
    """
    single = xi.dim() == 2
    samples = torch.as_tensor(samples, device=xi.device).long()
    if single:
        x, xi, samples = x.unsqueeze(0), xi.unsqueeze(0), samples.unsqueeze(0)
    x, xi = x.float(), xi.float()
    hT = torch.bmm(xi, x.transpose(1, 2))
    z = torch.softmax(beta * hT, dim=1)
    loss, grad, w = _loss_grad_core(x, (x * x).sum(-1), xi, hT, z, samples, beta, need_loss=True)
    if single:
        return loss[0], grad[0], w[0]
    return loss, grad, w


# ----------------------------------------------------------------------------------------------------
# Sampling and initialisation
# ----------------------------------------------------------------------------------------------------

def draw_memory_indices(z, uniforms, sampler, n_memories=None):
    """Memory indices mu_{s,b} by inverse-CDF sampling from uniform draws in [0, 1).

    z: (..., H, B) softmax outputs, memories on axis -2 (z^T of the B x H matrix softmax(beta x Xi^T));
    uniforms: (..., S, B). ``sampler="reference"`` samples from softmax(z) (z read as logits, what
    ``tf.random.categorical(z, S)`` does); ``"posterior"`` samples from z. ``n_memories`` ((...,) int
    tensor) marks padded memory rows >= n_memories, which are never drawn.
    Returns (..., S, B) int64 indices. Inverse-CDF sampling from explicit uniforms is what lets the batched
    and the per-class learners draw identical indices from per-class random streams.
    """
    H = z.shape[-2]
    mask = None
    if n_memories is not None:
        mask = torch.arange(H, device=z.device) >= n_memories.unsqueeze(-1)     # (..., H)
        mask = mask.unsqueeze(-1)                                               # (..., H, 1)
    if sampler == "reference":
        p = torch.softmax(z if mask is None else z.masked_fill(mask, float("-inf")), dim=-2)
    elif sampler == "posterior":
        p = z if mask is None else z.masked_fill(mask, 0.0)
    else:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    cdf = p.cumsum(-2)                                                          # (..., H, B)
    target = uniforms * cdf[..., -1:, :]                                        # (..., S, B)
    idx = (cdf.unsqueeze(-3) <= target.unsqueeze(-2)).sum(-2)                   # first mu with cdf > u
    if n_memories is None:
        return idx.clamp_(max=H - 1)
    return torch.minimum(idx, (n_memories - 1).view(*n_memories.shape, 1, 1))


def _rescale_rows(rows):
    """Rescale every row to L2 norm 10, as the reference's ``10 * xi / ||xi||``. A zero row (possible for
    phi >= 0 only if a feature vector is all zero) stays zero; the reference would produce NaN."""
    norms = rows.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, rows * (INIT_NORM / norms.clamp_min(1e-30)), rows)


def initial_memories(x, hidden, init, generator=None):
    """Initial Xi of one class (docs/method.md, the learner's step 1), float32 (H, d).

    - |X_c| > H, ``init="random"``: H distinct rows of X_c chosen by ``torch.randperm(N, generator)``
      (the reference uses the unseeded ``random.sample``), rescaled to norm 10;
    - |X_c| > H, ``init="kmeans"``: the centres of ``sklearn.cluster.KMeans(H, random_state=0)``
      (k-means++; sklearn's default n_init), rescaled to norm 10;
    - |X_c| <= H (either init): H = |X_c| and the rows of X_c in order, **also rescaled to norm 10**: in
      the reference the rescaling loop runs over all ``h_dim`` rows after both branches. (The reference's
      k-means branch has no such case and fails for |X_c| < H; we use the rows for both inits.)
    """
    x = x.float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("a class with no sample has no initial memories")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if n <= hidden:
        rows = x.clone()
    elif init == "random":
        rows = x[torch.randperm(n, generator=generator)[:hidden].to(x.device)]
    else:
        from sklearn.cluster import KMeans
        km = KMeans(n_clusters=hidden, random_state=0).fit(x.detach().cpu().numpy())
        rows = torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=x.device)
    return _rescale_rows(rows)


def _class_generator(seed, c):
    """The random stream of class c: a CPU torch.Generator seeded from (seed, c), so that a class learns
    the same matrix whatever other classes are learnt with it (and in both learners)."""
    state = np.random.SeedSequence([int(seed), int(c)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _lookup(container, c):
    """container[c] for a list/tuple/dict-like per-class container; None if absent."""
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(c)
    return container[c] if c < len(container) else None


class _Plan:
    """Everything both learners share: per-class data, initial Xi, step counts, random streams."""

    def __init__(self, features, labels, num_classes, hidden, beta, n_samples, batch_size, epochs, lr,
                 init, sampler, seed, xi_init, sample_indices, device):
        if features.dim() != 2:
            raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
        labels = torch.as_tensor(labels).long().flatten().cpu()
        if labels.numel() != features.shape[0]:
            raise ValueError(f"{features.shape[0]} features but {labels.numel()} labels")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes})")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if min(hidden, n_samples, batch_size) < 1 or epochs < 0:
            raise ValueError("hidden, n_samples and batch_size must be >= 1 and epochs >= 0")
        self.device = torch.device(device) if device is not None else features.device
        self.d = features.shape[1]
        self.beta, self.S, self.B, self.epochs, self.lr = float(beta), n_samples, batch_size, epochs, lr
        self.sampler = sampler
        # group by class with one stable sort: X_c = rows offsets[c]:offsets[c + 1] of the sorted features,
        # in stored order. Features already grouped by class (as scores/base.correct_by_class returns
        # them) are used as they are; others are copied once in sorted order, so that every batch is a
        # contiguous block (gathering scattered rows at every step is markedly slower).
        order = torch.argsort(labels, stable=True)
        feats = features.detach()
        if not torch.equal(order, torch.arange(len(order))):
            feats = feats[order.to(feats.device)]
        self.features = feats.to(self.device, torch.float32)
        counts = torch.bincount(labels, minlength=num_classes)
        self.offsets = [0] + torch.cumsum(counts, 0).tolist()
        self.counts = counts.tolist()
        self.xi0, self.n_batches, self.steps, self.gens, self.samples = [], [], [], [], []
        for c in range(num_classes):
            Xc = self.class_features(c)
            gen = _class_generator(seed, c)
            given = _lookup(xi_init, c)
            if Xc.shape[0] == 0:
                xi0 = None
            elif given is not None:
                xi0 = torch.as_tensor(given).detach().to(self.device, torch.float32).clone()
                if xi0.dim() != 2 or xi0.shape[1] != self.d or xi0.shape[0] < 1:
                    raise ValueError(f"xi_init of class {c} must be (H, {self.d}), got {tuple(xi0.shape)}")
            else:
                xi0 = initial_memories(Xc, hidden, init, gen)
            nb = Xc.shape[0] // batch_size
            T = nb * epochs
            smp = _lookup(sample_indices, c)
            if smp is not None and T > 0:
                smp = torch.as_tensor(smp).long()
                if smp.dim() != 3 or smp.shape[0] < T or smp.shape[1:] != (n_samples, batch_size):
                    raise ValueError(f"sample_indices of class {c} must be (>= {T}, {n_samples}, "
                                     f"{batch_size}), got {tuple(smp.shape)}")
                if smp[:T].min() < 0 or smp[:T].max() >= xi0.shape[0]:
                    raise ValueError(f"sample_indices of class {c} must lie in [0, {xi0.shape[0]})")
            elif sample_indices is not None and T > 0:
                raise ValueError(f"sample_indices given but missing for class {c}")
            self.xi0.append(xi0)
            self.n_batches.append(nb)
            self.steps.append(T)
            self.gens.append(gen)
            self.samples.append(smp)
        self.injected = sample_indices is not None
        short = [c for c in range(num_classes) if 0 < self.counts[c] < batch_size]
        if short and epochs > 0:
            warnings.warn(f"RecLag: classes {short} have fewer than batch_size={batch_size} samples, so no "
                          f"full batch; their memories are the untrained initial ones.", stacklevel=3)

    def class_features(self, c, start=0, stop=None):
        """Rows start:stop of X_c = features[labels == c] in stored order (a view)."""
        stop = self.counts[c] if stop is None else stop
        return self.features[self.offsets[c] + start:self.offsets[c] + stop]


def _finish(xis, losses, return_losses):
    out = [None if xi is None else xi.detach().to("cpu", torch.float32).clone() for xi in xis]
    if return_losses:
        return out, losses
    return out


# ----------------------------------------------------------------------------------------------------
# The learners
# ----------------------------------------------------------------------------------------------------

def fit_memories(features, labels, num_classes, *, hidden, beta, n_samples, batch_size, epochs, lr, init,
                 sampler, seed, xi_init=None, sample_indices=None, device=None, return_losses=False):
    """Learn the RecLag matrices Xi^(c) of all classes at once (docs/method.md), batched.

    features: (N, d) float, labels: (N,) int in [0, num_classes): the correctly classified training
    features and their class (the caller filters); X_c = features[labels == c] in stored order.
    Returns a list of num_classes float32 CPU tensors Xi^(c) of shape (H_c, d), H_c = min(hidden, |X_c|),
    and None for a class without samples (the caller warns). A class with 0 < |X_c| < batch_size has no
    full batch, takes no step and keeps its initial matrix (a warning says so).

    hidden, beta, n_samples, batch_size, epochs, lr: H, beta, S, B, epochs, Adam lr.
    init: "random" (seeded distinct rows) or "kmeans"; see ``initial_memories``.
    sampler: "reference" (softmax(z), the published code) or "posterior" (z); see ``draw_memory_indices``.
    seed: class c draws its init and its samples from its own stream seeded by (seed, c), so results are
    deterministic and do not depend on which other classes are learnt alongside.
    xi_init: optional list/dict of initial Xi per class (H_c x d, any H_c >= 1), used as given (no
    rescaling); classes it leaves out (or gives None) get the default init, an empty class stays None.
    sample_indices: optional list/dict per class of int tensors (steps, S, B) replacing the sampler
    (the fixture's ``samples``); step t of class c is epoch t // n_batches_c, batch t % n_batches_c.
    device: where to compute (default: the device of ``features``).
    return_losses: also return a list of per-class float64 tensors, the loss of every step.

    How the batching works: classes with at least one full batch are sorted by their number of steps
    T_c = epochs * floor(|X_c| / B), longest first, and stacked into Xi (C, H_max, d) with zero padding
    rows (masked out of the softmax and the sampler, so they get zero gradient and stay zero). Global step
    g updates exactly the classes with T_c > g, a prefix of the stack, so a finished class is neither
    computed nor touched. Since every class starts at global step 0, the Adam step count of every updated
    class at global step g is g + 1 (its own count), and the bias corrections are those of learning the
    class alone. Each step is one gather of the C batches, two bmm (h = x Xi^T and the gradient) and
    elementwise work on C x H x B tensors; the Adam update is torch.optim.Adam's, applied to the stack
    (with the sqrt(bias2) correction folded into eps and the step size, which saves one pass). The only
    Python loop is over global steps (plus, once per chunk of up to 128 steps, one over classes to fetch
    their random draws or injected indices).
    """
    plan = _Plan(features, labels, num_classes, hidden, beta, n_samples, batch_size, epochs, lr, init,
                 sampler, seed, xi_init, sample_indices, device)
    dev, d, S, B = plan.device, plan.d, plan.S, plan.B
    result = [None if xi is None else xi.clone() for xi in plan.xi0]
    losses = [None if xi is None else torch.zeros(0, dtype=torch.float64) for xi in plan.xi0]
    order = sorted((c for c in range(num_classes) if plan.steps[c] > 0), key=lambda c: -plan.steps[c])
    if not order:
        return _finish(result, losses, return_losses)

    C = len(order)
    steps = np.array([plan.steps[c] for c in order])
    n_batches = np.array([plan.n_batches[c] for c in order])
    n_mem = torch.tensor([plan.xi0[c].shape[0] for c in order], device=dev)
    H = int(n_mem.max())
    padded = bool((n_mem < H).any())
    # batch k of class order[j] is rows start_j + k B + (0 .. B-1) of the features sorted by class
    X = plan.features
    X_sq = torch.linalg.vecdot(X, X)
    start = np.array([plan.offsets[c] for c in order])
    xi = torch.zeros(C, H, d, device=dev)
    for j, c in enumerate(order):
        xi[j, : plan.xi0[c].shape[0]] = plan.xi0[c]
    m, v = torch.zeros_like(xi), torch.zeros_like(xi)           # Adam moments
    # preallocated work buffers for the large per-step tensors (a fresh 10 MB allocation per step costs
    # about as much as the gather itself)
    x_buf, grad_buf, denom_buf = torch.empty(C, B, d, device=dev), torch.empty_like(xi), torch.empty_like(xi)
    logit_mask = None
    if padded:
        logit_mask = torch.zeros(C, H, 1, device=dev).masked_fill_(
            torch.arange(H, device=dev).view(1, H, 1) >= n_mem.view(C, 1, 1), float("-inf"))
    beta1, beta2 = ADAM_BETAS
    loss_log = torch.zeros(int(steps[0]), C, device=dev) if return_losses else None
    active = (steps[None, :] > np.arange(int(steps[0]))[:, None]).sum(1)   # classes updated at each step

    with torch.no_grad():
        chunk = max(1, min(_CHUNK_STEPS, _CHUNK_DRAWS // (C * S * B)))
        for g0 in range(0, int(steps[0]), chunk):
            K = min(chunk, int(steps[0]) - g0)
            Ca0 = int(active[g0])
            k = np.arange(g0, g0 + K)[:, None] % n_batches[None, :Ca0]          # (K, Ca0) batch index
            rows = torch.from_numpy((start[:Ca0] + k * B)[..., None] + np.arange(B)).to(dev)  # (K,Ca0,B)
            # this chunk's random draws or injected indices, class by class (per-class streams)
            draws = torch.zeros(K, Ca0, S, B, dtype=torch.long if plan.injected else torch.float32)
            for j, c in enumerate(order[:Ca0]):
                n = min(K, int(steps[j]) - g0)
                if plan.injected:
                    draws[:n, j] = plan.samples[c][g0:g0 + n]
                else:
                    draws[:n, j] = torch.rand((n, S, B), generator=plan.gens[c])
            draws = draws.to(dev)
            for t in range(K):
                g = g0 + t
                Ca = int(active[g])
                xi_a, m_a, v_a = xi[:Ca], m[:Ca], v[:Ca]
                r = rows[t, :Ca].reshape(-1)
                x = torch.index_select(X, 0, r, out=x_buf[:Ca].view(Ca * B, d)).view(Ca, B, d)
                hT = torch.bmm(xi_a, x.transpose(1, 2))                         # (Ca, H, B)
                bh = plan.beta * hT if logit_mask is None else plan.beta * hT + logit_mask[:Ca]
                z = torch.softmax(bh, 1)                                        # (Ca, H, B)
                if plan.injected:
                    smp = draws[t, :Ca]
                else:
                    smp = draw_memory_indices(z, draws[t, :Ca], sampler,
                                              n_mem[:Ca] if padded else None)
                loss, grad, _ = _loss_grad_core(x, X_sq.index_select(0, r).view(Ca, B), xi_a, hT, z, smp,
                                                plan.beta, return_losses, grad_out=grad_buf[:Ca])
                if return_losses:
                    loss_log[g, :Ca] = loss
                # Adam (torch.optim.Adam's update), step count g + 1:
                #   xi -= lr / bias1 * m / (sqrt(v) / sqrt(bias2) + eps)
                #       = lr sqrt(bias2) / bias1 * m / (sqrt(v) + eps sqrt(bias2))   (one pass fewer)
                m_a.lerp_(grad, 1 - beta1)
                v_a.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1, root2 = 1 - beta1 ** (g + 1), math.sqrt(1 - beta2 ** (g + 1))
                denom = torch.sqrt(v_a, out=denom_buf[:Ca]).add_(ADAM_EPS * root2)
                xi_a.addcdiv_(m_a, denom, value=-plan.lr * root2 / bias1)

    for j, c in enumerate(order):
        result[c] = xi[j, : int(n_mem[j])]
        if return_losses:
            losses[c] = loss_log[: int(steps[j]), j].double().cpu()
    return _finish(result, losses, return_losses)

