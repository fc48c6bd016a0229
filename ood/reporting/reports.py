"""Tables in the paper's layout (rows: scores; columns: FPR95 (lower is better) and AUROC (higher is
better) per OOD set and their average, in percent; the best value of each column in bold) as Markdown,
LaTeX and CSV, and the per-score plots. A benchmark's rows (OpenOOD v1.5) are laid out as OpenOOD's
tables are: each near set, the near average, each far set, the far average, and the ID accuracy; each
column with FPR95, AUROC, AUPR-In and AUPR-Out, the four metrics of OpenOOD's evaluator (its DataFrame's
FPR@95, AUROC, AUPR_IN, AUPR_OUT), the near and far averages the mean of their sets' values as its
``nearood`` and ``farood`` rows are. ood/reporting/results.py decides what goes into a results folder."""
import csv
import io
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ood.evaluation.comparisons import AUROC, FPR, column_distribution, comparable, tied_with_best
from ood.evaluation.protocols import METRICS, counted_set
from ood.io import atomic_path, safe_name
from ood.evaluation.rows import dist_key, shown_accuracy
from ood.evaluation.uncertainty import auroc_interval, fpr95_interval, paired, percentile_interval


GROUPS = (("near", "Near-OOD"), ("far", "Far-OOD"))  # a benchmark's OOD groups and their average columns

# The metrics a table shows in each column, in OpenOOD's order (FPR@95, AUROC, AUPR_IN, AUPR_OUT): the
# paper's tables FPR95 and AUROC; a benchmark's (rows with ``benchmark``, OpenOOD v1.5) all four.
PAPER_METRICS = ("fpr95", "auroc")
BENCHMARK_METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")
HEADS = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out"}  # Markdown, LaTeX
CSV_NAMES = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR_In", "aupr_out": "AUPR_Out"}
LOWER_IS_BETTER = ("fpr95",)


def table_metrics(rows):
    """The metrics of a table of ``rows``: all four (BENCHMARK_METRICS) for a benchmark's rows that carry
    both AUPRs, else the paper's FPR95 and AUROC."""
    rows = list(rows)
    if rows and any(r.get("benchmark") for r in rows) and \
            all(r.get("aupr_in") is not None and r.get("aupr_out") is not None for r in rows):
        return BENCHMARK_METRICS
    return PAPER_METRICS


def units(metrics):
    """What a caption says of the metrics of a table (``table_metrics``) and their units."""
    if tuple(metrics) == BENCHMARK_METRICS:
        return ("FPR95, AUROC, AUPR-In (ID positive) and AUPR-Out (OOD positive) in %, Near-OOD and Far-OOD the "
                "mean of their sets' values (OpenOOD's nearood and farood)")
    return "FPR95 and AUROC in %"

# The look of the scores in a figure. Ten colours alone repeat after ten scores (of the 19 registered,
# MSP and ASH-S, RecLag and KNN were drawn alike), so each colour is paired with a mark: the k-th ten
# scores get the k-th marker, line style and bar hatch, which keeps 60 scores apart.
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
MARKS = (("o", "-", ""), ("s", "--", "//"), ("^", ":", ".."), ("D", "-.", "xx"),
         ("v", (0, (5, 1, 1, 1, 1, 1)), "\\\\"), ("P", (0, (1, 3)), "++"))  # (marker, line style, hatch)


class Style(NamedTuple):
    """How one score is drawn: its colour, and the marker (points), line style (lines) or hatch (bars)
    that tells it from the scores sharing the colour."""
    color: str
    marker: str
    linestyle: str | tuple
    hatch: str


