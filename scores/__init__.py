"""The score registry: one line per score.

Each line names a ``Score`` subclass as ``"package.module:Class"``; the class declares its name, its
place in the tables (``order``), whether it is one of the paper's six (``paper``) and its settings
(``params``). Flags, ``--help``, ``--score all`` / ``extended``, stored-pattern fingerprints, result rows,
the aggregator's settings check, sweeps and the tests all derive from those declarations.

A user's own score takes part the same way without editing this file: ``--score package.module:Class``.

``__all__``: the registry's functions (``register``, ``get``, ``names``, ``resolve_names``, ``instances``,
...) and, for convenience, ``Score`` and ``score_key`` of scores.base.
"""
import difflib
import inspect

from ood.errors import UserError
from ood.params import add_params, values_from_args
from ood.plugins import add_score_plugin, is_plugin_name, load_object, plugin_origin, running

from .base import Score, score_key

__all__ = ["Score", "score_key", "register", "registered", "paper_scores", "names", "get", "resolve_names",
           "instances", "given_settings", "load_plugins", "add_score_args", "REGISTERED", "GROUPS"]

REGISTERED = (
    "scores.logits:MSP",
    "scores.logits:Energy",
    "scores.react:ReAct",
    "scores.hopfield:HE",
    "scores.hopfield:SHE",
    "scores.reclag:RecLag",
    "scores.knn:KNN",
    "scores.maxlogit:MaxLogit",
    "scores.gen:GEN",
    "scores.ash:ASHP",
    "scores.ash:ASHB",
    "scores.ash:ASHS",
    "scores.ash:SCALE",
    "scores.dice:DICE",
    "scores.mahalanobis:Mahalanobis",
    "scores.mahalanobis:RMD",
    "scores.vim:ViM",
    "scores.nnguide:NNGuide",
    "scores.fdbd:fDBD",
)

GROUPS = {"all": "the paper's six scores", "extended": "every registered score"}
_BY_KEY = {}


def register(cls, origin=""):
    """Add a Score subclass to the registry (the built-in lines above, or a user's plug-in)."""
    if not (inspect.isclass(cls) and issubclass(cls, Score)) or not cls.name:
        raise UserError(f"{origin or cls!r} is not a score: a score is a subclass of scores.base.Score with a "
                        f"name (see docs/method.md, 'Adding a score').")
    key = cls.key()
    if key in GROUPS:
        raise UserError(f"score {origin or cls.name}: the name {cls.name!r} is reserved (--score {key}).")
    if key in _BY_KEY and _BY_KEY[key] is not cls:
        raise UserError(f"score {origin or cls.name}: the name {cls.name!r} is taken by "
                        f"{_BY_KEY[key].__module__}.{_BY_KEY[key].__qualname__}.")
    names = [p.name for p in cls.params]
    if len(set(names)) != len(names):
        raise UserError(f"score {cls.name}: its params repeat a name ({names}).")
    _BY_KEY[key] = cls
    if origin not in REGISTERED and cls not in _BUILTIN:
        add_score_plugin(cls, origin or f"{cls.__module__}:{cls.__qualname__}")
    return cls


_BUILTIN = set()
for _line in REGISTERED:
    _BUILTIN.add(register(load_object(_line, "score class"), _line))


def registered():
    """Every registered score class, in table order."""
    return sorted(_BY_KEY.values(), key=lambda c: (c.order, c.name))


def paper_scores():
    return [c for c in registered() if c.paper]


def names():
    return [c.name for c in registered()]


def get(name):
    """The score class called ``name`` (case-insensitive; ASH-S and ash_s are the same)."""
    key = score_key(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
    hint = f" Did you mean {_BY_KEY[close[0]].name}?" if close else ""
    raise UserError(f"unknown score {name!r}.{hint} Choose from {', '.join(names())}, or "
                    f"{' / '.join(GROUPS)} ({'; '.join(f'{k}: {v}' for k, v in GROUPS.items())}), or a "
                    f"score of your own as package.module:Class.")


def load_plugins(argv):
    """Register the ``--score package.module:Class`` plug-ins named in ``argv`` (before the parser is
    built, so that their settings get flags)."""
    taking = False
    for token in argv or ():
        if token.startswith("--"):
            taking = token == "--score" or token.startswith("--score=")
            if token.startswith("--score="):
                token = token.split("=", 1)[1]
            else:
                continue
        if taking and is_plugin_name(token):
            register(load_object(token, "score class"), token)


def resolve_names(requested):
    """Score classes for user-given names (``all``, ``extended``, names, plug-ins), in table order, each
    once. Unknown names are an error: no score is ever dropped silently."""
    wanted = []
    for n in requested:
        if n.lower() == "all":
            wanted += paper_scores()
        elif n.lower() == "extended":
            wanted += registered()
        elif is_plugin_name(n):
            wanted.append(register(load_object(n, "score class"), n))
        else:
            wanted.append(get(n))
    return sorted(set(wanted), key=lambda c: (c.order, c.name))


def summary(doc):
    """The first paragraph of a score's docstring, as one line without reST markup: the description of its
    group of flags in --help (the first line alone would stop mid-sentence where the sentence wraps)."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.replace("``", "").split())


def add_score_args(parser):
    """One group of flags per registered score (``--<score>_<setting>``), from its ``params``. A plug-in
    whose setting would make a flag the script already has (a score "batch" with a setting "size" makes
    ``--batch_size``) is refused by name: argparse would stop with a traceback, or, where only the
    destination matched, one option would silently set the other's value."""
    for cls in registered():
        if cls.params:
            if plugin_origin(cls):
                _check_flags(parser, cls)
            doc = summary(cls.__doc__)
            add_params(parser.add_argument_group(f"{cls.name} settings", doc), cls.params, cls.key())


def _check_flags(parser, cls):
    options = parser._option_string_actions
    dests = {a.dest: a for a in parser._actions}
    for p in cls.params:
        for flag in (p.flag(cls.key()), *p.aliases):
            other = options.get(flag) or (dests.get(p.dest(cls.key())) if flag == p.flag(cls.key()) else None)
            if other is not None:
                owner = next((f"score {c.name}'s setting {q.name!r}" for c in registered() if c is not cls
                              for q in c.params if q.dest(c.key()) == other.dest), None)
                raise UserError(f"--score {plugin_origin(cls)}: its setting {p.name!r} makes the option {flag}, "
                                f"which is already {owner or 'an option of this script'} "
                                f"({'/'.join(other.option_strings)}); rename the setting or the score.")


def given_settings(cls, args):
    """{setting: value or None} of score ``cls`` in parsed arguments (None: use the default)."""
    return values_from_args(args, cls.params, cls.key())


def instances(cls, given, ctx, device=None):
    """The score objects of one table row: one, or one per value of a replicate setting (a seed given
    several values), each with every setting resolved for ``ctx``."""
    replicate = [p for p in cls.params if p.replicate]
    combos = [dict(given)]
    for p in replicate:
        values = given.get(p.name)
        values = values if isinstance(values, (list, tuple)) else [values]
        combos = [{**c, p.name: v} for c in combos for v in dict.fromkeys(values)]
    with running(cls, "constructor"):
        return [cls(ctx=ctx, device=device, **c) for c in combos]
