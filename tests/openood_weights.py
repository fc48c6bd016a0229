"""Deterministic weights and inputs shared by tests/test_openood_models.py and the script that made its fixture
(tests/fixtures/make_openood_networks.py), so that both compute with the same numbers.

Every floating tensor of a state dict is drawn, in key order, from one seeded torch.Generator: uniform
numbers in float32 (torch's CPU uniform sampler is plain serial integer arithmetic, the same on every CPU,
unlike its vectorised normal sampler), scaled and cast to the tensor's dtype. Weights get variance
1 / fan-in, which keeps activations of order 1-20 through these networks (2 / fan-in lets ResNet-50's
residual sums grow to 1e4, where float32 round-off would no longer be small in absolute terms); norm-layer
scales lie near 1, biases and running means near 0, BatchNorm running variances in [0.5, 1.5] (positive).
Integer buffers (BatchNorm's num_batches_tracked, Swin's relative_position_index) keep the model's own
values.
"""
import math

import torch


def _uniform(g, shape, low, high):
    return torch.rand(shape, generator=g) * (high - low) + low


def seeded_state(model, seed=0):
    """A state dict for ``model`` (a module, or a state dict: same keys, order, shapes, dtypes) whose
    floating tensors are drawn from ``torch.Generator().manual_seed(seed)`` in key order."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    for key, t in state.items():
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        shape = tuple(t.shape)
        if key.endswith("running_var"):
            v = _uniform(g, shape, 0.5, 1.5)
        elif key.endswith("running_mean"):
            v = _uniform(g, shape, -0.1, 0.1)
        elif len(shape) >= 2:
            bound = math.sqrt(3.0 / math.prod(shape[1:]))  # variance 1 / fan-in
            v = _uniform(g, shape, -bound, bound)
        elif key.endswith("weight"):  # scales of BatchNorm / LayerNorm
            v = _uniform(g, shape, 0.8, 1.2)
        else:
            v = _uniform(g, shape, -0.1, 0.1)
        out[key] = v.to(t.dtype)
    return out


def seeded_input(shape, seed=1):
    """A float32 batch of ``shape`` with values uniform in [-2, 2] (about the range of normalised images)."""
    g = torch.Generator().manual_seed(seed)
    return _uniform(g, tuple(shape), -2.0, 2.0).float()
