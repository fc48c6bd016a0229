"""Tables in the paper's layout (rows: scores; columns: FPR95 (lower is better) and AUROC (higher is
better) per OOD set and their average, in percent; the best value of each column in bold) as Markdown,
LaTeX and CSV, and the per-score plots. A benchmark's rows (OpenOOD v1.5) are laid out as OpenOOD's
tables are: each near set, the near average, each far set, the far average, and the ID accuracy.
ood/results.py decides what goes into a results folder."""
import csv
import io
from pathlib import Path

import numpy as np

from .io import atomic_path, safe_name


GROUPS = (("near", "Near-OOD"), ("far", "Far-OOD"))  # a benchmark's OOD groups and their average columns


def columns(rows):
    """(columns, averages): the OOD sets in first-seen order, then "Average" over them; for a benchmark's
    rows (``ood_group`` near / far, OpenOOD v1.5) its layout instead: the near sets, their average
    "Near-OOD", the far sets, "Far-OOD", then any set of the user's own. ``averages`` maps each average
    column to the sets it averages."""
    oods = list(dict.fromkeys(r["ood_dataset"] for r in rows))
    group = {r["ood_dataset"]: r.get("ood_group") or "" for r in rows}
    if not any(group[o] in dict(GROUPS) for o in oods):
        return oods + (["Average"] if len(oods) > 1 else []), {"Average": oods}
    cols, averages = [], {}
    for g, title in GROUPS:
        members = [o for o in oods if group[o] == g]
        if members:
            cols += members + [title]
            averages[title] = members
    return cols + [o for o in oods if group[o] not in dict(GROUPS)], averages


def _table(rows):
    """(scores, columns, cell, accuracy) where cell(score, column) -> (fpr, fpr_std, auroc, auroc_std) in
    percent and accuracy(score) -> the ID accuracy in percent, or None when the rows hold none (only a
    benchmark's rows do). A row's table label (ood.results.assign_labels) names it when present, else its
    score."""
    label = lambda r: r.get("label") or r["score"]  # noqa: E731
    scores = list(dict.fromkeys(label(r) for r in rows))
    cols, averages = columns(rows)
    by = {(label(r), r["ood_dataset"]): r for r in rows}

    def cell(s, o):
        if o in averages:
            rs = [by[(s, x)] for x in averages[o] if (s, x) in by]
            if not rs:
                return None
            return (100 * np.mean([r["fpr95"] for r in rs]), 0.0, 100 * np.mean([r["auroc"] for r in rs]), 0.0)
        r = by.get((s, o))
        if r is None:
            return None
        return 100 * r["fpr95"], 100 * r["fpr95_std"], 100 * r["auroc"], 100 * r["auroc_std"]

    acc = {label(r): 100 * r["id_accuracy"] for r in rows if r.get("id_accuracy") is not None}
    return scores, cols, cell, (acc.get if acc else None)


def _parts(table):
    """(scores, columns, cell, accuracy) of a table with or without its accuracy column."""
    scores, cols, cell, *rest = table
    return scores, cols, cell, (rest[0] if rest else None)


def _best(scores, cols, cell):
    best = {}
    for o in cols:
        vals = [cell(s, o) for s in scores]
        vals = [v for v in vals if v is not None]
        if vals:
            best[o] = (round(min(v[0] for v in vals), 2), round(max(v[2] for v in vals), 2))
    return best


def _fmt(mean, std, bold, latex=False):
    text = f"{mean:.2f}" + ((r"$\pm$" if latex else "±") + f"{std:.2f}" if std > 0 else "")
    if not bold:
        return text
    return rf"\textbf{{{text}}}" if latex else f"**{text}**"


def _cells(score, cols, cell, best, latex=False):
    """The FPR95 and AUROC cells of one table row, best values in bold."""
    out = []
    for o in cols:
        v = cell(score, o)
        if v is None:
            out += ["--", "--"] if latex else ["–", "–"]
            continue
        out += [_fmt(v[0], v[1], round(v[0], 2) == best[o][0], latex),
                _fmt(v[2], v[3], round(v[2], 2) == best[o][1], latex)]
    return out


def markdown(rows):
    return render_markdown(_table(rows))


def latex(rows, caption=""):
    return render_latex(_table(rows), caption)


def csv_table(rows):
    return render_csv(_table(rows))


def _accuracy(score, acc, latex=False):
    """The ID accuracy cell: a percentage, or (mean, std) over runs (ood.aggregate)."""
    v = acc(score)
    if v is None:
        return "--" if latex else "–"
    return _fmt(*v, False, latex) if isinstance(v, tuple) else f"{v:.2f}"


