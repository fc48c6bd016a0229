"""The backbone registry: every backbone declared once, where it is defined.

A backbone is a builder ``builder(num_classes=..., in_channels=..., pretrained=False, **options)`` that
returns a module with ``forward_features(x) -> phi`` (N x d, the penultimate feature), a final linear layer
``fc`` (logits = fc(phi)), ``feature_dim`` and ``forward(x) -> logits``. Its registry entry declares, once,
everything the scripts derive from it: its default input size, the HE beta of its family, its
architecture options (``ood.params.Param``: each a flag and part of the cache fingerprints) and, when it
has any, the pretrained weights ``--pretrained`` loads (``Weights``: what names them in fingerprints, their
class count, and the preprocessing they were trained with). As timm's ``_registry.py`` does, a backbone is
registered where it is defined (``@register_backbone(...)`` on its builder); a family of backbones named
by prefix (``tv:<name>``, ``timm:<name>``) registers one resolver (``register_family``). A builder of
one's own, ``package.module:function``, declares the same facts as attributes of the function.
"""
from dataclasses import dataclass
from typing import Callable

from ood.errors import UserError
from ood.plugins import is_plugin_name, load_object


@dataclass(frozen=True)
class Weights:
    """Pretrained weights of a backbone: ``id`` names them in cache fingerprints (a new release of the
    weights is new features), ``num_classes`` is the size of their head, ``input_size`` the crop they are
    evaluated at, and ``transform()`` builds the preprocessing they were trained with (torchvision's
    ``weights.transforms()``, timm's resolved data config), which ``--preprocessing backbone`` uses."""
    id: str
    num_classes: int
    input_size: int
    transform: Callable


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    input_size: int                   # default input resolution (docs/method.md, "Backbones")
    he_beta: float                    # default beta of the HE score (SHE code: 0.01 for ResNets, 0.2 for WRN)
    options: tuple = ()               # Params of the builder's architecture options (flags, fingerprints)
    pretrained: Callable | None = None  # () -> Weights that --pretrained loads; None: it has none

    def weights(self):
        """The Weights of ``--pretrained``, or None when the backbone declares none."""
        return self.pretrained() if self.pretrained is not None else None


_REGISTRY = {}
_FAMILIES = {}  # prefix -> (resolver(name after the prefix) -> ModelSpec, how --help names the family)


def register(name, builder, input_size, he_beta=0.01, options=(), pretrained=None):
    """Register a backbone under ``name`` (see the module docstring); returns its ModelSpec. An option whose
    name another backbone declares differently is refused: both would be one flag."""
    for p in options:
        for other in _REGISTRY.values():
            same = next((q for q in other.options if q.name == p.name), None)
            if same is not None and same != p and other.name != name:
                raise ValueError(f"backbone {name}: option {p.name!r} is declared differently by backbone "
                                 f"{other.name}; both would be the flag {p.flag()}. Give it another name.")
    spec = ModelSpec(name, builder, input_size, he_beta, tuple(options), pretrained)
    _REGISTRY[name] = spec
    return spec


def register_backbone(name, *, input_size, he_beta=0.01, options=(), pretrained=None):
    """``register`` as a decorator on the builder, where the backbone is defined."""
    def wrap(builder):
        register(name, builder, input_size, he_beta, options, pretrained)
        return builder
    return wrap


def register_family(prefix, resolver, shown):
    """Backbones named ``<prefix>:<name>`` (``tv:resnet18``): ``resolver(name)`` returns the ModelSpec of
    one (a UserError for a name the family does not have); ``shown`` is how --help names the family."""
    _FAMILIES[prefix] = (resolver, shown)


def registered():
    """Every registered backbone's ModelSpec, by name (families are not enumerated)."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def model_names():
    return sorted(_REGISTRY) + [shown for _, shown in _FAMILIES.values()] + ["<package.module>:<builder function>"]


def all_options():
    """Every registered backbone's option Params, each flag once (registration refuses two declarations
    of one name)."""
    seen = {}
    for spec in _REGISTRY.values():
        for p in spec.options:
            seen.setdefault(p.name, p)
    return tuple(seen.values())


def get_spec(name):
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, colon, rest = name.partition(":")
    if colon and prefix in _FAMILIES:
        if not rest:
            raise UserError(f"--model {name}: name a model of the family, e.g. {_FAMILIES[prefix][1]}.")
        return _FAMILIES[prefix][0](rest)
    if is_plugin_name(name):
        builder = load_object(name, "model builder")
        return ModelSpec(name, builder, getattr(builder, "input_size", 32), getattr(builder, "he_beta", 0.01),
                         tuple(getattr(builder, "options", ())), getattr(builder, "pretrained", None))
    raise UserError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())} "
                    f"(or register a builder: models/registry.py).")


def can_load_pretrained(spec):
    """Whether ``--pretrained`` means something for ``spec``: it declares weights, or it is a builder of
    one's own (which loads weights of its own choosing)."""
    return spec.pretrained is not None or is_plugin_name(spec.name)


def pretrained_id(name):
    """What identifies the ``--pretrained`` weights of backbone ``name`` in cache fingerprints."""
    weights = get_spec(name).weights()
    return weights.id if weights is not None else f"{name}:pretrained"  # a plug-in loads weights of its choosing


def option_owners(name):
    """The registered backbones that declare option ``name``."""
    return [s.name for s in registered() if any(p.name == name for p in s.options)]


def resolve_options(spec, values):
    """The checked architecture options of ``spec`` from ``values`` ({name: value or None} of every option
    flag the command line has). An option of another backbone is refused, not ignored (it would change
    nothing while the user believes it did)."""
    mine = {p.name for p in spec.options}
    for name, value in values.items():
        if value is not None and name not in mine:
            flag = next(p.flag() for s in registered() for p in s.options if p.name == name)
            takes = ", ".join(p.flag() for p in spec.options) or "none"
            raise UserError(f"{flag} is an option of {', '.join(option_owners(name))}, not of {spec.name} "
                            f"(its options: {takes}); leave it out.")
    return {p.name: p.resolve(values.get(p.name), flag=p.flag()) for p in spec.options}


def build_model(name, num_classes, in_channels=3, pretrained=False, **options):
    """Build backbone ``name``; ``options`` go to the builder (e.g. layers/widen_factor/droprate for wrn)."""
    spec = get_spec(name)
    if pretrained and not can_load_pretrained(spec):
        raise UserError(f"--pretrained: backbone {name!r} declares no pretrained weights (the backbones with "
                        f"some: {', '.join(s.name for s in registered() if s.pretrained)}, tv:<name>, timm:<name>).")
    return spec.builder(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **options)
