"""The RecLag learner in the reference's structure: the oracle for tests and scripts/benchmark_reclag.py.

One class after another, one batch after another, the loss written like the reference ``loss_function``
(with its S x B x d reconstruction), autograd and ``torch.optim.Adam``: the structure of
``compute_mat_MHN`` in the authors' ``learn_RecLag.py``. ``scores.reclag_learner.fit_memories`` computes
the same matrices, batched over classes and in closed form, to float32 round-off; this module exists to
show that (tests/test_reclag_learner.py) and to measure what the batching gains.
"""
import torch

from .reclag_learner import ADAM_BETAS, ADAM_EPS, _finish, _Plan, draw_memory_indices, reclag_loss

__all__ = ["fit_memories_loop"]


def fit_memories_loop(features, labels, num_classes, *, hidden, beta, n_samples, batch_size, epochs, lr, init,
                      sampler, seed, xi_init=None, sample_indices=None, device=None, return_losses=False):
    """The same learner, structured like the reference ``compute_mat_MHN``: one class after another, one
    batch after another, autograd through ``reclag_loss`` and ``torch.optim.Adam``.

    Same arguments, random streams and results as ``fit_memories`` (to float32 round-off); it is the
    baseline the tests and scripts/benchmark_reclag.py compare the batched learner with.
    """
    plan = _Plan(features, labels, num_classes, hidden, beta, n_samples, batch_size, epochs, lr, init,
                 sampler, seed, xi_init, sample_indices, device)
    result, losses = [], []
    for c in range(num_classes):
        if plan.xi0[c] is None:
            result.append(None)
            losses.append(None)
            continue
        xi = plan.xi0[c].clone().requires_grad_(True)
        opt = torch.optim.Adam([xi], lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        # X_c's full batches, consecutive slices in stored order (the reference's tf.data batching)
        batches = plan.class_features(c, 0, plan.n_batches[c] * batch_size).split(batch_size)
        trace = []
        step = 0
        for _ in range(epochs):
            for k in range(plan.n_batches[c]):
                x = batches[k]
                if plan.injected:
                    smp = plan.samples[c][step]
                else:
                    with torch.no_grad():
                        z = torch.softmax(plan.beta * (x @ xi.T), dim=-1)          # (B, H)
                    u = torch.rand((n_samples, batch_size), generator=plan.gens[c]).to(plan.device)
                    smp = draw_memory_indices(z.T, u, sampler)
                loss = reclag_loss(x, xi, plan.beta, smp)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                trace.append(loss.item())
                step += 1
        result.append(xi.detach())
        losses.append(torch.tensor(trace, dtype=torch.float64))
    return _finish(result, losses, return_losses)

