"""Combine results.json files (several seeds, backbones, data sets, protocols) into one table: for each
(id_dataset, model, protocol, score and its settings, ood_dataset), the mean and standard deviation of
AUROC, FPR95 and AUPR over the runs that hold it (one run = one results.json file; a row with several
replicates, e.g. RecLag fitted with several learner seeds, contributes each replicate).

Runs are averaged only when they agree on everything but their seeds: a score's settings (its declared
params), the FPR95 variant, input size, feature precision, subset, number of draws and training recipe.
Otherwise the aggregation stops and names the difference, unless ``allow_mixed`` says to average them
anyway. Earlier results archived under ``previous/`` are not runs, and a row found in several files
with the same checkpoint and the same key (seed included; e.g. the demo's table and its ``extended/``
table) counts once.

The tables keep the paper's layout of ``ood.reporting.reports`` (rows: scores; columns: FPR95 (lower is better)
and AUROC (higher is better) per OOD set and their average, in percent, best in bold), one per
(id_dataset, model, protocol). The average column is computed per run and then averaged, so its ± is
the spread of the runs' averages. With a single run the ± is what that run reported (the spread over
the sampled protocol's draws, 0 for the full protocol), as in results.md. A benchmark's table (OpenOOD
v1.5) is laid out as OpenOOD's scripts/eval_ood.py prints its mean ± std over runs: each near and far set
and their averages with FPR95, AUROC, AUPR-In and AUPR-Out, and the ID accuracy; its scores are named
with the settings they ran at, or that each run's sweep chose (``settings_labels``).

**Sources of variation.** A number in these tables moves for three reasons users can tell apart: the
finite test set (the bootstrap's standard error of each run's row, ood/evaluation/uncertainty.py), the score's own
randomness (its learner seeds: the spread of a row's replicates) and the backbone's (its training
seeds: the spread of the runs' means beyond what their learner seeds and their own test-sample noise
explain). Each cell reports the three standard deviations and their total, the standard deviation of one
new (training seed, learner seed, test set) draw, and names the source that dominates.

The test set is the same in every run, so its noise has two parts: one shared by every run, which never
shows in the spread over runs, and one of each run's own (how a run's scores err on these images: the
seed x test-sample interaction), which does. A run's bootstrap variance holds both, so the interaction is
taken out of the spread over runs, where it would otherwise be counted a second time: the runs' bootstrap
distributions share their resamples (ood/evaluation/uncertainty.py), and the mean of their variances less the mean
of their covariances is the own part. The estimates are the ANOVA moments of the one-way random-effects
model with unweighted run means, unbiased when runs have different numbers of learner seeds n_i:

- test samples = the mean of the runs' bootstrap variances;
- learner seeds = the within-run mean square (each run's replicate variance, ddof 1, weighted by n_i - 1);
- training seeds = the variance of the runs' means (ddof 1) - learner x mean(1 / n_i) - the own part,
  floored at 0 for its standard deviation; without paired distributions (bootstrap.npz) it is not given;
- total = the sum, with the training seeds' part before flooring (so that it is unbiased).

A learner seed's own test-sample noise cannot be told apart from the learner seeds' variance (a run's
bootstrap is of its replicates' mean); it is counted in the learner seeds' part, its 1 / n_i share in the
test samples' and taken out of the training seeds' (which is low by that much; the total is not).

``aggregate_results.py`` is the command line.
"""
import csv
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np

from ood.system import inputs
from ood.reporting import reports
from ood.reporting.commit import ARCHIVE, STAGING
from ood.errors import UserError
from ood.evaluation.protocols import METRICS
from ood.io import safe_name, write_text
from ood.reporting.results import VARIANT_NOTES, read_dists
from ood.evaluation.rows import assign_labels, dist_key, row_key, shown_accuracy

GROUP = ("id_dataset", "model", "protocol")
RUN_FILES = ("results.json", "selected.json")  # what holds a run's rows
SETTINGS = ("fpr_variant", "input_size", "feature_precision", "train_precision", "subset", "repeats",
            "recipe", "preprocessing")  # must agree across runs


