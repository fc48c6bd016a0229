#!/usr/bin/env python3
"""Sweep the declared settings of any registered score from the cached features: the backbone never runs
again (an image set whose cache is missing or stale is extracted once, as in the scoring script).

A grid is given as SCORE:SETTING=v1,v2,... (settings of one score combine, different scores are swept
independently); every setting a score declares can be an axis, and a fit is reused by every grid point
whose fit settings are equal (stored patterns are keyed on them). A seed axis (RecLag's ``seed``) pools:
each grid point is fitted once per seed and reported as mean ± std with the seeds' own metrics, as
``test_score_ood_detection.py --reclag_seed 1 2 3`` does; its rows equal single runs of that script.

Writes into --results_dir (default results/<dataset>/<model>/sweep/): sweep.json (the rows, with the
results.json schema and each grid point's settings; the grid; the costs), sweep.md (a table per score),
and per score a heat map (two swept settings, mean AUROC over the test OOD sets) or a line plot (one
setting, one line per OOD set): sweep_<score>.png. At the end it prints its table: selected.md's with
--select_on (below), else sweep.md's.

--select_on NAME... picks each score's setting on those validation OOD sets only (best mean AUROC, then
lower mean FPR95) and writes the test table with the chosen settings over the other sets: selected.md
and selected.json (the validation sets are left out of the test average; the caption names the choice).
Under --benchmark openood, --select_on val is OpenOOD v1.5's automatic search: each setting is chosen on
the benchmark's validation pair (the ID val split against the validation OOD set, AUROC), and the table
reports the near and far OOD sets against the ID test split.
--operating_point draws RecLag's binary decision: the share of the ID test set and of each OOD set that
the rectified dynamics keep (not sent to the OOD attractor) against the inverse memory strength lambda,
with the lambda that keeps 95 % of ID inputs marked (reclag_operating_point.png and .csv).

A folder holds one sweep: the files an earlier sweep wrote there (ood.reporting.results.SWEEP_FILES) are moved to
previous/<time>/, the user's own files stay, and a sweep's files land as a unit (ood.reporting.commit): all of them
or, after a full disk, an error or a kill before the commit point, none.

Example:
  python sweep_scores.py --dataset fashionmnist --model cnn --ood Digits Photos Faces GaussianNoise UniformNoise \\
      --grid RecLag:hidden=1,2,5,10,20,50 RecLag:beta=0.5,1,2,5,10,20 HE:beta=0.001,0.01,0.1,1 \\
      --select_on GaussianNoise UniformNoise --operating_point
"""
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import scores
from ood.reporting import reports
from ood.reporting.commit import transaction
from ood.errors import UserError
from ood.runtime.entry import cli_main
from ood.cache.features import TRAIN
from ood.io import write_text
from ood.params import ParamError
from ood.system.progress import track
from ood.reporting.results import SWEEP_FILES, VARIANT_NOTES
from ood.evaluation.rows import assign_labels
from ood.runtime.run import open_run, script_parser
from ood.evaluation.scoring import compute, rows_for


def _own(g):
    g.add_argument("--grid", nargs="+", required=True, metavar="SCORE:SETTING=V1,V2,...",
                   help="the values of one declared setting of one score (several: their product per score); "
                        "SCORE alone (or all / extended, as --score takes them): the score's declared grid "
                        "(OpenOOD v1.5's sweep where it has one, see the settings' --help), or its defaults")
    g.add_argument("--select_on", nargs="+", default=None, metavar="OOD",
                   help="validation OOD sets: choose each score's setting on them alone and report the others; "
                        "val (--benchmark openood): on the benchmark's ID val split and validation OOD set "
                        "(OpenOOD's automatic search)")
    g.add_argument("--operating_point", action="store_true",
                   help="RecLag's accept rate against lambda (at its selected, or default, settings)")


def build_parser(argv=None):
    argv = [*(argv or ()), *grid_plugins(argv)]  # a plug-in swept by --grid gets its flags too
    p = script_parser(__doc__, argv, "sweep", results="results/<dataset>/<model>/sweep/", own=_own)
    # a sweep compares settings, each row once; its tables show no intervals, so none are computed unless asked
    p.set_defaults(bootstrap=0)
    return p


DECLARED = "declared"  # a score named alone in --grid: its declared grid (its defaults when it has none)


