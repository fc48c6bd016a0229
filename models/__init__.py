"""Backbones: the registry (models/registry.py) and the modules that register into it where each backbone
is defined. Every model :func:`build_model` returns has ``forward_features(x) -> phi`` (N x d, the
penultimate feature), a final linear layer ``fc`` (logits = fc(phi)), ``feature_dim`` and
``forward(x) -> logits``. A new backbone is one module with ``@register_backbone(...)`` on its builder and
one line below; torchvision's classifiers are ``tv:<name>``, timm's ``timm:<name>``, and a builder of
one's own ``package.module:function``. ``__all__``: the registry's names (models/registry.py), re-exported.
"""
from .registry import (ModelSpec, Weights, all_options, build_model, can_load_pretrained,  # noqa: F401
                       check_runs, get_spec, model_names, parse_model_arg, pretrained_id, register,
                       register_backbone, register_family, registered, resolve_options)

__all__ = ["register_backbone", "register", "register_family", "ModelSpec", "Weights", "build_model", "get_spec",
           "registered", "model_names", "all_options", "resolve_options", "parse_model_arg", "can_load_pretrained",
           "pretrained_id", "check_runs"]

# the modules that register backbones (one line each)
from . import resnet  # noqa: E402,F401  resnet18, resnet34
from . import wrn  # noqa: E402,F401  wrn
from . import small_cnn  # noqa: E402,F401  cnn
from . import torchvision_models  # noqa: E402,F401  resnet50, tv:<name>
from . import openood  # noqa: E402,F401  openood_resnet18_32x32, openood_resnet18_224x224
from . import timm_models  # noqa: E402,F401  timm:<name>
from . import preact_resnet  # noqa: E402,F401  preact_resnet18