def render_markdown(table):
    """A table (scores, columns, cell function[, accuracy function]) as Markdown; best values in bold."""
    scores, cols, cell, acc = _parts(table)
    best = _best(scores, cols, cell)
    head = "| Score | " + " | ".join(f"{o} FPR95↓ | {o} AUROC↑" for o in cols) + (" | ID Acc. |" if acc else " |")
    lines = [head, "|" + "---|" * (1 + 2 * len(cols) + bool(acc))]
    for s in scores:
        lines.append(f"| {s} | " + " | ".join(_cells(s, cols, cell, best) + ([_accuracy(s, acc)] if acc else []))
                     + " |")
    return "\n".join(lines) + "\n"


def render_latex(table, caption=""):
    scores, cols, cell, acc = _parts(table)
    best = _best(scores, cols, cell)
    esc = lambda t: t.replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$")
    extra = (" & ID Acc.", " & ") if acc else ("", "")
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{l" + "cc" * len(cols) + ("c" if acc else "") + "}", r"\toprule",
           "Score & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{esc(o)}}}" for o in cols) + extra[0] + r" \\",
           " & " + " & ".join(r"FPR95$\downarrow$ & AUROC$\uparrow$" for _ in cols) + extra[1] + r" \\",
           r"\midrule"]
    for s in scores:
        cells = _cells(s, cols, cell, best, True) + ([_accuracy(s, acc, True)] if acc else [])
        out.append(f"{esc(s)} & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{esc(caption)}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def render_csv(table):
    scores, cols, cell, acc = _parts(table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["score"] + [f"{o} {m}" for o in cols for m in ("FPR95", "FPR95_std", "AUROC", "AUROC_std")]
               + (["ID_accuracy"] if acc else []))
    for s in scores:
        vals = []
        for o in cols:
            v = cell(s, o)
            vals += ["" if v is None else f"{x:.4f}" for x in (v or (None,) * 4)]
        if acc:
            v = acc(s)
            vals.append("" if v is None else f"{(v[0] if isinstance(v, tuple) else v):.4f}")
        w.writerow([s] + vals)
    return buf.getvalue()


def plot(per_score, out_dir):
    """Per score: histograms of the ID scores against each OOD set, and ROC curves (ID positive)."""
    from sklearn.metrics import roc_curve

    out = Path(out_dir) / "plots"
    written = []
    for s, d in per_score.items():
        oods = [k for k in d if k != "id"]
        n = len(oods)
        cols = min(3, n)
        rows_ = (n + cols - 1) // cols
        fig = figure(figsize=(4 * cols, 3 * rows_))
        axes = fig.subplots(rows_, cols, squeeze=False)
        for ax, o in zip(axes.flat, oods):
            lo = min(d["id"].min(), d[o].min())
            hi = max(d["id"].max(), d[o].max())
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
            ax.hist(d["id"], bins, alpha=0.6, density=True, label="ID test")
            ax.hist(d[o], bins, alpha=0.6, density=True, label=o)
            ax.set_title(f"{s}: ID vs {o}", fontsize=9)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.supxlabel(f"{s} score (higher = more in-distribution)")
        fig.tight_layout()
        written.append(save_figure(fig, out / f"hist_{safe_name(s)}.png"))

        fig = figure(figsize=(4.5, 4.5))
        ax = fig.subplots()
        for o in oods:
            y = np.r_[np.ones(len(d["id"])), np.zeros(len(d[o]))]
            fpr, tpr, _ = roc_curve(y, np.r_[d["id"], d[o]])
            ax.plot(fpr, tpr, label=o, lw=1.2)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.axhline(0.95, color="gray", lw=0.6, ls="--")
        ax.set(xlabel="false positive rate (OOD accepted)", ylabel="true positive rate (ID accepted)",
               title=f"ROC, {s}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(save_figure(fig, out / f"roc_{safe_name(s)}.png"))
    return written


def figure(**kwargs):
    """A new matplotlib Figure (``kwargs``: figsize, constrained_layout, ...) drawn by the Agg canvas,
    outside pyplot. pyplot would keep every figure in its global registry until closed and needs a
    backend chosen for the whole process (``matplotlib.use``); a library function that only writes a
    PNG should do neither, so that a notebook or a GUI that imports it keeps its own backend. A figure
    made here is freed as soon as the caller drops it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