def find_results(paths):
    """The runs among ``paths``, each file once, sorted: the results.json files under each folder (searched
    recursively), or, in a folder that holds none, the sweeps' selected.json files (the rows of the
    settings each sweep chose; OpenOOD's way: one sweep per training run); a file named is read as given.
    A sweep inside a results folder is therefore never taken for another run of that folder's scores.
    A folder named that holds no run is refused, naming it: skipped, the table would be labelled from
    the other runs only, as if the user had not named it (e.g. a seed whose run failed)."""
    found, empty = [], []
    for p in map(Path, paths):
        if p.is_dir():  # results moved aside by a later run, or staged by a run (ood/reporting/commit.py), are not runs
            for name in RUN_FILES:
                files = sorted(f for f in p.rglob(name)
                               if not any(x == ARCHIVE or x.startswith(STAGING) for x in f.relative_to(p).parts))
                if files:
                    found += files
                    inputs.note(f"the results under {p}", files, root=p)  # what a launcher's marker is keyed on
                    break
            else:
                empty.append(str(p))
        elif p.is_file():
            found.append(p)
            inputs.note(f"the results file {p}", [p])
        else:
            raise UserError(f"{p} does not exist: give results.json files or folders that hold them.")
    if empty:
        empty = list(dict.fromkeys(empty))  # a folder named twice is named once
        raise UserError(f"no results.json under {', '.join(empty)} (nor a sweep's selected.json). Run "
                        f"test_score_ood_detection.py there first (it writes results.json into its --results_dir), "
                        f"or leave {'it' if len(empty) == 1 else 'them'} out.")
    seen, out = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        raise UserError(f"no results.json under {', '.join(map(str, paths))} (nor a sweep's selected.json). Run "
                        f"test_score_ood_detection.py first; it writes results.json into its --results_dir.")
    return out


def load_runs(files):
    """[(path, rows)] of the results.json files; a row whose bootstrap distribution is in the folder's
    bootstrap.npz holds it (in memory only) under "_dist", for the averages' test-sample variation. A
    file without rows is refused, as a folder without results is (find_results)."""
    runs, empty = [], []
    for f in files:
        try:
            rows = json.loads(Path(f).read_text(encoding="utf-8"))["rows"]
            for r in rows:
                for k in GROUP + ("score", "ood_dataset", "fpr95", "auroc"):
                    r[k]  # noqa: B018 (KeyError if missing)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{f} is not a results.json of test_score_ood_detection.py ({type(e).__name__}: {e}).") from None
        if not rows:
            empty.append(str(f))
            continue
        dists = read_dists(Path(f).parent / "bootstrap.npz")
        for r in rows:
            if r.get("bootstrap") and dist_key(r) in dists:
                r["_dist"] = dists[dist_key(r)].astype(np.float64)
        runs.append((Path(f), rows))
    if empty:
        raise UserError(f"{', '.join(empty)} hold{'s' if len(empty) == 1 else ''} no rows: no results to "
                        f"aggregate. Score into {'its folder' if len(empty) == 1 else 'their folders'} again, or "
                        f"leave {'it' if len(empty) == 1 else 'them'} out.")
    return runs


def group_key(row):
    """(id_dataset, model, protocol) of a row; a benchmark's ID set is named with its benchmark
    (``openood-cifar10``, as its results folder is), so that its rows never join the paper's CIFAR-10, and
    a row of the full-spectrum setting with "-fsood" (``openood-cifar10-fsood``)."""
    ident = f"{row['benchmark']}-{row['id_dataset']}" if row.get("benchmark") else row["id_dataset"]
    if row.get("fsood"):  # OpenOOD's full-spectrum rows (--fsood) never join those of the ID test set alone
        ident += "-fsood"
    return (ident, *(row[k] for k in GROUP[1:]))


def _ordered(values, order=()):
    values = list(dict.fromkeys(values))
    known = [v for v in order if v in values]
    return known + [v for v in values if v not in known]


def _run_labels(paths):
    """Short names of runs: the parts of their paths that differ (e.g. seed1, seed2)."""
    parts = [p.resolve().parent.parts for p in paths]
    if len(parts) == 1:
        seeds = [x for x in parts[0] if re.fullmatch(r"seed\d+", x)]
        return [seeds[-1] if seeds else str(paths[0].parent)]
    pre = 0
    while all(len(x) > pre for x in parts) and len({x[pre] for x in parts}) == 1:
        pre += 1
    suf = 0
    while all(len(x) > pre + suf for x in parts) and len({x[-1 - suf] for x in parts}) == 1:
        suf += 1
    return ["/".join(x[pre:len(x) - suf]) or str(p) for x, p in zip(parts, paths)]


def _variant(row):
    """What makes two rows of a score the same variant: its settings; for rows whose settings a sweep chose
    on validation sets (selected.json: each run chooses its own, as OpenOOD's automatic search does),
    the choice's rule, so that the runs' selected rows are averaged as one."""
    if row.get("selected_on"):
        return json.dumps({"selected_on": row["selected_on"]}, sort_keys=True)
    return json.dumps(row.get("settings") or {}, sort_keys=True)


def _describe(variant):
    settings = json.loads(variant)
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "no settings"


