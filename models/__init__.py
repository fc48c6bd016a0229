"""Backbone registry: name -> builder, default input size, HE beta, and the builder's options.

Every model returned by :func:`build_model` has ``forward_features(x) -> phi`` (N x d, the penultimate
feature), a final linear layer ``fc`` (logits = fc(phi)), ``feature_dim`` and ``forward(x) -> logits``.
Register a new backbone with :func:`register`, use any torchvision classifier as ``tv:<name>``, or a
builder function of your own as ``package.module:function``.
"""
from dataclasses import dataclass
from typing import Callable

from ood.errors import UserError
from ood.plugins import is_plugin_name, load_object

from .openood import openood_resnet18_224x224, openood_resnet18_32x32
from .resnet import resnet18, resnet34
from .small_cnn import small_cnn
from .torchvision_models import pretrained_weights, torchvision_model
from .wrn import WRN_OPTIONS, wrn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    input_size: int          # default input resolution (docs/method.md, "Backbones")
    he_beta: float           # default beta of the HE score (SHE code: 0.01 for ResNets, 0.2 for WRN)
    options: tuple = ()      # Params of the builder's architecture options (flags, fingerprints)


_REGISTRY = {}


def register(name, builder, input_size, he_beta=0.01, options=()):
    """Register a backbone. ``builder(num_classes, in_channels, **options)`` must return a module with
    ``forward_features``, ``fc`` and ``feature_dim`` (see the module docstring); ``options`` declares
    its architecture options as ``ood.params.Param`` (each becomes a flag)."""
    _REGISTRY[name] = ModelSpec(name, builder, input_size, he_beta, tuple(options))


register("resnet18", resnet18, 112)
register("resnet34", resnet34, 112)
register("wrn", wrn, 64, he_beta=0.2, options=WRN_OPTIONS)
register("cnn", small_cnn, 28)  # small CNN of the CPU demo (Fashion-MNIST at 28x28)
register("resnet50", lambda num_classes=1000, in_channels=3, pretrained=False, **_:
         torchvision_model("resnet50", num_classes, in_channels, pretrained), 224)
# OpenOOD v1.5's CIFAR and ImageNet-200 ResNet18s: its released best.ckpt files load unchanged
register("openood_resnet18_32x32", openood_resnet18_32x32, 32)
register("openood_resnet18_224x224", openood_resnet18_224x224, 224)


def model_names():
    return sorted(_REGISTRY) + ["tv:<torchvision model name>", "<package.module>:<builder function>"]


def all_options():
    """Every registered backbone's option Params, each flag once (for the command line)."""
    seen = {}
    for spec in _REGISTRY.values():
        for p in spec.options:
            seen.setdefault(p.name, p)
    return tuple(seen.values())


def get_spec(name):
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_plugin_name(name):
        builder = load_object(name, "model builder")
        return ModelSpec(name, builder, getattr(builder, "input_size", 32), getattr(builder, "he_beta", 0.01),
                         tuple(getattr(builder, "options", ())))
    if name.startswith("tv:") and len(name) > 3:
        import torchvision
        tv_name = name[3:]
        if tv_name not in torchvision.models.list_models(torchvision.models):
            known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
            raise UserError(f"unknown model {name!r}: torchvision has no classification model named "
                            f"{tv_name!r}. Known: {known}.")
        return ModelSpec(name, lambda num_classes=1000, in_channels=3, pretrained=False, **_:
                         torchvision_model(tv_name, num_classes, in_channels, pretrained), 224, 0.01)
    raise UserError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())} "
                    f"(or register a builder in models/__init__.py).")


def pretrained_id(name):
    """What identifies the ``--pretrained`` weights of backbone ``name`` in cache fingerprints:
    torchvision's weights and their file (its name holds the file's hash), so that another torchvision
    release with other DEFAULT weights is not served features of the old ones."""
    weights = pretrained_weights_of(name)
    if weights is None:  # a plug-in builder loads weights of its own choosing
        return f"{name}:pretrained"
    return f"torchvision:{weights}:{weights.url}"


def pretrained_weights_of(name):
    """torchvision's weights enum that ``--pretrained`` loads for backbone ``name`` (its ``transforms()``
    are the preprocessing they were evaluated with), or None for a backbone that is not torchvision's."""
    tv = "resnet50" if name == "resnet50" else name[3:] if name.startswith("tv:") else None
    return None if tv is None else pretrained_weights(tv)


def resolve_options(spec, values):
    """The checked architecture options of ``spec`` from ``values`` ({name: value or None})."""
    return {p.name: p.resolve(values.get(p.name), flag=p.flag()) for p in spec.options}


def build_model(name, num_classes, in_channels=3, pretrained=False, **options):
    """Build backbone ``name``; ``options`` go to the builder (e.g. layers/widen_factor/droprate for wrn)."""
    spec = get_spec(name)
    if pretrained and not (name == "resnet50" or ":" in name):
        raise UserError(f"--pretrained is available for resnet50 and tv:<name> models only, not {name!r}.")
    return spec.builder(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **options)