def _grid_token(t):
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
    its declared grid (``Param.grid``; one point, its defaults, when it declares none, as OpenOOD runs a
    method without a search). A declared grid may depend on the run (ViM's D stays below the feature
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
        name, setting, values = _grid_token(t)
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
    plain = [(k, v) for k, v in axes.items() if not _param(cls, k).replicate]
    seeds = {k: v for k, v in axes.items() if _param(cls, k).replicate}
    for combo in itertools.product(*[v for _, v in plain]) if plain else [()]:
        yield {**dict(zip([k for k, _ in plain], combo)), **seeds}


def _param(cls, name):
    return next(p for p in cls.params if p.name == name)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    asked = parse_grid(args.grid)
    with open_run(args, lambda ctx: grid_pairs(resolve_grid(asked, ctx)), results=("sweep", SWEEP_FILES),
                  validation=args.select_on) as run:
        grid = resolve_grid(asked, run.ctx)
        points = list(run.wanted)
        names, validation, out, store, head = run.ood_names, list(run.validation), run.results, run.store, run.head
        sets = run.feature_sets()
        pair = run.validation_sets() if run.val_oods else None  # --select_on val: the ID val split and val OOD
        rows, val_rows, states, cost = [], [], {}, {"points": {}, "fits": {}}
        for (cls, _), objs in track(list(zip(points, run.score_runs)), "sweep", len(points),
                                    run.setup.quiet or run.rank != 0, size=lambda _: 1, unit="grid points"):
            t0 = time.perf_counter()
            fitted = []
            for s in objs:
                key = (cls, json.dumps(s.fit_settings(), sort_keys=True))
                if key not in states:
                    t1 = time.perf_counter()
                    states[key] = store.pattern(s) if s.needs_fit() else {}
                    cost["fits"].setdefault(cls.name, []).append(time.perf_counter() - t1)
                fitted.append(states[key])
            values = compute(objs, fitted, sets, head)
            rows += rows_for(run.setup, objs, values, names, run.evaluation, sets["id"])
            if pair:
                values = compute(objs, fitted, pair, head)
                val_rows += rows_for(run.setup, objs, values, run.val_names, run.evaluation, pair["id"])
            cost["points"].setdefault(cls.name, []).append(time.perf_counter() - t0)
        labelled = assign_labels(rows + val_rows)  # one label per variant across both
        rows, val_rows = labelled[:len(rows)], labelled[len(rows):]
        passes = {k: float(v["seconds"]) for k, v in sets.items() if "seconds" in v}
        summary = _cost_summary(cost, passes, store)
        if pair:
            validation = run.val_names
        selection = _select(val_rows or rows, grid, validation) if validation else None
        with transaction(out, SWEEP_FILES) as t:  # a folder holds one sweep: an earlier one is kept aside
            moved = t.archive()
            table = _write(t.stage, rows, grid, summary, selection, names, validation, val_rows)
            if args.operating_point:
                _operating_point(t.stage, store, sets, head, run.ctx, run.setup, selection, args)
    print(table, end="")
    if moved:
        print(f"note: {out} held an earlier sweep; it was moved to {moved}/")
    print(f"{len(rows)} rows, {sum(len(v) for v in cost['points'].values())} grid points; "
          f"mean {summary['seconds_per_point']:.2f} s per point; results in {out}/")
    return rows


def _plain_grid(grid):
    return {cls.name: axes for cls, axes in grid.items()}


def _cost_summary(cost, passes, store):
    """Seconds per grid point, per fit, and the backbone pass the cache stands for (from the seconds
    recorded when each image set was extracted; train included when it is cached)."""
    train = store.path(TRAIN)
    extraction = dict(passes)
    if train.exists():
        from ood.io import load_torch
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


def _select(rows, grid, validation):
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


def _write(out, rows, grid, summary, selection, names, validation, val_rows=()):
    """sweep.json, sweep.md and the figures; with a selection, selected.md and selected.json. ``val_rows``:
    the rows of the benchmark's validation pair (--select_on val), which chose the settings. Returns the
    table the sweep prints when it ends: selected.md's (the settings chosen per score and their metrics),
    or without a selection sweep.md's (every grid point)."""
    out = Path(out)
    sweep = {"grid": _plain_grid(grid), "cost": summary, "selection": selection, "rows": rows}
    if val_rows:
        sweep["validation_rows"] = list(val_rows)
    write_text(json.dumps(sweep, indent=1) + "\n", out / "sweep.json")
    parts = []
    for cls, axes in grid.items():
        mine = [r for r in rows if r["score"] == cls.name]
        parts.append(f"### {cls.name}: " + ", ".join(f"{k} in {v}" for k, v in axes.items()) +
                     f" ({summary['seconds_per_point_by_score'][cls.name]:.2f} s per grid point)\n\n" +
                     reports.markdown(mine))
        _figure(cls, axes, mine, [n for n in names if n not in validation], out / f"sweep_{cls.key()}.png")
    table = f"{_convention(rows)}\n\n" + "\n".join(parts)
    write_text(table, out / "sweep.md")
    if selection:
        test_sets = [n for n in names if n not in validation]
        on = {"ood": list(validation), "id_split": "val" if val_rows else "test"}
        picked = [{**r, "selected_on": on} for r in rows if r["ood_dataset"] in test_sets and
                  r["label"] == selection[r["score"]]["label"]]
        where = (f"the ID validation split against {', '.join(validation)} (the benchmark's validation pair)"
                 if val_rows else ", ".join(validation))
        caption = (f"settings chosen on {where} only (best mean AUROC): " +
                   "; ".join(f"{k}: {v['label']}" for k, v in selection.items()) +
                   f". Test sets: {', '.join(test_sets)}; {_convention(picked)}")
        table = f"{caption}\n\n{reports.markdown(picked)}"
        write_text(table, out / "selected.md")
        write_text(json.dumps({"validation": validation, "validation_id_split": "val" if val_rows else "test",
                               "test": test_sets, "selection": selection, "rows": picked}, indent=1) + "\n",
                   out / "selected.json")
    return table


def _convention(rows):
    """What the tables' numbers are: the FPR95 variant (with what OpenOOD's means) and the units."""
    variants = sorted({r["fpr_variant"] for r in rows})
    return "; ".join(f"FPR95 variant {v}{VARIANT_NOTES.get(v, '')}" for v in variants) + \
        "; FPR95 and AUROC in %"


def _figure(cls, axes, rows, test_sets, path):
    """A heat map for two swept settings, a line plot (one line per OOD set) for one."""
    swept = [k for k, v in axes.items() if len(v) > 1 and not _param(cls, k).replicate]
    if len(swept) not in (1, 2):
        return
    value = {}
    for r in rows:
        value.setdefault(tuple(r["settings"][k] for k in swept), {})[r["ood_dataset"]] = r
    if len(swept) == 1:
        fig = reports.figure(figsize=(5, 3.4))
        ax = fig.subplots()
        xs = axes[swept[0]]
        for o in test_sets:
            ax.plot(range(len(xs)), [100 * value[(x,)][o]["auroc"] for x in xs], marker="o", label=o)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([str(x) for x in xs])
        ax.set(xlabel=f"{cls.name} {swept[0]}", ylabel="AUROC %", title=f"{cls.name}: AUROC per OOD set")
        ax.legend(fontsize=7)
    else:
        xs, ys = axes[swept[1]], axes[swept[0]]
        grid = np.array([[100 * np.mean([value[(y, x)][o]["auroc"] for o in test_sets]) for x in xs] for y in ys])
        fig = reports.figure(figsize=(max(4.8, 1.6 + 0.8 * len(xs)), max(3.2, 1.2 + 0.55 * len(ys))))
        ax = fig.subplots()
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        for i in range(len(ys)):
            for j in range(len(xs)):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < grid.mean() else "black")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([str(y) for y in ys])
        ax.set(xlabel=swept[1], ylabel=swept[0], title=f"{cls.name}: mean AUROC % over {len(test_sets)} OOD sets")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    reports.save_figure(fig, path)