def _check_mixed(runs, allow_mixed):
    """Refuse (or, with allow_mixed, warn about) runs that differ in more than their seeds. Returns the
    (group, score) pairs whose variants are to be averaged as one (allow_mixed, one variant per run)."""
    problems, merge = [], set()
    by_score = {}   # (group, score) -> {run: frozenset of variants}
    by_setting = {}  # (group, setting) -> {value: [files]}
    for path, rows in runs:
        for r in rows:
            g = group_key(r)
            by_score.setdefault((g, r["score"]), {}).setdefault(str(path), set()).add(_variant(r))
            for k in SETTINGS:
                if r.get(k) is not None:
                    by_setting.setdefault((g, r["score"], k), {}).setdefault(json.dumps(r[k]), set()).add(str(path))
    for (g, score), per_run in by_score.items():
        kinds = {frozenset(v) for v in per_run.values()}
        if len(kinds) > 1:
            described = {}
            for path, variants in per_run.items():
                for v in variants:
                    described.setdefault(v, []).append(path)
            problems.append(f"{'/'.join(map(str, g))} {score}: " + "; ".join(
                f"{_describe(v)} in {', '.join(sorted(files))}" for v, files in described.items()))
            if all(len(v) == 1 for v in per_run.values()):
                merge.add((g, score))
    for (g, score, key), values in by_setting.items():
        if len(values) > 1:
            problems.append(f"{'/'.join(map(str, g))} {score}: {key} " + "; ".join(
                f"{v} in {', '.join(sorted(files))}" for v, files in values.items()))
    if problems and not allow_mixed:
        raise UserError("the runs differ in more than their seeds, so their mean would mix settings: "
                        + " | ".join(problems) + ". Aggregate them separately, or pass --allow_mixed to "
                        "average them anyway.")
    for p in problems:
        warnings.warn(f"averaging runs with different settings ({p})")
    return merge


def aggregate(runs, ddof=0, order=None, allow_mixed=False):
    """Aggregated rows and per-group summaries of ``runs`` ([(path, rows)]).

    Returns {"rows": [...], "groups": [...]}: a row per (group, score, ood_dataset) including the
    "Average" pseudo-set, with mean, ``<metric>_std`` (over runs and replicates, ``ddof`` as numpy.std;
    the run's own std when there is one run and one replicate), ``n_runs``, the per-run ``values`` and
    the score's ``settings``; a group per (id_dataset, model, protocol) with its runs, scores and OOD
    sets in table order (``order``: score name -> table position)."""
    if ddof not in (0, 1):
        raise UserError("--ddof must be 0 (population std, as numpy.std and the sampled protocol) or 1.")
    order = order or {}
    merge = _check_mixed(runs, allow_mixed)
    cells = {}   # (group, (score, variant), ood) -> list of (run index, row)
    seen = {}    # (checkpoint, row key) -> file: one computation is one run, whatever files hold it
    repeated = {}  # (file, earlier file) -> number of rows it repeats
    for i, (path, rows) in enumerate(runs):
        for r in rows:
            g = group_key(r)
            variant = "mixed" if (g, r["score"]) in merge else _variant(r)
            cell = (g, (r["score"], variant), r["ood_dataset"])
            if r.get("checkpoint") is not None:
                same = (r["checkpoint"], row_key(r))  # the key holds the run's seed and replicates
                if same in seen:
                    repeated[(path, seen[same])] = repeated.get((path, seen[same]), 0) + 1
                    continue
                seen[same] = path
            cells.setdefault(cell, []).append((i, r))
    for (path, first), n in repeated.items():
        warnings.warn(f"{n} row(s) of {path} repeat rows of {first} (the same checkpoint, score, settings, "
                      f"OOD set and seed); they count once.")

    groups = {}
    for (g, s, o) in cells:
        groups.setdefault(g, {"scores": [], "oods": []})
        groups[g]["scores"].append(s)
        groups[g]["oods"].append(o)
    out_rows, out_groups = [], []
    for g, info in groups.items():
        scores = sorted(dict.fromkeys(info["scores"]), key=lambda s: (order.get(s[0], 1000), s))
        oods = _ordered(info["oods"])
        run_ids = sorted({i for (gg, _, _), lst in cells.items() if gg == g for i, _ in lst})
        labels = dict(zip(run_ids, _run_labels([runs[i][0] for i in run_ids])))
        group = dict(zip(GROUP, g))
        columns, averages = reports.columns([r for (gg, _, _), lst in cells.items() if gg == g for _, r in lst])
        group_rows = []
        for s in scores:
            per_run = {}  # run -> {ood: row}
            for o in oods:
                lst = cells.get((g, s, o))
                if not lst:
                    continue
                group_rows.append(_combine(group, s, o, [r for _, r in lst], [labels[i] for i, _ in lst], ddof))
                for i, r in lst:
                    per_run.setdefault(i, {})[o] = r
            for title, members in averages.items():  # "Average", or a benchmark's "Near-OOD" / "Far-OOD"
                common = [o for o in members if all(o in d for d in per_run.values())]
                if per_run and common and (len(oods) > 1 or title != "Average"):
                    avg = [_average_row([d[o] for o in common]) for d in per_run.values()]
                    row = _combine(group, s, title, avg, [labels[i] for i in per_run], ddof)
                    row["ood_sets"] = common
                    group_rows.append(row)
        group_rows = assign_labels(group_rows)
        benchmark = next((r["benchmark"] for (gg, _, _), lst in cells.items() if gg == g for _, r in lst
                          if r.get("benchmark")), None)
        if benchmark:  # OpenOOD's reader sees each score's settings: "ReAct (percentile=90)"
            group_rows = settings_labels(group_rows)
        out_rows += group_rows
        n_runs = [len(cells.get((g, s, o), [])) for s in scores for o in oods]
        replicated = {r["label"]: len(r["values"]["auroc"]) for r in group_rows
                      if len(r.get("values", {}).get("auroc", [])) > r["n_runs"]}
        out_groups.append({**group, "runs": [labels[i] for i in run_ids], "files": [str(runs[i][0]) for i in run_ids],
                           "scores": list(dict.fromkeys(r["label"] for r in group_rows)), "ood_datasets": oods,
                           "columns": [c for c in columns if c in oods or c in averages],
                           "fpr_variants": sorted({str(r.get("fpr_variant")) for (gg, _, _), lst in cells.items()
                                                   if gg == g for _, r in lst}),
                           "min_runs": min(n_runs), "max_runs": max(n_runs), "replicated": replicated})
        if benchmark:
            out_groups[-1].update(benchmark=benchmark, ddof=ddof, selected={
                r["label"]: r["selected_on"] for r in group_rows if r.get("selected_on")})
        if min(n_runs) != max(n_runs):
            warnings.warn(f"{'/'.join(g)}: some scores or OOD sets are in {min(n_runs)} run(s), others in "
                          f"{max(n_runs)}; each cell is the mean over the runs that hold it.")
    return {"rows": out_rows, "groups": out_groups}


