"""A sweep over the declared settings of the scores: the grid (``--grid`` tokens, declared grids resolved for
the run, its points), the choice of each score's setting on validation sets, and what a grid point costs
beside the backbone pass it stands for."""
import itertools

import numpy as np

import scores
from ood.errors import UserError
from ood.cache.features import TRAIN
from ood.io import load_torch
from ood.params import ParamError


DECLARED = "declared"  # a score named alone in --grid: its declared grid (its defaults when it has none)


def grid_token(t):
    """(score, setting, values) of SCORE:SETTING=V1,V2,...; SCORE may be a plug-in, package.module:Class,
    so the setting is what follows the last colon before '='."""
    head, sep, values = t.partition("=")
    name, colon, setting = head.rpartition(":")
    if not (sep and colon and name and setting and values):
        raise UserError(f"--grid {t!r}: write SCORE:SETTING=V1,V2,... (e.g. RecLag:hidden=5,10,20, or "
                        f"package.module:Class:setting=1,2 for a score of your own).")
    return name, setting, values


def grid_plugins(argv):
    """``--score`` arguments naming the plug-ins of --grid tokens in ``argv`` (see scores.load_plugins)."""
    out, taking = [], False
    for token in argv or ():
        if token.startswith("--"):
            taking = token == "--grid"
            continue
        if taking and "=" in token and ":" in token.partition("=")[0]:
            name = token.partition("=")[0].rpartition(":")[0]
            if scores.is_plugin_name(name):
                out += ["--score", name]
        elif taking and "=" not in token and scores.is_plugin_name(token):  # a plug-in's declared grid
            out += ["--score", token]
    return out


def parse_grid(tokens):
    """{score class: {setting: [values]}, or DECLARED} from the --grid tokens, checked: SCORE:SETTING=V1,V2,...
    (the values of a setting given in several tokens are all swept, in the order given); a score's name
    alone (or ``all``, the paper's six, or ``extended``, every registered score, as --score takes them):
    its declared grid (``Param.grid``; one point, its defaults, when it declares none, as OpenOOD v1.5 runs
    a method its configs give no sweep). A declared grid may depend on the run (ViM's D stays below the feature
    size): ``resolve_grid`` resolves it once the run is open."""
    grid = {}
    for t in tokens:
        if "=" not in t:
            for cls in scores.resolve_names([t]):
                if grid.get(cls) not in (None, DECLARED):
                    raise UserError(f"--grid {t}: {cls.name} is given both its declared grid and values of "
                                    f"its own; give one or the other.")
                grid[cls] = DECLARED
            continue
        name, setting, values = grid_token(t)
        cls = scores.resolve_names([name])[0]
        params = {p.name: p for p in cls.params}
        if setting not in params:
            raise UserError(f"--grid {t!r}: {cls.name} has no setting {setting!r}; it has "
                            f"{', '.join(params) or 'none'}.")
        try:
            converted = [params[setting].convert(v.strip(), f"--grid {name}:{setting}") for v in values.split(",")]
        except ParamError as e:
            raise UserError(str(e)) from None
        axes = grid.setdefault(cls, {})
        if axes == DECLARED:
            raise UserError(f"--grid {t}: {cls.name} is given both its declared grid and values of its own; "
                            f"give one or the other.")
        axes[setting] = list(dict.fromkeys(axes.get(setting, []) + converted))
    return grid


def resolve_grid(grid, ctx):
    """``grid`` with each declared grid replaced by its axes for the run ``ctx`` (a Context)."""
    return {cls: ({p.name: list(p.grid_for(ctx)) for p in cls.params if p.grid} if axes == DECLARED else axes)
            for cls, axes in grid.items()}


def grid_pairs(grid):
    """The (score class, settings) pairs of the grid points, score by score."""
    return [(cls, point) for cls, axes in grid.items() for point in grid_points(cls, axes)]


def grid_points(cls, axes):
    """The grid points of one score: the product of its non-seed axes; a seed axis stays a list."""
    plain = [(k, v) for k, v in axes.items() if not param_of(cls, k).replicate]
    seeds = {k: v for k, v in axes.items() if param_of(cls, k).replicate}
    for combo in itertools.product(*[v for _, v in plain]) if plain else [()]:
        yield {**dict(zip([k for k, _ in plain], combo)), **seeds}


def param_of(cls, name):
    return next(p for p in cls.params if p.name == name)


def cost_summary(cost, passes, store):
    """Seconds per grid point, per fit, and the backbone pass the cache stands for (from the seconds
    recorded when each image set was extracted; train included when it is cached)."""
    train = store.path(TRAIN)
    extraction = dict(passes)
    if train.exists():
        t = load_torch(train, mmap=True)
        if t is not None and "seconds" in t:
            extraction["train"] = float(t["seconds"])
    per_point = [x for v in cost["points"].values() for x in v]
    fits = {k: float(np.mean(v)) for k, v in cost["fits"].items()}
    total_pass = sum(extraction.values())
    return {"seconds_per_point": float(np.mean(per_point)) if per_point else 0.0,
            "seconds_per_point_by_score": {k: float(np.mean(v)) for k, v in cost["points"].items()},
            "seconds_per_fit": fits, "backbone_pass_seconds": extraction,
            "backbone_pass_total_seconds": total_pass,
            "point_vs_backbone_pass": (float(np.mean(per_point)) / total_pass) if total_pass else None}


def _average(rows, sets, metric):
    vals = [r[metric] for r in rows if r["ood_dataset"] in sets]
    return float(np.mean(vals)) if vals else float("nan")


def select(rows, grid, validation):
    """Per score, the grid point with the best mean AUROC on the validation sets (then the lower mean
    FPR95): only rows of validation sets are looked at."""
    chosen = {}
    for cls in grid:
        by_label = {}
        for r in rows:
            if r["score"] == cls.name and r["ood_dataset"] in validation:
                by_label.setdefault(r["label"], []).append(r)
        best = max(by_label, key=lambda lab: (_average(by_label[lab], validation, "auroc"),
                                              -_average(by_label[lab], validation, "fpr95")))
        first = by_label[best][0]
        chosen[cls.name] = {"label": best, "settings": first["settings"], "replicates": first.get("replicates"),
                            "validation_auroc": _average(by_label[best], validation, "auroc")}
    return chosen
