"""Backbone registry: name -> builder, default input size, HE beta.

Every model returned by :func:`build_model` has ``forward_features(x) -> phi`` (N x d, the penultimate
feature), a final linear layer ``fc`` (logits = fc(phi)), ``feature_dim`` and ``forward(x) -> logits``.
Register a new backbone with :func:`register`, use any torchvision classifier as ``tv:<name>``, or a
builder function of your own as ``package.module:function``.
"""
from dataclasses import dataclass
from typing import Callable

from ood.errors import UserError

from .resnet import resnet18, resnet34
from .small_cnn import small_cnn
from .torchvision_models import torchvision_model
from .wrn import wrn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    input_size: int          # default input resolution (METHOD.md section 1)
    he_beta: float           # default beta of the HE score (SHE code: 0.01 for ResNets, 0.2 for WRN)


_REGISTRY = {}


def register(name, builder, input_size, he_beta=0.01):
    """Register a backbone. ``builder(num_classes, in_channels, **options)`` must return a module with
    ``forward_features``, ``fc`` and ``feature_dim`` (see the module docstring)."""
    _REGISTRY[name] = ModelSpec(name, builder, input_size, he_beta)


register("resnet18", resnet18, 112)
register("resnet34", resnet34, 112)
register("wrn", wrn, 64, he_beta=0.2)
register("cnn", small_cnn, 28)  # small CNN of the CPU demo (Fashion-MNIST at 28x28)
register("resnet50", lambda num_classes=1000, in_channels=3, pretrained=False, **_:
         torchvision_model("resnet50", num_classes, in_channels, pretrained), 224)


def model_names():
    return sorted(_REGISTRY) + ["tv:<torchvision model name>", "<package.module>:<builder function>"]


def get_spec(name):
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name and not name.startswith("tv:"):
        return _from_module(name)
    if name.startswith("tv:") and len(name) > 3:
        tv_name = name[3:]
        return ModelSpec(name, lambda num_classes=1000, in_channels=3, pretrained=False, **_:
                         torchvision_model(tv_name, num_classes, in_channels, pretrained), 224, 0.01)
    raise UserError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())} "
                    f"(or register a builder in models/__init__.py).")


def _from_module(name):
    """``--model package.module:function``: a builder in a module of the user's (importable from the
    current directory or PYTHONPATH), used without editing this repository. The builder may carry
    ``input_size`` and ``he_beta`` attributes (defaults 32 and 0.01)."""
    import importlib
    import sys
    from pathlib import Path
    module, _, attr = name.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    try:
        builder = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load model builder {name!r} ({e}). Write it as package.module:function, "
                        f"with the module importable from the current directory or PYTHONPATH.") from None
    return ModelSpec(name, builder, getattr(builder, "input_size", 32), getattr(builder, "he_beta", 0.01))


def build_model(name, num_classes, in_channels=3, pretrained=False, **options):
    """Build backbone ``name``; ``options`` go to the builder (e.g. layers/widen_factor/droprate for wrn)."""
    spec = get_spec(name)
    if pretrained and not (name == "resnet50" or ":" in name):
        raise UserError(f"--pretrained is available for resnet50 and tv:<name> models only, not {name!r}.")
    return spec.builder(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **options)