def _samples(row, metric):
    """The values a row contributes to a cell: one per replicate (or the row's own mean)."""
    reps = row.get("replicate_metrics")
    if reps and len(reps) > 1 and all(metric in x for x in reps):
        return [x[metric] for x in reps]
    return [row[metric]] if row.get(metric) is not None else []


def _average_row(rows):
    """The "Average" pseudo-row of one run: the mean over OOD sets, per replicate."""
    out = {"n_id": None, "n_ood": None, "settings": rows[0].get("settings"), "id_accuracy": shown_accuracy(rows[0]),
           "selected_on": rows[0].get("selected_on")}
    for m in METRICS:
        if all(m in r for r in rows):
            out[m] = float(np.mean([r[m] for r in rows]))
    reps = [r.get("replicate_metrics") or [] for r in rows]
    if reps[0] and all(len(x) == len(reps[0]) for x in reps):
        out["replicate_metrics"] = [{m: float(np.mean([x[j][m] for x in reps])) for m in METRICS
                                     if all(m in x[j] for x in reps)} for j in range(len(reps[0]))]
    if all(r.get("_dist") is not None for r in rows):  # the average's own bootstrap (shared ID resamples)
        d = np.mean(np.stack([r["_dist"] for r in rows]), axis=0)
        out.update({f"{m}_se": float(np.std(d[k], ddof=1)) for k, m in enumerate(METRICS)})
        out["_dist"], out["_resampling"] = d, json.dumps([_resampling(r) for r in rows])  # paired across runs
    return out


SOURCES = ("test_samples", "learner_seeds", "training_seeds")


def _replicates(row, metric):
    """A run's values of ``metric``: one per learner seed, or its one value."""
    reps = row.get("replicate_metrics") or []
    if len(reps) > 1 and all(metric in x for x in reps):
        return [x[metric] for x in reps]
    return [row[metric]]


def _resampling(row):
    """What a row's bootstrap resamples were drawn from (ood/evaluation/uncertainty.py: the bootstrap's seed and
    size, the sets' sizes, and the draws' seed but under the full protocol, whose one draw is every
    image): two runs' distributions are paired resample by resample, the same test images drawn in both,
    only when this is the same."""
    draws = None if row.get("protocol") == "full" else row.get("seed")
    return row.get("_resampling") or json.dumps(
        [row.get(k) for k in ("bootstrap", "n_id", "n_ood", "protocol", "repeats")] + [draws], sort_keys=True)


