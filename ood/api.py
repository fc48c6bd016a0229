"""The scripts as Python calls, and the scores on features a user brings.

Each script is a call here, with keyword arguments named as its flags (``dataset="cifar10"``,
``score=["MSP", "RecLag"]``, ``reclag_hidden=5``, ``plot=True``), checked as the command line checks
them (a bad value raises ``ood.errors.UserError`` with the script's one-line message); the scripts at
the repository's root parse their command line with ``parse`` and call the same functions:

==============================  =====================  ==============================================
script                          call                   returns
==============================  =====================  ==============================================
train_model.py                  ``train(...)``         the last epoch's log
generate_stored_pattern.py      ``extract(...)``       ``Extracted`` (store folder, patterns fitted)
test_score_ood_detection.py     ``evaluate(...)``      the rows of results.json (``.table``, ``.folder``)
sweep_scores.py                 ``sweep(...)``         ``Swept`` (rows, table, selection's folder)
aggregate_results.py            ``aggregate(...)``     ``Aggregated`` (the aggregate, its table)
verify_data.py                  ``verify(...)``        ``Verified`` (the report: ``.report.ok``)
==============================  =====================  ==============================================

``score_features`` needs no files, data sets or backbone: features of any network (numpy arrays or
tensors) in, the rows of results.json out (metrics, intervals with ``bootstrap`` > 0, settings), as
OpenOOD's ``Evaluator`` and pytorch-ood's detectors serve a notebook. Nothing is written.
"""
import argparse
import contextlib
import io
import warnings

import numpy as np
import torch

import scores as registry  # "scores" is score_features' argument
from ood.cache.fingerprint import tensor_digest
from ood.commands import aggregate as _aggregate
from ood.commands import evaluate as _evaluate
from ood.commands import extract as _extract
from ood.commands import sweep as _sweep
from ood.commands import train as _train
from ood.commands import verify as _verify
from ood.data import get_benchmark
from ood.errors import UserError
from ood.evaluation.comparisons import against
from ood.evaluation.metrics import FPR_VARIANTS
from ood.evaluation.protocols import BOOTSTRAP_SEED, DEFAULT_LEVEL, PROTOCOLS, Evaluation
from ood.evaluation.scoring import RowSource, score_all
from ood.evaluation.uncertainty import Bootstrap, min_resamples
from ood.params import Context, ParamError
from ood.plugins import running

__all__ = ["score_features", "evaluate", "sweep", "extract", "train", "aggregate", "verify", "parse", "parser",
           "COMMANDS"]

COMMANDS = {"train": _train, "extract": _extract, "evaluate": _evaluate, "sweep": _sweep,
            "aggregate": _aggregate, "verify": _verify}
# flags whose values load plug-ins before the parser is built (their settings then get flags)
_LOADING = ("score", "grid", "data_plugin")


def parser(command, argv=None, doc=None):
    """The argparse parser of ``command`` (a key of COMMANDS) for ``argv`` (plug-ins named there are
    loaded first); ``doc``: the description --help shows (the script's docstring)."""
    module = _command(command)
    return module.build_parser(argv, doc or module.__doc__)


def parse(command, argv, doc=None):
    """``argv`` parsed as the script of ``command`` parses it (a bad value exits with status 2)."""
    return parser(command, argv, doc).parse_args(argv)


def train(args=None, /, **flags):
    """train_model.py: keyword arguments named as its flags, or arguments ``parse`` returned."""
    return _train.run(_arguments("train", args, flags))


def extract(args=None, /, **flags):
    """generate_stored_pattern.py: the backbone's pass over every image set, and the stored patterns."""
    return _extract.run(_arguments("extract", args, flags))


def evaluate(args=None, /, **flags):
    """test_score_ood_detection.py: its rows (a list, as results.json holds them, with ``.table``,
    ``.folder`` and ``.seconds``), e.g. ``evaluate(dataset="fashionmnist", model="cnn", score="all")``."""
    return _evaluate.run(_arguments("evaluate", args, flags))