def styles(labels):
    """{label: Style} for the scores (or table labels) of one figure, in their order, all distinct for up
    to len(COLOURS) * len(MARKS) labels; every figure that draws scores takes its styles from here."""
    out = {}
    for i, label in enumerate(dict.fromkeys(labels)):
        marker, linestyle, hatch = MARKS[i // len(COLOURS) % len(MARKS)]
        out[label] = Style(COLOURS[i % len(COLOURS)], marker, linestyle, hatch)
    return out


# The one rule of "near chance": an ID test accuracy below CHANCE_MARGIN times chance (1 / classes), e.g.
# 15 % for 10 classes. Such a backbone has not learned its classes (a one-epoch demo on few images), so
# its scores' OOD numbers, and which of them is in bold, say nothing about the scores.
CHANCE_MARGIN = 1.5


def chance_note(rows):
    """What a table's caption and the scoring script's warning say when the rows' ID test accuracy
    (``id_accuracy``, of ``num_classes`` classes) is near chance by the rule of CHANCE_MARGIN; "" when it
    is not, or the rows do not say (rows of an earlier version)."""
    near = sorted((r["id_accuracy"], r["num_classes"]) for r in rows
                  if r.get("id_accuracy") is not None and r.get("num_classes")
                  and r["id_accuracy"] < CHANCE_MARGIN / r["num_classes"])
    if not near:
        return ""
    acc, n = near[0]
    return (f"the backbone's ID test accuracy, {100 * acc:.2f} %, is near chance ({100 / n:.2f} % for {n} "
            f"classes; near: below {CHANCE_MARGIN:g} x chance): it has not learned its classes, so these OOD "
            f"numbers and the values in bold say nothing about the scores")


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


# The marks after a cell's value (explained in the caption, ood.reporting.results.caption): a set too small for an
# interval or a test (ood.evaluation.protocols.too_few_images), an approximate FPR95 interval (fpr95_note).
FEW_MARK, APPROX_MARK = "‡", "†"
LATEX_MARKS = {FEW_MARK: r"$^{\ddagger}$", APPROX_MARK: r"$^{\dagger}$"}


class Value(NamedTuple):
    """One metric of a cell in percent: its value, the spread printed after "±", the interval's ends when
    known, the std over draws, replicates or runs where the ± shows the interval, the mark after it."""
    mean: float
    pm: float
    ci: tuple | None = None
    std: float | None = None
    mark: str = ""


class Cell(NamedTuple):
    """One table cell in percent: FPR95 and AUROC with the spread a table prints after "±" (half the
    width of the row's confidence interval when it has one, else the spread over draws or runs) and,
    when known, the interval's ends; ``marks`` (FPR95's, AUROC's) follow the values. ``aupr`` holds the
    AUPR-In and AUPR-Out Values of a benchmark's table (empty in the paper's)."""
    fpr: float
    fpr_pm: float
    auroc: float
    auroc_pm: float
    fpr_ci: tuple | None = None
    auroc_ci: tuple | None = None
    std: tuple | None = None  # (FPR95, AUROC) std over draws or replicates, where the ± shows the interval
    marks: tuple = ("", "")
    aupr: tuple = ()

    def values(self):
        """[Value] of FPR95, AUROC and, when present, AUPR-In and AUPR-Out."""
        std = self.std or (None, None)
        return [Value(self.fpr, self.fpr_pm, self.fpr_ci, std[0], self.marks[0]),
                Value(self.auroc, self.auroc_pm, self.auroc_ci, std[1], self.marks[1]), *self.aupr]


def values_of(cell):
    """[Value] of a Cell, or of a plain (FPR95, ±, AUROC, ±) tuple."""
    return cell.values() if isinstance(cell, Cell) else [Value(cell[0], cell[1]), Value(cell[2], cell[3])]


def row_marks(rows):
    """(FPR95 mark, AUROC mark) of a cell made of ``rows`` (one, or the sets of an average): FEW_MARK when
    any has too few images for an interval, else APPROX_MARK on a metric whose interval is approximate in
    any of them."""
    if any(r.get("intervals_note") for r in rows):
        return FEW_MARK, FEW_MARK
    return tuple(APPROX_MARK if any(r.get(f"{m}_ci_note") for r in rows) else "" for m in ("fpr95", "auroc"))


def average_intervals(rows, d, level):
    """((FPR95 low, high), (AUROC low, high)) of the average over the sets of ``rows`` (one score's), from
    the average's bootstrap distribution ``d``: the rows' own intervals (ood.evaluation.protocols.interval_fields) at
    the average's variance; at a bound, those of the sets pooled (one ID set, the OOD sets together)."""
    n_id, n_ood, variant = rows[0]["n_id"], sum(r["n_ood"] for r in rows), rows[0]["fpr_variant"]
    counted = counted_set(n_id, n_ood, variant)[0]  # under "openood" the one ID set, shared by the sets
    var = np.var(d, axis=1, ddof=1) if d.shape[1] > 1 else np.zeros(d.shape[0])
    fpr, auroc = np.mean([r["fpr95"] for r in rows]), np.mean([r["auroc"] for r in rows])
    return (fpr95_interval(fpr, var[FPR], counted, level), auroc_interval(auroc, var[AUROC], n_id, n_ood, level))


class Table(NamedTuple):
    """What a rendered table needs: its row labels and columns, ``cell(label, column)`` -> Cell or
    None, ``accuracy(label)`` -> the ID accuracy (or None: no such column), and ``marked(label, column)``
    -> (FPR95 marked, AUROC marked[, AUPR-In marked, AUPR-Out marked]): the best value and the values tied
    with it, shown in bold; ``metrics``: those shown in each column (PAPER_METRICS or BENCHMARK_METRICS)."""
    scores: list
    cols: list
    cell: Callable
    accuracy: Callable | None = None
    marked: Callable | None = None
    dist: Callable | None = None
    metrics: tuple = PAPER_METRICS


def _interval_cell(fpr, auroc, ci, level, std=(0.0, 0.0), marks=("", "")):
    """A Cell of fractions: with intervals ``ci`` ((FPR95 low, high), (AUROC low, high)) the ± is half
    their width and ``std`` (the spread over draws) is kept beside them; without, the ± is ``std``."""
    if ci is None:
        return Cell(100 * fpr, 100 * std[0], 100 * auroc, 100 * std[1], marks=marks)
    f, a = ci
    return Cell(100 * fpr, 50 * (f[1] - f[0]), 100 * auroc, 50 * (a[1] - a[0]),
                tuple(100 * x for x in f), tuple(100 * x for x in a), (100 * std[0], 100 * std[1]), marks)


def _aupr_values(rows, d, level, average=False):
    """The AUPR-In and AUPR-Out Values of a cell made of ``rows``, as _interval_cell makes its FPR95 and
    AUROC: one row's with its percentile interval (``<metric>_ci``) and std; an ``average``'s, the mean over
    its sets, with the percentile interval of the average's bootstrap distribution ``d`` when there is one.
    The ± is half the interval's width, else the std (an average's 0, as its FPR95's and AUROC's)."""
    out = []
    for m in BENCHMARK_METRICS[2:]:
        mean = float(np.mean([r[m] for r in rows]))
        std = 0.0 if average else float(rows[0].get(f"{m}_std") or 0.0)
        if average:
            ci = None if d is None else percentile_interval(d[METRICS.index(m)], level)
        else:
            ci = rows[0].get(f"{m}_ci")
        mark = FEW_MARK if any(r.get("intervals_note") for r in rows) else ""
        if ci is None:
            out.append(Value(100 * mean, 100 * std, mark=mark))
        else:
            out.append(Value(100 * mean, 50 * (ci[1] - ci[0]), tuple(100 * x for x in ci), 100 * std, mark))
    return tuple(out)


def _table(rows, dists=None):
    """The Table of ``rows``; ``dists`` (row key -> bootstrap distribution) gives cells their intervals,
    averages theirs, and the ties with the best. A row's table label (ood.evaluation.rows.assign_labels) names
    it when present, else its score."""
    dists = dists or {}
    metrics = table_metrics(rows)
    label = lambda r: r.get("label") or r["score"]  # noqa: E731
    scores = list(dict.fromkeys(label(r) for r in rows))
    cols, averages = columns(rows)
    by = {(label(r), r["ood_dataset"]): r for r in rows}
    level = next((r["bootstrap"]["level"] for r in rows if r.get("bootstrap")), None)
    paired_rows = level is not None and rows[0]["protocol"] != "paper"  # the paper's rows differ in draws

    def dist(s, o):
        if o in averages:
            parts = [dist(s, x) for x in averages[o] if (s, x) in by]
            return column_distribution(parts) if parts and all(p is not None for p in parts) else None
        r = by.get((s, o))
        d = dists.get(dist_key(r)) if r is not None else None
        return None if d is None else np.asarray(d, np.float64)

    def cell(s, o):
        if o in averages:  # an average's interval from its distribution (the sets' averaged per resample)
            rs = [by[(s, x)] for x in averages[o] if (s, x) in by]
            if not rs:
                return None
            d = dist(s, o)
            ci = None if d is None else average_intervals(rs, d, level)
            c = _interval_cell(np.mean([r["fpr95"] for r in rs]), np.mean([r["auroc"] for r in rs]), ci, level,
                               marks=row_marks(rs))
            return c._replace(aupr=_aupr_values(rs, d, level, average=True)) if len(metrics) > 2 else c
        r = by.get((s, o))
        if r is None:
            return None
        ci = (r["fpr95_ci"], r["auroc_ci"]) if r.get("fpr95_ci") and r.get("auroc_ci") else None
        c = _interval_cell(r["fpr95"], r["auroc"], ci, level, (r["fpr95_std"], r["auroc_std"]), row_marks([r]))
        return c._replace(aupr=_aupr_values([r], None, level)) if len(metrics) > 2 else c

    marks = {}
    for o in cols:
        present = {s: c for s in scores for c in [cell(s, o)] if c is not None}
        ds = {s: (dist(s, o) if paired_rows else None) for s in present}
        marked = [tied_with_best({s: (c.values()[i].mean / 100, None if ds[s] is None else ds[s][METRICS.index(m)])
                                  for s, c in present.items()}, m in LOWER_IS_BETTER, level or 0.95)
                  for i, m in enumerate(metrics)]
        marks.update({(s, o): tuple(s in x for x in marked) for s in present})

    acc = {label(r): 100 * shown_accuracy(r) for r in rows if shown_accuracy(r) is not None}
    none = (False,) * len(metrics)
    return Table(scores, cols, cell, acc.get if acc else None, lambda s, o: marks.get((s, o), none), dist, metrics)


def _parts(table):
    """A Table from the (scores, columns, cell[, accuracy]) tuples of ood.reporting.aggregate."""
    if isinstance(table, Table):
        return table
    scores, cols, cell, *rest = table
    return Table(scores, cols, cell, rest[0] if rest else None)


def _marks(table):
    """marked(label, column) of a table; without one, the best values (to two decimals) in each column."""
    if table.marked is not None:
        return table.marked
    best = {}
    for o in table.cols:
        vals = [values_of(v) for v in (table.cell(s, o) for s in table.scores) if v is not None]
        if vals:
            best[o] = tuple(round((min if m in LOWER_IS_BETTER else max)(v[i].mean for v in vals), 2)
                            for i, m in enumerate(table.metrics))
    return lambda s, o: tuple(round(v.mean, 2) == b for v, b in zip(values_of(table.cell(s, o)), best[o]))


def _fmt(mean, std, bold, latex=False, mark=""):
    text = f"{mean:.2f}" + ((r"$\pm$" if latex else "±") + f"{std:.2f}" if std > 0 else "")
    if bold:
        text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
    return text + (LATEX_MARKS.get(mark, mark) if latex else mark)


def _cells(table, score, marked, latex=False):
    """The cells of one table row (FPR95 and AUROC per column; a benchmark's also AUPR-In and AUPR-Out),
    marked values in bold, each followed by its mark."""
    out, n = [], len(table.metrics)
    for o in table.cols:
        v = table.cell(score, o)
        if v is None:
            out += ["--" if latex else "–"] * n
            continue
        out += [_fmt(x.mean, x.pm, bold, latex, x.mark)
                for x, bold in zip(values_of(v)[:n], marked(score, o))]
    return out


def markdown(rows, dists=None):
    return render_markdown(_table(rows, dists))


def latex(rows, caption="", dists=None):
    return render_latex(_table(rows, dists), caption)


def csv_table(rows, dists=None):
    return render_csv(_table(rows, dists))


def _accuracy(score, acc, latex=False):
    """The ID accuracy cell: a percentage, or (mean, std) over runs (ood.reporting.aggregate)."""
    v = acc(score)
    if v is None:
        return "--" if latex else "–"
    return _fmt(*v, False, latex) if isinstance(v, tuple) else f"{v:.2f}"


def render_markdown(table):
    """A Table (or ood.reporting.aggregate's tuple) as Markdown; the best values and those tied with them in bold."""
    table = _parts(table)
    marked, acc = _marks(table), table.accuracy
    heads = [f"{HEADS[m]}{'↓' if m in LOWER_IS_BETTER else '↑'}" for m in table.metrics]
    head = "| Score | " + " | ".join(f"{o} {h}" for o in table.cols for h in heads) + (" | ID Acc. |" if acc else " |")
    lines = [head, "|" + "---|" * (1 + len(heads) * len(table.cols) + bool(acc))]
    for s in table.scores:
        lines.append(f"| {s} | " + " | ".join(_cells(table, s, marked) + ([_accuracy(s, acc)] if acc else []))
                     + " |")
    return "\n".join(lines) + "\n"


def render_latex(table, caption=""):
    table = _parts(table)
    marked, acc, cols = _marks(table), table.accuracy, table.cols
    esc = lambda t: (t.replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$")
                     .replace(FEW_MARK, r"\ddag{}").replace(APPROX_MARK, r"\dag{}"))
    extra = (" & ID Acc.", " & ") if acc else ("", "")
    n = len(table.metrics)
    heads = " & ".join(HEADS[m] + (r"$\downarrow$" if m in LOWER_IS_BETTER else r"$\uparrow$") for m in table.metrics)
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{l" + "c" * n * len(cols) + ("c" if acc else "") + "}", r"\toprule",
           "Score & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{esc(o)}}}" for o in cols) + extra[0] + r" \\",
           " & " + " & ".join(heads for _ in cols) + extra[1] + r" \\",
           r"\midrule"]
    for s in table.scores:
        cells = _cells(table, s, marked, True) + ([_accuracy(s, acc, True)] if acc else [])
        out.append(f"{esc(s)} & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{esc(caption)}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def render_csv(table):
    """Per column FPR95, its std, AUROC, its std (over draws, replicates or runs, as results.csv always had
    them; a benchmark's table then AUPR-In and AUPR-Out, each with its std) and, when the rows have
    intervals, both ends of each interval."""
    table = _parts(table)
    scores, cols, cell, acc = table.scores, table.cols, table.cell, table.accuracy
    ends = any(v is not None and v.fpr_ci is not None for s in scores for o in cols
               for v in [cell(s, o)] if isinstance(v, Cell))
    short = [CSV_NAMES[m] for m in table.metrics]
    names = tuple(x for m in short for x in (m, f"{m}_std")) + \
        (tuple(x for m in short for x in (f"{m}_low", f"{m}_high")) if ends else ())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["score"] + [f"{o} {m}" for o in cols for m in names] + (["ID_accuracy"] if acc else []))
    for s in scores:
        vals = []
        for o in cols:
            v = cell(s, o)
            if v is None:
                vals += [""] * len(names)
                continue
            metrics = values_of(v)[:len(short)]
            vals += [f"{x:.4f}" for m in metrics for x in (m.mean, m.pm if m.std is None else m.std)]
            if ends:
                vals += [x for m in metrics for x in ([f"{e:.4f}" for e in m.ci] if m.ci is not None else ["", ""])] \
                    if v.fpr_ci is not None else [""] * (2 * len(short))
        if acc:
            v = acc(s)
            vals.append("" if v is None else f"{(v[0] if isinstance(v, tuple) else v):.4f}")
        w.writerow([s] + vals)
    return buf.getvalue()


