"""What a sweep writes: sweep.json and sweep.md (a table per score), its figures (a heat map or a line
plot per score), selected.md / selected.json for the settings chosen on validation sets, and RecLag's
operating point (accept rate against lambda)."""
import json
import math
from pathlib import Path

import numpy as np
import torch

import scores
from ood.evaluation.rows import setting
from ood.evaluation.sweep import param_of
from ood.io import write_text
from ood.reporting import reports
from ood.reporting.results import VARIANT_NOTES, fsood_note
from scores.reclag import RecLag
from scores.reclag_dynamics import log_mean_exp


def _plain_grid(grid):
    return {cls.name: axes for cls, axes in grid.items()}


def write(out, rows, grid, summary, selection, names, validation, val_rows=()):
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
    full = fsood_note([r for r in rows if r.get("fsood")]).lstrip(", ")
    fpr = "; ".join(f"FPR95 variant {v}{VARIANT_NOTES.get(v, '')}" for v in variants)
    return (f"{full}; " if full else "") + fpr + f"; {reports.units(reports.table_metrics(rows))}"


def _figure(cls, axes, rows, test_sets, path):
    """A heat map for two swept settings, a line plot (one line per OOD set) for one."""
    swept = [k for k, v in axes.items() if len(v) > 1 and not param_of(cls, k).replicate]
    if len(swept) not in (1, 2):
        return
    value = {}
    for r in rows:
        value.setdefault(tuple(setting(r, k) for k in swept), {})[r["ood_dataset"]] = r
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


def operating_point(out, store, sets, head, ctx, setup, selection, args):
    """Accept rate of the ID test set and of each OOD set against lambda for RecLag's decision."""
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