def sweep(args=None, /, **flags):
    """sweep_scores.py, e.g. ``sweep(grid=["RecLag:hidden=5,10"], select_on=["GaussianNoise"])``."""
    return _sweep.run(_arguments("sweep", args, flags))


def aggregate(args=None, /, **flags):
    """aggregate_results.py, e.g. ``aggregate(results=["results/seed1", "results/seed2"], out="agg")``."""
    return _aggregate.run(_arguments("aggregate", args, flags))


def verify(args=None, /, **flags):
    """verify_data.py, e.g. ``verify(dataset_path="data", target="cifar10").report.ok``."""
    return _verify.run(_arguments("verify", args, flags))


def _command(command):
    if command not in COMMANDS:
        raise UserError(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}.")
    return COMMANDS[command]


def _arguments(command, args, flags):
    """Parsed arguments: ``args`` as given (a script's), or ``flags`` turned into the command line they
    name and parsed by the script's own parser, so that they are checked as the script checks them."""
    if args is not None:
        if flags:
            raise TypeError("give parsed arguments or keyword arguments, not both")
        return args
    loading = to_argv({k: v for k, v in flags.items() if k in _LOADING})
    return _parsed(parser(command, loading), to_argv(flags, parser(command, loading)))


def to_argv(flags, p=None):
    """The command line that keyword arguments name: ``name=value`` is ``--name value`` (a list: several
    values; True: the flag alone; False or None: left out), or the flag whose destination is ``name``
    when ``p`` (the parser) is given, positionals included (aggregate's ``results``)."""
    actions, switches = {}, {}
    for a in (p._actions if p is not None else ()):
        actions.setdefault(a.dest, a)  # its first spelling (--no_plot before the older --no-plot)
        if a.nargs == 0 and a.option_strings:  # store_true / store_false: the flag that sets each value
            switches.setdefault((a.dest, a.const), a.option_strings[0])
    argv, positional = [], []
    for name, value in flags.items():
        action = actions.get(name)
        if p is not None and action is None:
            known = sorted(d for d in actions if d != "help")
            raise UserError(f"unknown argument {name!r}; the arguments are {', '.join(known)}.")
        values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [value]
        if action is not None and not action.option_strings:
            positional += [str(v) for v in values]
            continue
        flag = action.option_strings[0] if action is not None else f"--{name}"
        if action is not None and action.nargs == 0:  # a switch: the flag that sets this value
            if value is None or value == action.default:
                continue
            if (name, bool(value)) not in switches:
                raise UserError(f"{name}={value!r}: no flag sets it to that; give True or leave it out.")
            argv.append(switches[(name, bool(value))])
            continue
        if value is None or value is False:
            continue
        if isinstance(action, argparse._AppendAction):  # --expect A=1 --expect B=2
            argv += [x for v in values for x in (flag, str(v))]
        else:
            argv += [flag, *(str(v) for v in values)]
    return positional + argv