def _p(p):
    return "" if p is None else ("p<0.001" if p < 0.001 else f"p={p:.3f}")


def _diff(d, ci, p, test=""):
    text = _p(p)
    if test and text:
        text = text.replace("p", f"p{test}", 1)
    return f"{100 * d:+.2f} [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}] {text}".rstrip()


def comparison_markdown(rows, dists=None):
    """The paired differences against the reference score (rows' ``vs``, ood.evaluation.comparisons.against) as a
    Markdown table: per column, ΔAUROC and ΔFPR95 in points with their interval and p-value (DeLong's
    test for the AUROC of a set and the paired permutation test for its FPR95 where the row has them, the
    paired bootstrap elsewhere). "" when no row has one."""
    with_vs = [r for r in rows if r.get("vs")]
    if not with_vs:
        return ""
    ref = with_vs[0]["vs"]["reference"]
    table = _table(rows, dists)
    by = {(r.get("label") or r["score"], r["ood_dataset"]): r for r in rows}
    ref_label = next((r.get("label") or r["score"] for r in rows if r["score"] == ref), ref)
    level = with_vs[0]["bootstrap"]["level"]
    _, averages = columns(rows)
    lines = ["| Score vs " + ref_label + " | " + " | ".join(f"{o} ΔFPR95 | {o} ΔAUROC" for o in table.cols) + " |",
             "|" + "---|" * (1 + 2 * len(table.cols))]
    for s in table.scores:
        if s == ref_label:
            continue
        cells = []
        for o in table.cols:
            vs = (by.get((s, o)) or {}).get("vs")
            if vs is not None:
                delong = vs["auroc_p_delong"] is not None
                swap = vs.get("fpr95_p_permutation") is not None  # rows of earlier versions have none
                cells += [_diff(vs["fpr95_diff"], vs["fpr95_diff_ci"],
                                vs["fpr95_p_permutation"] if swap else vs["fpr95_p_bootstrap"], "P" if swap else "B"),
                          _diff(vs["auroc_diff"], vs["auroc_diff_ci"],
                                vs["auroc_p_delong"] if delong else vs["auroc_p_bootstrap"], "D" if delong else "B")]
                continue
            members = averages.get(o, [])
            paired_sets = members and all((s, x) in by and (ref_label, x) in by and
                                          comparable(by[(s, x)], by[(ref_label, x)]) for x in members)
            mine, theirs = table.dist(s, o), table.dist(ref_label, o)
            a, b = table.cell(s, o), table.cell(ref_label, o)
            if not paired_sets or mine is None or theirs is None or a is None or b is None:
                cells += ["–", "–"]
                continue
            f = paired(mine[FPR], theirs[FPR], (a.fpr - b.fpr) / 100, level)
            u = paired(mine[AUROC], theirs[AUROC], (a.auroc - b.auroc) / 100, level)
            cells += [_diff(f["diff"], f["ci"], f["p"], "B"), _diff(u["diff"], u["ci"], u["p"], "B")]
        if any(c != "–" for c in cells):
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_caption(rows):
    r = next(r for r in rows if r.get("vs"))
    ref, pct = r["vs"]["reference"], f"{100 * r['bootstrap']['level']:g} %"
    return (f"Paired differences against {ref} on the same images (score minus {ref}, in points) with their {pct} "
            f"paired-bootstrap interval; two-sided p-values: pD DeLong's test for correlated ROC curves (a set's "
            f"AUROC, both scores scored in the same run on every OOD image), pP the paired permutation test of "
            f"the two scores' ranks (a set's FPR95, likewise; mid-p), pB the paired bootstrap (at least "
            f"2 / (resamples + 1) = {2 / (r['bootstrap']['resamples'] + 1):.3g}; conservative for FPR95)")


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
            # one filled outline per histogram: matplotlib's hist draws a rectangle per bin, which made
            # these plots a third of the scoring step's time in the demo
            for values, label in ((d["id"], "ID test"), (d[o], o)):
                ax.stairs(np.histogram(values, bins, density=True)[0], bins, fill=True, alpha=0.6, label=label)
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


