"""Declared settings: one ``Param`` per hyper-parameter, written once beside the code that uses it.

A score (``scores/``) or a backbone (``models/``) lists its settings as ``Param`` objects. Everything
else is derived from that one declaration: the command-line flag and its help text, the range check,
the default (a constant, or a ``Rule`` that depends on the run: data set, backbone, feature size, seed),
the fingerprint of a fitted stored pattern (``fit=True`` settings), the settings recorded in every
results row, the aggregator's check that averaged runs agree, and the axes a sweep may vary.

What a score's or a backbone's author imports is ``__all__``: ``Param``, and for a default that depends on
the run ``Context`` a ``Rule`` (``per_dataset``, ``up_to`` make the common ones); ``ParamError`` is what a
bad value raises. The rest (``add_params``, ``argparse_type``, ``values_from_args``) is how the scripts
turn the declarations into flags (docs/extending.md).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ood.errors import UserError

__all__ = ["Param", "Context", "Rule", "per_dataset", "up_to", "ParamError"]


@dataclass(frozen=True)
class Context:
    """What a default may depend on. Fields a caller does not know stay at their empty value; every
    ``Rule`` has a fallback for them."""
    dataset: str = ""          # base ID data set: cifar10, cifar100, imagenet, fashionmnist
    model: Any = None          # models.ModelSpec of the backbone
    feature_dim: int = 0       # d of phi
    num_classes: int = 0
    seed: int = 1              # the run's --seed
    protocol: str = "full"     # evaluation protocol (ood/evaluation/protocols.py)
    benchmark: str = ""        # --benchmark when not the paper's ("openood"): its own defaults apply


@dataclass(frozen=True)
class Rule:
    """A default that depends on the run (``Context``); ``text`` is what ``--help`` shows."""
    fn: Callable[[Context], Any]
    text: str

    def __call__(self, ctx):
        return self.fn(ctx)

    def __str__(self):
        return self.text


def per_dataset(values, otherwise, text=None):
    """A ``Rule`` taking ``values[dataset]`` (keys: cifar10, cifar100, imagenet, ...), else ``otherwise``."""
    described = text or ", ".join(f"{v} on {k}" for k, v in values.items()) + f", {otherwise} otherwise"
    return Rule(lambda ctx: values.get(ctx.dataset, otherwise), described)


def up_to(values, limit, otherwise, text):
    """A grid ``Rule``: the ``values`` that the run's ``limit(ctx)`` allows (None: all of them), or
    ``(otherwise(ctx),)`` when none is (GEN's M above the class count, ViM's D at the feature size)."""
    def rule(ctx):
        most = limit(ctx)
        kept = tuple(v for v in values if most is None or v <= most)
        return kept or (otherwise(ctx),)
    return Rule(rule, text)


class ParamError(UserError):
    """A setting outside its declared range or choices."""


_BOUNDS = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")


def _parse_bounds(text):
    m = _BOUNDS.match(text)
    if not m:
        raise ValueError(f"bounds must look like '(0, inf)' or '[1, 100]', got {text!r}")
    lo_b, lo, hi, hi_b = m.groups()
    return float(lo), lo_b == "[", float(hi), hi_b == "]"


@dataclass(frozen=True)
class Param:
    """One setting of a score or a backbone.

    name      attribute and flag stem (the flag is ``--<prefix>_<name>`` in lower case, see ``flag``)
    type      int, float, str or bool
    default   a value, or a ``Rule`` (a default that depends on the data set, backbone, ...)
    help      what the setting does
    source    where the default comes from (a paper, a code base), shown in ``--help``
    choices   allowed values, if a closed set
    bounds    allowed interval as text, e.g. "(0, 100]" or "[1, inf)"
    fit       True if the setting changes what the score's ``fit`` produces: it keys the stored pattern
    replicate True for a seed: runs that differ only in it are replicates of one setting, and are
              averaged (mean ± std) rather than refused as mixed settings
    aliases   older flag names that still work; --help does not list them (one spelling per setting)
    retired   older flag names that no longer work, because they could mean another score's setting
              (``--beta``: RecLag's or HE's?): using one ends the run with one line naming the flags
              to use instead (see ``add_params``)
    check     an extra test: value -> error text, or None when the value is fine
    grid      the values a validation search sweeps (``sweep_scores.py --grid SCORE`` or ``declared``): a
              tuple, or a ``Rule`` giving one for the run (values a backbone cannot take left out);
              OpenOOD v1.5's ``postprocessor_sweep`` where it has one
    grid_source  where the grid comes from
    benchmarks   {benchmark name: default or Rule}: a benchmark's own default for the setting, which replaces
              ``default`` on its data sets (OpenOOD v1.5's configured ``postprocessor_args`` under
              ``--benchmark openood``), so that a row run without the flag is the benchmark's row
    benchmark_source  where those defaults come from
    implicit  values at which the setting does what the score did before the setting existed: such a value is
              left out of the stored pattern's key and of the result row's settings (``Score.fit_settings``,
              ``shared_settings``), so that patterns and rows from before it was added stay valid and
              comparable; any other value is named there
    """
    name: str
    type: type = float
    default: Any = None
    help: str = ""
    source: str = ""
    choices: tuple | None = None
    bounds: str | None = None
    fit: bool = False
    replicate: bool = False
    aliases: tuple = ()
    retired: tuple = ()
    check: Callable[[Any], str | None] | None = None
    grid: Any = ()
    grid_source: str = ""
    benchmarks: dict = field(default_factory=dict)
    benchmark_source: str = ""
    implicit: tuple = ()
    _interval: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.bounds is not None:
            object.__setattr__(self, "_interval", _parse_bounds(self.bounds))

    def flag(self, prefix=""):
        """The setting's flag: lower case with underscores, the one convention of the scripts' flags
        (docs/cli.md), whatever the case of ``name`` (Energy's ``T`` is ``--energy_t``)."""
        return self.cased_flag(prefix).lower()

    def cased_flag(self, prefix=""):
        """The flag as earlier versions spelled it, in the case of ``name`` (``--energy_T``)."""
        return f"--{prefix}_{self.name}" if prefix else f"--{self.name}"

    def hidden_flags(self, prefix=""):
        """The older spellings that still work without being listed: ``aliases`` and the flag in the
        case of ``name`` where that differs from ``flag``."""
        cased = self.cased_flag(prefix)
        return tuple(dict.fromkeys(a for a in (*self.aliases, cased) if a != self.flag(prefix)))

    def dest(self, prefix=""):
        return f"{prefix}_{self.name}" if prefix else self.name

    def grid_for(self, ctx=None):
        """The declared grid of this setting for the run ``ctx`` (a tuple; empty when none is declared)."""
        values = self.grid(ctx or Context()) if isinstance(self.grid, Rule) else self.grid
        return tuple(self.convert(v, f"the declared grid of {self.name}") for v in values)

    def default_for(self, ctx=None):
        ctx = ctx or Context()
        if ctx.benchmark in self.benchmarks:
            value = self.benchmarks[ctx.benchmark]
            return value(ctx) if isinstance(value, Rule) else value
        return self.default(ctx) if isinstance(self.default, Rule) else self.default

    def convert(self, value, flag=None):
        """``value`` (a string from the command line, or a python value) as a checked ``type``;
        raises ParamError naming ``flag`` and the allowed values."""
        where = flag or self.name
        if flag and self.name not in flag and self.name.lower() in flag:
            where = f"{flag} (setting {self.name})"  # a lower-case flag: Energy(T=...) from Python says T
        try:
            if self.type is bool and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                v = low in ("1", "true", "yes", "on")
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                v = self.type(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where} {value!r}: expected {self.type.__name__}") from None
        if self.type is float and not math.isfinite(v):
            raise ParamError(f"{where} {value}: expected a finite number")
        if self.choices is not None and v not in self.choices:
            raise ParamError(f"{where} {value!r}: choose one of {', '.join(map(str, self.choices))}")
        if self._interval is not None:
            lo, lo_in, hi, hi_in = self._interval
            if not ((v > lo or (lo_in and v == lo)) and (v < hi or (hi_in and v == hi))):
                raise ParamError(f"{where} {value}: must lie in {self.bounds}"
                                 + (f" ({self.help})" if self.help else ""))
        if self.check is not None:
            problem = self.check(v)
            if problem:
                raise ParamError(f"{where} {value}: {problem}")
        return v

    def resolve(self, value, ctx=None, flag=None):
        """The setting's value: ``value`` checked, or the default for ``ctx`` when ``value`` is None."""
        if value is None:
            value = self.default_for(ctx)
            if value is None:
                return None
        return self.convert(value, flag)

    def help_text(self):
        parts = [self.help] if self.help else []
        default = str(self.default) if isinstance(self.default, Rule) else repr(self.default)
        tail = f"default {default}" + (f", {self.source}" if self.source else "")
        for bench, value in self.benchmarks.items():
            shown = str(value) if isinstance(value, Rule) else repr(value)
            tail += f"; under --benchmark {bench}: {shown}" + (f", {self.benchmark_source}"
                                                                 if self.benchmark_source else "")
        if self.bounds:
            tail += f"; in {self.bounds}"
        if self.grid:
            grid = str(self.grid) if isinstance(self.grid, Rule) else ", ".join(map(str, self.grid))
            tail += f"; validation grid {grid}" + (f" ({self.grid_source})" if self.grid_source else "")
        return (" ".join(parts) + f" ({tail})").replace("%", "%%")


def add_params(group, params, prefix=""):
    """One argparse option per ``Param`` (absent from the namespace unless given: the declared default
    applies, and --help shows it once); replicate settings take one or more values. Older spellings
    (``Param.hidden_flags``) are a second option with the same destination that --help does not show,
    and each ``Param.retired`` flag an option that refuses itself (``_Retired``). The group's title,
    without " settings", names the setting's owner in those refusals ("RecLag settings": RecLag)."""
    import argparse
    owner = (getattr(group, "title", None) or prefix or "").removesuffix(" settings")
    taken = getattr(group, "_option_string_actions", {})
    for p in params:
        kwargs = {"dest": p.dest(prefix), "default": argparse.SUPPRESS, "help": p.help_text(),
                  "type": argparse_type(p, p.flag(prefix)), "metavar": p.name.upper()}
        if p.choices is not None:
            kwargs["metavar"] = "{" + ",".join(map(str, p.choices)) + "}"
        if p.replicate:
            kwargs["nargs"] = "+"
        action = group.add_argument(p.flag(prefix), **kwargs)
        action.param, action.owner = p, owner
        hidden = [a for a in p.hidden_flags(prefix) if a not in taken]
        if hidden:
            group.add_argument(*hidden, **{**kwargs, "type": argparse_type(p, hidden[0]), "help": argparse.SUPPRESS})
        for old in p.retired:
            retired = taken.get(old) or group.add_argument(old, action=_retired_action(), help=argparse.SUPPRESS)
            if hasattr(retired, "declared"):  # else the name is a live flag now, which wins
                retired.declared.append((p, action))


def _retired_action():
    """The argparse action class of a retired flag (argparse is imported on use only, as above)."""
    import argparse

    class _Retired(argparse.Action):
        """A flag that no longer works because it names a setting without its score: it takes the value
        it is given (so argparse does not stop at the value first) and ends the run with one line that
        names every flag of a setting by that name, each with its owner."""

        def __init__(self, option_strings, dest, help=None, **_):
            super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="?", default=argparse.SUPPRESS,
                             help=help)
            self.declared = []  # (Param, its action) of the settings that once answered to this flag

        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(retired_message(option_string or self.option_strings[0], self.declared, parser._actions))

    return _Retired