def _parsed(p, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return p.parse_args(argv)
        except SystemExit:
            pass
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    raise UserError(lines[-1].split("error: ", 1)[-1] if lines else f"invalid arguments {argv}")


# ----------------------------------------------------------------------------------------------------
# Features a user brings
# ----------------------------------------------------------------------------------------------------
def score_features(train, test, ood, head, scores=("MSP", "Energy", "ReAct", "HE", "SHE", "RecLag"), *,
                   bootstrap=0, ci_level=DEFAULT_LEVEL, protocol="full", fpr_variant=None, repeats=10,
                   seed=1, compare_to=None, dataset="", model="", device="cpu", benchmark="", val=None,
                   **settings):
    """Score features a user brings and return the result rows, as results.json holds them.

    ``train`` and ``test``: dicts of ``features`` (N x d), optional ``logits`` (N x C; the head's output
    when absent) and ``labels`` (N; the training labels are what class-conditional scores fit on: without
    them, the head's predictions stand in, with a warning); numpy arrays or tensors. ``ood``: {set name:
    such a dict}. ``head``: the final linear layer, {"weight": C x d, "bias": C}. ``scores``: names of
    registered scores, ``all`` / ``extended``, or ``package.module:Class`` plug-ins. ``settings``: the
    scores' settings by their flag names, with the score's prefix (``reclag_hidden=5``) or without it
    where one score declares it (``hidden=5``). ``bootstrap``, ``ci_level``, ``protocol``,
    ``fpr_variant``, ``repeats``, ``seed`` and ``compare_to`` are the scoring script's options;
    ``dataset`` and ``model`` only name the rows (and feed the defaults that depend on them);
    ``benchmark="openood"`` takes OpenOOD v1.5's defaults, as ``--benchmark openood`` does: its score
    settings (ReAct then fits on ``val``, the ID validation split's features, a dict as ``train``) and its
    FPR95 convention unless ``fpr_variant`` says otherwise."""
    head = {"weight": _tensor(head, "weight", "head", torch.float32),
            "bias": _tensor(head, "bias", "head", torch.float32)}
    if head["weight"].ndim != 2 or head["bias"].shape != head["weight"].shape[:1]:
        raise UserError(f"head: weight must be C x d and bias C; got {tuple(head['weight'].shape)} and "
                        f"{tuple(head['bias'].shape)}.")
    num_classes, dim = head["weight"].shape
    if not isinstance(ood, dict) or not ood:
        raise UserError("ood: give a dict {set name: {'features': ...}} of at least one OOD set.")
    train = _features(train, "train", head, labels="predicted")
    sets = {"id": _features(test, "test", head), **{str(k): _features(v, f"ood[{k!r}]", head) for k, v in ood.items()}}
    bench = get_benchmark(benchmark) if benchmark else None  # its FPR95 convention by default, as --benchmark
    evaluation = _evaluation(protocol, fpr_variant or (bench.fpr_variant if bench else "standard"), bootstrap,
                             ci_level, repeats, seed)
    ctx = Context(dataset=dataset, feature_dim=int(dim), num_classes=int(num_classes), seed=seed, protocol=protocol,
                  benchmark=benchmark)
    splits = {"train": train, "val": None if val is None else _features(val, "val", head)}
    classes = registry.resolve_names([scores] if isinstance(scores, str) else list(scores))
    given = _settings(classes, settings)
    runs = [tuple(registry.instances(cls, given[cls], ctx, torch.device(device))) for cls in classes]
    source = RowSource(id_dataset=dataset or "features", model=model or "features", num_classes=int(num_classes),
                       feature_precision=str(sets["id"]["features"].dtype).replace("torch.", ""))
    sets["id"]["digest"] = tensor_digest({k: v for k, v in sets["id"].items() if k != "digest"})
    ood_names = [n for n in sets if n != "id"]
    rows, dists, kept = [], {}, {}
    reference = compare_to if compare_to is not None else ("RecLag" if any(c.name == "RecLag" for c in classes)
                                                           else None)

    def fit(score):
        data = splits.get(score.fit_split())
        if data is None:
            raise UserError(f"{score.name} fits on the ID {score.fit_split()} split: give val={{'features': ...}}, "
                            f"or --{score.key()}_fit_on train (fit_on='train').")
        with running(score, "fit"):
            return score.fit(data, head)
    for objs, values, new in score_all(runs, fit, sets, head, source, ood_names, evaluation, dists):
        rows += new
        kept.update({(objs[0].name, o): (values["id"], values[o]) for o in ood_names})
    if reference not in (None, "none") and evaluation.intervals:
        rows = against(rows, dists, reference, kept)
    return rows


def _tensor(d, key, what, dtype, required=True):
    value = d.get(key) if isinstance(d, dict) else None
    if value is None:
        if required:
            raise UserError(f"{what}: give a dict with {key!r} (a numpy array or tensor).")
        return None
    try:
        t = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
    except (TypeError, ValueError) as e:
        raise UserError(f"{what}[{key!r}]: not an array ({e}).") from None
    return t.to(dtype)


def _features(d, what, head, labels="none"):
    """{"features", "logits", "labels"} of one set as the cache holds them: float32 features and
    logits (the head's output when not given), int64 labels (-1 when unknown; for the training set the
    head's predictions, which a warning names)."""
    feats = _tensor(d, "features", what, torch.float32)
    if feats.ndim != 2 or feats.shape[1] != head["weight"].shape[1]:
        raise UserError(f"{what}: features must be N x {head['weight'].shape[1]} (the head's d); got "
                        f"{tuple(feats.shape)}.")
    logits = _tensor(d, "logits", what, torch.float32, required=False)
    if logits is None:
        logits = feats @ head["weight"].T + head["bias"]
    y = _tensor(d, "labels", what, torch.int64, required=False)
    if y is None and labels == "predicted":
        warnings.warn(f"{what} has no labels: the head's predictions stand in for them.")
        y = logits.argmax(1)
    elif y is None:
        y = torch.full((len(feats),), -1, dtype=torch.int64)
    if logits.shape != (len(feats), head["weight"].shape[0]) or y.shape != (len(feats),):
        raise UserError(f"{what}: logits must be N x C and labels N for the N = {len(feats)} features; got "
                        f"{tuple(logits.shape)} and {tuple(y.shape)}.")
    if not (torch.isfinite(feats).all() and torch.isfinite(logits).all()):
        raise UserError(f"{what}: the features or logits hold NaN or infinite values.")
    return {"features": feats, "logits": logits, "labels": y}


def _evaluation(protocol, fpr_variant, bootstrap, level, repeats, seed):
    if protocol not in PROTOCOLS or protocol == "paper":
        raise UserError(f"protocol {protocol!r}: choose full or sampled (the paper protocol needs the "
                        f"paper's sets).")
    if fpr_variant not in FPR_VARIANTS:
        raise UserError(f"fpr_variant {fpr_variant!r}: choose one of {', '.join(FPR_VARIANTS)}.")
    if not 0 < level < 1:
        raise UserError(f"ci_level {level}: give a level in (0, 1), e.g. 0.95.")
    if bootstrap and bootstrap < min_resamples(level):
        raise UserError(f"bootstrap {bootstrap}: at level {level} an interval needs at least "
                        f"{min_resamples(level)} resamples (or 0 for none).")
    intervals = Bootstrap(int(bootstrap), level, BOOTSTRAP_SEED) if bootstrap else None
    return Evaluation(protocol, int(repeats), int(seed), fpr_variant, intervals)


def _settings(classes, settings):
    """{score class: {setting: value}} from keyword arguments named as the flags, with or without the
    score's prefix; a name that no chosen score declares, or that two of them declare, is refused."""
    given = {cls: {} for cls in classes}
    for name, value in settings.items():
        low = name.lower()
        owners = [(cls, p) for cls in classes for p in cls.params
                  if low in (p.dest(cls.key()).lower(), p.name.lower())]
        prefixed = [(cls, p) for cls, p in owners if low == p.dest(cls.key()).lower()]
        owners = prefixed or owners
        if not owners:
            known = ", ".join(f"{p.dest(c.key())}" for c in classes for p in c.params) or "none"
            raise UserError(f"unknown setting {name!r} for {', '.join(c.name for c in classes)}; the settings are "
                            f"{known}.")
        if len(owners) > 1:
            raise UserError(f"setting {name!r} belongs to {' and '.join(c.name for c, _ in owners)}; write "
                            f"{' or '.join(p.dest(c.key()) for c, p in owners)}.")
        cls, p = owners[0]
        try:
            given[cls][p.name] = [p.convert(v, name) for v in value] if isinstance(value, (list, tuple)) \
                else p.convert(value, name)
        except ParamError as e:
            raise UserError(str(e)) from None
    return given
