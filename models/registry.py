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

Constructor arguments that are not declared options (timm's ``drop_path_rate``, torchvision's
``image_size``) reach a library's backbone through ``--model_arg KEY=VALUE``: a backbone declares whose
constructor takes them (``ModelSpec.model_args``), and one that declares none refuses them. A backbone
built for one input size (a ViT: its position embeddings) declares how to build it at another
(``ModelSpec.sized``), so that ``--resize_val`` builds it at the size it is run at.

``__all__`` is what ``models`` re-exports: the registration, the lookups and ``build_model``.
"""
import ast
import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from ood.errors import UserError
from ood.plugins import debugging, is_plugin_name, load_object

__all__ = ["register_backbone", "register", "register_family", "ModelSpec", "Weights", "build_model", "get_spec",
           "registered", "model_names", "all_options", "resolve_options", "parse_model_arg", "can_load_pretrained",
           "pretrained_id", "check_runs"]


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
    model_args: str = ""              # whose constructor --model_arg KEY=VALUE reaches; "": it takes none
    sized: Callable | None = None     # size -> the builder's keywords that build it for that input size

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
                         tuple(getattr(builder, "options", ())), getattr(builder, "pretrained", None),
                         f"the builder {name}" if _keyword_names(builder) else "")
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


RUN_ARGS = ("num_classes", "in_channels", "pretrained")  # what the run gives every builder itself


def _keyword_names(builder):
    """The keywords a builder of one's own names in its signature, beyond those the run passes: what its
    ``--model_arg`` may set (a ``**kwargs`` catch-all accepts anything and so declares nothing)."""
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name not in RUN_ARGS)


def parse_model_arg(text):
    """``KEY=VALUE`` of ``--model_arg`` as (key, value): the value a Python literal (``32``, ``0.1``,
    ``True``, ``(7, 7)``, ``None``) or else the text itself (``global_pool=avg``). Raises ValueError."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier():
        raise ValueError(f"{text!r}: expected KEY=VALUE, KEY a Python name (e.g. drop_path_rate=0.1)")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return key, value.strip()
    if isinstance(parsed, list):
        parsed = tuple(parsed)
    if not isinstance(parsed, (int, float, str, tuple, type(None))):
        raise ValueError(f"{text!r}: the value must be a number, True/False, None, a text or a tuple")
    return key, parsed


def option_owners(name):
    """The registered backbones that declare option ``name``."""
    return [s.name for s in registered() if any(p.name == name for p in s.options)]


def resolve_options(spec, values, model_args=()):
    """The checked architecture options of ``spec`` from ``values`` ({name: value or None} of every option
    flag the command line has) and its ``model_args`` ((key, value), ... of --model_arg), as one dict
    for the builder. An option of another backbone is refused, not ignored (it would change nothing
    while the user believes it did), and so is a --model_arg for a backbone that declares no constructor
    to take it, or one that repeats a key, an option or what the run sets itself."""
    mine = {p.name for p in spec.options}
    for name, value in values.items():
        if value is not None and name not in mine:
            flag = next(p.flag() for s in registered() for p in s.options if p.name == name)
            takes = ", ".join(p.flag() for p in spec.options) or "none"
            raise UserError(f"{flag} is an option of {', '.join(option_owners(name))}, not of {spec.name} "
                            f"(its options: {takes}); leave it out.")
    options = {p.name: p.resolve(values.get(p.name), flag=p.flag()) for p in spec.options}
    for key, value in model_args:
        said = f"--model_arg {key}={value!r}"
        if key in mine:
            raise UserError(f"{said}: {key} is an option of {spec.name}: use "
                            f"{next(p.flag() for p in spec.options if p.name == key)}.")
        if not spec.model_args:  # a registered backbone: its options are declared Params
            raise UserError(f"{said}: {spec.name} takes no constructor arguments (its options are flags: "
                            f"{', '.join(p.flag() for p in spec.options) or 'none'}); --model_arg is for "
                            f"tv:<name>, timm:<name> and builders of one's own that name the keyword.")
        if key in options:
            raise UserError(f"{said}: {key} is given twice.")
        if key in RUN_ARGS:
            raise UserError(f"{said}: the run sets {key} itself (from the data set and --pretrained).")
        if spec.name.partition(":")[0] not in _FAMILIES and key not in _keyword_names(spec.builder):
            raise UserError(f"{said}: {spec.model_args} has no keyword {key} (it names: "
                            f"{', '.join(_keyword_names(spec.builder))}).")
        options[key] = value
    return options


def build_model(name, num_classes, in_channels=3, pretrained=False, input_size=None, **options):
    """Build backbone ``name``; ``options`` go to the builder (e.g. layers/widen_factor/droprate for wrn, a
    library's constructor arguments). A backbone built for one input size (``ModelSpec.sized``) is built
    for ``input_size`` where that differs from its default (an explicit --model_arg of the same keyword
    wins, and ``check_runs`` then says that the two disagree)."""
    spec = get_spec(name)
    if pretrained and not can_load_pretrained(spec):
        raise UserError(f"--pretrained: backbone {name!r} declares no pretrained weights (the backbones with "
                        f"some: {', '.join(s.name for s in registered() if s.pretrained)}, tv:<name>, timm:<name>).")
    if spec.sized is not None and input_size and input_size != spec.input_size:
        options = {**spec.sized(input_size), **options}
    return spec.builder(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **options)


def check_runs(model, spec, in_channels, size):
    """Run ``model`` once on a blank ``size`` x ``size`` image, so that a backbone that cannot take that
    size (built for one size that its library cannot change, or too small an input for its strides and
    kernels) is refused with one line before any training or extraction, not by a traceback mid-epoch."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size))
    except Exception as e:  # the library's assertion or shape error, whatever its type
        if debugging():
            raise
        raise UserError(f"--model {spec.name} does not run on {size}x{size} inputs ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}); choose another --resize_val, --model_arg or "
                        f"--model.") from None
    finally:
        model.train(was_training)