def _own_test_noise(rows, metric):
    """The variance that the test samples add to the spread of the runs' means, or None where the runs'
    bootstrap distributions are missing or not paired. The test set is the same in every run, so its
    noise has a part shared by all runs (their distributions' covariance, which never shows in the
    spread over runs) and a part of each run's own (how a run's scores err on these test images: the
    seed x test-sample interaction, which does). The mean over runs of the own part is the mean of the
    distributions' variances less the mean of their covariances."""
    dists = [r.get("_dist") for r in rows]
    if any(d is None for d in dists) or len({_resampling(r) for r in rows}) != 1 \
            or len({d.shape for d in dists}) != 1 or dists[0].shape[1] < 2:
        return None
    k = METRICS.index(metric)
    cov = np.cov(np.stack([d[k] for d in dists]), ddof=1)
    off = (cov.sum() - np.trace(cov)) / (len(rows) * (len(rows) - 1))
    return float(np.mean(np.diag(cov)) - off)


def variation(rows, metric):
    """The standard deviation of ``metric`` from each source of variation over ``rows`` (one per run; see
    the module docstring), their total and the dominant source; a source the rows cannot show is None.
    ``variance`` holds the variances, the training seeds' before it is floored at 0: that one is what
    is unbiased, and the total is computed from it."""
    rows = [r for r in rows if r.get(metric) is not None]
    se = [r.get(f"{metric}_se") for r in rows]
    test = float(np.mean(np.square(se))) if se and all(x is not None for x in se) else None
    reps = [_replicates(r, metric) for r in rows]
    df = sum(len(v) - 1 for v in reps)
    # ANOVA's within-run mean square: each run's variance weighted by its degrees of freedom
    learner = float(sum((len(v) - 1) * np.var(v, ddof=1) for v in reps if len(v) > 1) / df) if df else None
    raw = None
    noise = _own_test_noise(rows, metric) if len(rows) > 1 else None
    if noise is not None:
        # the variance of the runs' (unweighted) means holds the learner variance / n_i of each run and
        # each run's own test-sample noise; both are taken out, the first as the mean of 1 / n_i
        harmonic = float(np.mean([1.0 / len(v) for v in reps]))
        raw = float(np.var([r[metric] for r in rows], ddof=1)) - harmonic * (learner or 0.0) - noise
    training = None if raw is None else max(0.0, raw)
    parts = dict(zip(SOURCES, (test, learner, training)))
    known = {k: v for k, v in parts.items() if v is not None}
    if not known:
        return None
    out = {k: (None if v is None else float(np.sqrt(v))) for k, v in parts.items()}
    # the total and the dominant source only where every source could be estimated; the total from the
    # training seeds' variance before flooring, so that it is unbiased (it may be below the parts' sum)
    complete = len(known) == len(SOURCES)
    total = max(0.0, test + learner + raw) if complete else None
    out["total"] = float(np.sqrt(total)) if complete else None
    out["dominant"] = max(known, key=known.get) if complete and total > 0 else None
    out["training_share"] = training / total if complete and total > 0 else None
    out["variance"] = {**parts, "training_seeds": raw, "total": total}
    return out


def _combine(group, score, ood, rows, labels, ddof):
    """One aggregated cell; ``score`` is (name, variant), variant "mixed" for runs averaged with
    --allow_mixed (their settings are then listed)."""
    name, variant = score
    settings = rows[0].get("settings") or {}
    if rows[0].get("selected_on"):  # each run's own choice, in run order
        settings = {"selected": [r.get("settings") for r in rows]}
    if variant == "mixed":
        settings = {"mixed": [json.loads(v) for v in dict.fromkeys(_variant(r) for r in rows)]}
    out = {**group, "score": name, "ood_dataset": ood, "n_runs": len(rows), "runs": labels, "settings": settings}
    if rows[0].get("selected_on") and variant != "mixed":  # the rule the runs chose their settings by
        out["selected_on"] = rows[0]["selected_on"]
    for m in METRICS:
        vals = [v for r in rows for v in _samples(r, m)]
        if not vals:
            continue
        out[m] = float(np.mean(vals))
        if len(vals) > 1:
            out[f"{m}_std"] = float(np.std(vals, ddof=ddof))
        else:
            out[f"{m}_std"] = float(rows[0].get(f"{m}_std") or 0.0)
        out.setdefault("values", {})[m] = vals
    spread = {m: v for m in METRICS if m in out for v in [variation(rows, m)] if v is not None}
    if spread:
        out["variation"] = spread
    accuracy = [shown_accuracy(r) for r in rows if shown_accuracy(r) is not None]  # a benchmark's rows (fsood: pooled)
    if accuracy:
        out["id_accuracy"], out["id_accuracy_std"] = float(np.mean(accuracy)), float(np.std(accuracy, ddof=ddof)) \
            if len(accuracy) > 1 else 0.0
    n_values = len(out.get("values", {}).get("auroc", []))
    out["std_over"] = ("runs" if len(rows) > 1 else "replicates") if n_values > 1 else \
        ("draws" if rows[0].get("protocol") == "sampled" else "none")
    sizes = {(r.get("n_id"), r.get("n_ood")) for r in rows if r.get("n_id") is not None}
    if len(sizes) > 1:
        warnings.warn(f"{group['id_dataset']}/{group['model']}/{group['protocol']} {name} vs {ood}: the runs "
                      f"have different numbers of images {sorted(sizes)}; are they the same protocol?")
    if sizes:
        out["n_id"], out["n_ood"] = sorted(sizes)[0]
    return out