def retired_message(old, declared, actions):
    """What a retired flag ``old`` says: the flags to use now. ``declared``: (Param, action) of the
    settings it used to set; ``actions``: the parser's, where the other scores' settings of the same
    name are found (a score that also has a ``beta`` is why ``--beta`` is ambiguous)."""
    name = old.lstrip("-").lower()
    mine = [a for _, a in declared]
    others = [a for a in actions if getattr(a, "param", None) is not None and a not in mine
              and a.param.name.lower() == name]
    use = " or ".join(f"{a.option_strings[0]} ({a.owner})" for a in mine + others)
    if others:
        who = " and ".join(dict.fromkeys(a.owner for a in others))
        return f"{old} is ambiguous since {who} also {'have' if ' and ' in who else 'has'} a {name}: use {use}"
    return f"{old} was dropped (a setting's flag names its score): use {use}"


def argparse_type(param, flag=""):
    """An argparse ``type`` that converts and checks a value as ``param`` declares it."""
    import argparse

    def parse(text):
        try:
            return param.convert(text, flag)
        except ParamError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    parse.__name__ = param.type.__name__
    return parse


def values_from_args(args, params, prefix=""):
    """{name: value or None} of ``params`` in a parsed argparse namespace (None: not given)."""
    return {p.name: getattr(args, p.dest(prefix), None) for p in params}