def _operating_point(out, store, sets, head, ctx, setup, selection, args):
    """Accept rate of the ID test set and of each OOD set against lambda for RecLag's decision."""
    from scores.reclag import RecLag
    from scores.reclag_dynamics import log_mean_exp

    cls = scores.get("RecLag")
    given = scores.given_settings(cls, args)
    if selection and "RecLag" in selection:
        given = {**given, **selection["RecLag"]["settings"], **(selection["RecLag"]["replicates"] or {})}
    score = scores.instances(cls, given, ctx, setup.device)[0]  # the first learner seed
    xis = RecLag.memories(store.pattern(score))
    levels = {}
    for name, feats in sets.items():   # log mean_mu exp(beta xi_mu . phi) of the predicted class, float64
        pred = feats["logits"].argmax(1)
        lme = torch.empty(len(pred), dtype=torch.float64)
        for c in pred.unique().tolist():
            m = pred == c
            xi = xis[c] if xis[c] is not None else torch.cat([x for x in xis if x is not None])
            lme[m] = log_mean_exp(feats["features"][m].double() @ xi.double().T, score.beta)
        levels[name] = lme.numpy()
    lo = min(v.min() for v in levels.values()) - 1
    hi = max(v.max() for v in levels.values()) + 1
    log_lams = np.linspace(lo, hi, 400)
    rates = {k: [(v > ll).mean() for ll in log_lams] for k, v in levels.items()}
    lam95 = float(np.sort(levels["id"])[int(math.floor(0.05 * len(levels["id"])))]) - 1e-9
    out = Path(out)
    lines = ["log_lambda,lambda," + ",".join("ID test" if k == "id" else k for k in rates)]
    for i, ll in enumerate(log_lams):
        lines.append(f"{ll:.6g},{math.exp(ll) if ll < 700 else float('inf'):.6g}," +
                     ",".join(f"{rates[k][i]:.6f}" for k in rates))
    write_text("\n".join(lines) + "\n", out / "reclag_operating_point.csv")
    fig = reports.figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for k, r in rates.items():
        ax.plot(log_lams / math.log(10), r, lw=2.2 if k == "id" else 1.2, label="ID test" if k == "id" else k)
    ax.axvline(lam95 / math.log(10), color="k", ls="--", lw=0.8)
    ax.text(lam95 / math.log(10), 0.5, " λ keeping 95 % ID", fontsize=7)
    ax.set(xlabel="log10 λ (inverse memory strength)", ylabel="share kept (not sent to the OOD attractor)",
           title=f"RecLag's decision ({score.settings['hidden']} memories, β = {score.beta})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    reports.save_figure(fig, out / "reclag_operating_point.png")
    write_text(json.dumps({"log_lambda_95": lam95, "settings": score.settings,
                           "accept_at_lambda_95": {k: float((v > lam95).mean()) for k, v in levels.items()}},
                          indent=1) + "\n", out / "reclag_operating_point.json")


if __name__ == "__main__":
    main()