def _setting(value):
    """A setting's value as a label shows it: 90.0 as 90, a list as its values joined by commas."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_setting, value))
    return str(value)


def settings_text(settings):
    """The settings of an aggregated row as a label shows them: "percentile=90, T=1"; a sweep's choices
    per run ({"selected": [settings per run]}) each setting once where the runs chose alike, else its
    values in run order joined by "/" ("percentile=90/90/85"); runs averaged with --allow_mixed
    ({"mixed": [...]}) each variant, joined by " | "."""
    settings = settings or {}
    if list(settings) == ["selected"]:
        runs = [s or {} for s in settings["selected"]]
        parts = []
        for k in dict.fromkeys(k for s in runs for k in s):
            values = list(dict.fromkeys(_setting(s.get(k)) for s in runs))
            parts.append(f"{k}={values[0] if len(values) == 1 else '/'.join(_setting(s.get(k)) for s in runs)}")
        return ", ".join(parts)
    if list(settings) == ["mixed"]:
        return " | ".join(settings_text(v) or "defaults" for v in settings["mixed"])
    return ", ".join(f"{k}={_setting(v)}" for k, v in settings.items())


def _selection(on):
    """What a sweep chose its settings on (a selected row's ``selected_on``), in words."""
    split = on.get("id_split") or "test"
    return f"the ID {split} split against {', '.join(on.get('ood') or [])}"


def settings_labels(rows):
    """``rows`` (one group's, labelled by assign_labels) as new dicts whose label names each score with
    every setting it was run at, or that the sweeps chose in each run: "ReAct (percentile=90, T=1)"; a
    score without settings keeps its name. Two variants that would read alike (a score's sweep-chosen rows
    and rows run at the same settings) are told apart by the rule of the choice."""
    def key(r):
        return json.dumps([r["score"], r.get("settings"), r.get("selected_on")], sort_keys=True)

    labels = {}
    for r in rows:
        text = settings_text(r.get("settings"))
        labels.setdefault(key(r), (r, f"{r['score']} ({text})" if text else r["score"]))
    counts = {}
    for _, label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    final = {}
    for k, (r, label) in labels.items():
        if counts[label] > 1 and r.get("selected_on"):
            label = f"{label} [chosen on {_selection(r['selected_on'])}]"
        final[k] = label
    if len(set(final.values())) < len(final):  # still alike: the labels assign_labels gave keep them apart
        final = {k: f"{label} [{labels[k][0]['label']}]" for k, label in final.items()}
    return [{**r, "label": final[key(r)]} for r in rows]


# ----------------------------------------------------------------------------------------------------
# Tables in the paper's layout (cell formatting and bold best values from ood.reporting.reports); a
# benchmark's with AUPR-In and AUPR-Out beside FPR95 and AUROC, as OpenOOD's evaluator prints them
# ----------------------------------------------------------------------------------------------------
def _metrics(agg, group):
    """The metrics of a group's table: a benchmark's all four when its rows carry them."""
    rows = [r for r in agg["rows"] if all(r[k] == group[k] for k in GROUP)]
    if group.get("benchmark") and rows and all("aupr_in" in r and "aupr_out" in r for r in rows):
        return reports.BENCHMARK_METRICS
    return reports.PAPER_METRICS


def _table(agg, group):
    rows = [r for r in agg["rows"] if all(r[k] == group[k] for k in GROUP)]
    by = {(r["label"], r["ood_dataset"]): r for r in rows}
    cols = group.get("columns") or group["ood_datasets"] + (["Average"] if len(group["ood_datasets"]) > 1 else [])
    cols = [c for c in cols if any((s, c) in by for s in group["scores"])]
    metrics = _metrics(agg, group)

    def cell(s, o):
        r = by.get((s, o))
        if r is None:
            return None
        aupr = tuple(reports.Value(100 * r[m], 100 * r.get(f"{m}_std", 0.0)) for m in metrics[2:])
        return reports.Cell(100 * r["fpr95"], 100 * r["fpr95_std"], 100 * r["auroc"], 100 * r["auroc_std"], aupr=aupr)
    acc = {}
    for r in rows:
        if r.get("id_accuracy") is not None:
            acc.setdefault(r["label"], (100 * r["id_accuracy"], 100 * r.get("id_accuracy_std", 0.0)))
    return reports.Table(group["scores"], cols, cell, acc.get if acc else None, metrics=metrics)


def caption(group):
    n = group["max_runs"]
    runs = f"{n} runs ({', '.join(group['runs'])})" if n > 1 else f"1 run ({group['runs'][0]})"
    spread = "mean ± std over runs" if n > 1 else (
        "± std over the sampled protocol's draws" if group["protocol"] == "sampled" else "single run")
    reps = "".join(f"; {s}: mean ± std over {n} fits (runs × learner seeds)"
                   for s, n in group.get("replicated", {}).items())
    variants = [v for v in group.get("fpr_variants", []) if v not in ("None", "standard")]  # the default unsaid
    fpr = "".join(f"FPR95 variant {v}{VARIANT_NOTES.get(v, '')}; " for v in variants)
    if not group.get("benchmark"):
        return (f"{group['id_dataset']}, {group['model']}, {group['protocol']} protocol: {runs}; "
                f"{fpr}FPR95 and AUROC in %, {spread}{reps}")
    if n > 1:  # OpenOOD's scripts/eval_ood.py prints mean ± np.std over its runs, ddof 0
        spread += " (population std, ddof 0, as OpenOOD's np.std)" if group.get("ddof", 0) == 0 else \
            " (sample std, ddof 1)"
    chosen = {}
    for label, on in group.get("selected", {}).items():
        chosen.setdefault(_selection(on), []).append(label.split(" (")[0])
    settings = "; each score named with the settings it was run at" + "".join(
        f"; {', '.join(dict.fromkeys(names))}: at the settings chosen in each run on {on} (best AUROC, OpenOOD's "
        f"automatic search), a setting's choices in run order joined by / where the runs differ"
        for on, names in chosen.items())
    return (f"{group['id_dataset']}, {group['model']}, {group['protocol']} protocol: {runs}; "
            f"{fpr}{reports.units(reports.BENCHMARK_METRICS)}, ID Acc.: the backbone's ID test accuracy in %; "
            f"{spread}{reps}{settings}")


def markdown_table(agg, group):
    return reports.render_markdown(_table(agg, group))


def latex_table(agg, group):
    return reports.render_latex(_table(agg, group), caption(group))


def csv_wide(agg, group):
    """One group's table as CSV, in the layout of results.csv."""
    return reports.render_csv(_table(agg, group))


def csv_long(agg):
    """Every aggregated cell, one per line, in percent."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR_In", "aupr_out": "AUPR_Out"}
    w.writerow(list(GROUP) + ["score", "ood_dataset", "n_runs"] +
               [f"{names[m]}{s}" for m in METRICS for s in ("", "_std")] + ["std_over", "runs"] +
               [f"{names[m]}_sd_{src}" for m in ("auroc", "fpr95") for src in SOURCES + ("total",)] +
               ["AUROC_dominant_source"])
    for r in agg["rows"]:
        vals = []
        for m in METRICS:
            vals += [f"{100 * r[m]:.4f}", f"{100 * r[m + '_std']:.4f}"] if m in r else ["", ""]
        parts = []
        for m in ("auroc", "fpr95"):
            v = (r.get("variation") or {}).get(m) or {}
            parts += ["" if v.get(src) is None else f"{100 * v[src]:.4f}" for src in SOURCES + ("total",)]
        parts.append(((r.get("variation") or {}).get("auroc") or {}).get("dominant") or "")
        w.writerow([r[k] for k in GROUP] + [r["label"], r["ood_dataset"], r["n_runs"]] + vals +
                   [r["std_over"], " ".join(r["runs"])] + parts)
    return buf.getvalue()


def variation_markdown(agg, group):
    """The sources of variation of AUROC in one group, per score, for the table's average columns (or its
    one set): test samples / learner seeds / training seeds / total, in points, and a sentence naming the
    cells where the training seeds dominate. "" when no cell has a decomposition."""
    rows = [r for r in agg["rows"] if all(r[k] == group[k] for k in GROUP) and (r.get("variation") or {}).get("auroc")]
    if not rows:
        return ""
    cols = [c for c in (group.get("columns") or []) if c not in group["ood_datasets"]] or \
        list(dict.fromkeys(r["ood_dataset"] for r in rows))[:1]
    by = {(r["label"], r["ood_dataset"]): r["variation"]["auroc"] for r in rows}
    fmt = lambda v: "–" if v is None else f"{100 * v:.2f}"  # noqa: E731
    heads = ["test samples", "learner seeds", "training seeds", "total"]
    lines = ["| Score | " + " | ".join(f"{c}: {h}" for c in cols for h in heads) + " |",
             "|" + "---|" * (1 + 4 * len(cols))]
    for s in group["scores"]:
        cells = []
        for c in cols:
            v = by.get((s, c))
            cells += ["–"] * 4 if v is None else [fmt(v[k]) for k in SOURCES + ("total",)]
        if any(x != "–" for x in cells):
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    judged = {k: v for k, v in by.items() if v.get("training_share") is not None}
    dominated = [f"{label} / {o}" for (label, o), v in judged.items() if v["training_share"] > 0.5]
    if judged:
        note = (f"Training seeds dominate (more than half the variance) in {len(dominated)} of {len(judged)} cells"
                + (f": {', '.join(dominated[:12])}{' ...' if len(dominated) > 12 else ''}" if dominated else "") + ".")
    else:
        note = ("The total needs every source: the training seeds' part needs two runs or more with their bootstrap "
                "distributions (bootstrap.npz, the same resamples: without them the runs' own test-sample noise "
                "cannot be taken out of their spread), the learner seeds' a score with several, the test samples' "
                "rows with intervals.")
    return ("Sources of variation of AUROC (standard deviations in points; total: one new training seed, learner "
            "seed and test set)\n\n" + "\n".join(lines) + "\n\n" + note + "\n")


def group_name(group):
    return "_".join(safe_name(group[k]) for k in GROUP)


def plot(agg, path):
    """Grouped bars per OOD set (one bar per score, ± std as error bars): FPR95 and AUROC side by side,
    one row of panels per (id_dataset, model, protocol). A score has one style (ood.reporting.reports.styles) in
    every panel, so the one legend holds for all of them."""
    groups = agg["groups"]
    ncols_max = max(len(_table(agg, g).cols) for g in groups)
    fig = reports.figure(figsize=(max(8, 1.1 * ncols_max * 2 + 2), 3.2 * len(groups)))
    axes = fig.subplots(len(groups), 2, squeeze=False)
    looks = reports.styles(s for g in groups for s in _table(agg, g).scores)
    for (ax_f, ax_a), g in zip(axes, groups):
        scores, cols, cell = _table(agg, g)[:3]
        x = np.arange(len(cols))
        width = 0.8 / max(1, len(scores))
        for j, s in enumerate(scores):
            vals = [cell(s, o) for o in cols]
            f = [v[0] if v else np.nan for v in vals]
            fs = [v[1] if v else 0 for v in vals]
            a = [v[2] if v else np.nan for v in vals]
            as_ = [v[3] if v else 0 for v in vals]
            off = x - 0.4 + width * (j + 0.5)
            look = {"color": looks[s].color, "hatch": looks[s].hatch, "edgecolor": "white", "linewidth": 0,
                    "capsize": 1.5, "error_kw": {"lw": 0.7}}
            ax_f.bar(off, f, width, yerr=fs, label=s, **look)
            ax_a.bar(off, a, width, yerr=as_, label=s, **look)
        for ax, name in ((ax_f, "FPR95 % (lower is better)"), (ax_a, "AUROC % (higher is better)")):
            ax.set_xticks(x)
            ax.set_xticklabels(cols, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(name, fontsize=8)
            ax.grid(axis="y", lw=0.4, alpha=0.5)
            ax.set_axisbelow(True)
        lo = np.nanmin([cell(s, o)[2] for s in scores for o in cols if cell(s, o)] + [100])
        ax_a.set_ylim(max(0, min(50, lo - 5)), 100.5)
        ax_f.set_ylim(0, 100.5)
        n = g["max_runs"]
        title = f"{g['id_dataset']} · {g['model']} · {g['protocol']} ({n} run{'s' if n > 1 else ''})"
        ax_f.set_title(title, fontsize=9, loc="left")
    legend = {}  # every score once, also those missing from the first panel
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    labels, handles = list(legend), list(legend.values())
    height = fig.get_figheight()
    fig.legend(handles, labels, loc="upper center", ncol=min(8, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))
    reports.save_figure(fig, path)
    return path


def write(agg, out_dir, figure=True):
    """aggregate.{md,csv,tex,json} (+ .png) in ``out_dir``, and tables/<group>.{md,csv,tex} per
    (id_dataset, model, protocol). Returns the Markdown."""
    out = Path(out_dir)
    md, tex = [], []
    for g in agg["groups"]:
        spread = variation_markdown(agg, g)
        md.append(f"### {caption(g)}\n\n{markdown_table(agg, g)}" + (f"\n{spread}" if spread else ""))
        tex.append(latex_table(agg, g))
        name = group_name(g)
        write_text(f"{caption(g)}\n\n{markdown_table(agg, g)}" + (f"\n{spread}" if spread else ""),
                   out / "tables" / f"{name}.md")
        write_text(csv_wide(agg, g), out / "tables" / f"{name}.csv")
        write_text(latex_table(agg, g), out / "tables" / f"{name}.tex")
    text = "\n".join(md)
    write_text(text, out / "aggregate.md")
    write_text("\n".join(tex), out / "aggregate.tex")
    write_text(csv_long(agg), out / "aggregate.csv")
    write_text(json.dumps(agg, indent=1) + "\n", out / "aggregate.json")
    if figure:
        plot(agg, out / "aggregate.png")
    return text