def forest(rows, dists, path, title=""):
    """A forest plot of one table: a panel per column (each OOD set and each average), the scores down
    the side, each AUROC as a point with its confidence interval; the best of each panel and the scores
    tied with it in colour, the others grey, a dashed line at the best value."""
    table = _table(rows, dists)
    cols, scores = table.cols, table.scores
    n_rows = (len(cols) + 5) // 6  # at most six panels a row, the rows balanced
    per_row = (len(cols) + n_rows - 1) // n_rows
    fig = figure(figsize=(2.6 * per_row + 1.2, (0.28 * len(scores) + 0.9) * n_rows + 0.4))
    axes = fig.subplots(n_rows, per_row, squeeze=False, sharey=True)
    y = np.arange(len(scores))[::-1]
    for ax, o in zip(axes.flat, cols):
        best = None
        for yi, s in zip(y, scores):
            c = table.cell(s, o)
            if c is None:
                continue
            tied = table.marked(s, o)[1] if table.marked else False
            color = "tab:blue" if tied else "0.55"
            lo, hi = c.auroc_ci if c.auroc_ci is not None else (c.auroc, c.auroc)
            ax.plot([lo, hi], [yi, yi], color=color, lw=1.6, solid_capstyle="butt")
            ax.plot([c.auroc], [yi], "o", color=color, ms=3.5)
            best = c.auroc if best is None else max(best, c.auroc)
        if best is not None:
            ax.axvline(best, color="tab:blue", lw=0.6, ls="--", alpha=0.6)
        ax.set_title(o, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", lw=0.3, alpha=0.5)
        ax.set_xlabel("AUROC %", fontsize=7)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_yticks(y)
        ax.set_yticklabels(scores, fontsize=7)
    if title:
        fig.suptitle("\n".join(_wrap(title, 150)), fontsize=7, x=0.01, ha="left")
    fig.tight_layout()
    return save_figure(fig, path)


def _wrap(text, width):
    import textwrap
    return textwrap.wrap(text, width)[:4]


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
