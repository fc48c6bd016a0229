"""A results folder: ``results.json`` (every row), the tables ``results.{md,csv,tex}``, and optionally
the per-sample ``scores.npz`` and ``plots/``.

A run adds its rows to the folder, keyed on everything that makes two rows comparable (score and its
settings, OOD set, protocol and its draws, FPR95 variant, input size, precision, subset): a row with
the same key is replaced, every other row is kept, so ``--score MSP`` after ``--score all`` updates one
row of the table instead of deleting the other five, and a second protocol adds a second table. Rows
computed from another checkpoint or another ID test set are never mixed with new ones: the files the
tool wrote there (``RESULTS_FILES``) are first moved to ``previous/<time>/``, and the run says so; the
user's own files and folders (notes, scripts, a nested results folder) stay where they are.
``bootstrap.npz`` keeps each row's bootstrap distribution (ood/evaluation/uncertainty.py), from which the tables'
intervals of averages and their ties with the best are computed whenever the folder's tables are
rewritten. ``scores.npz`` and ``plots/``, once a folder has them, follow every later run (a replaced row's
per-sample scores and plots are replaced with it). Concurrent runs into one folder take turns (a lock),
and a run's files, the archiving included, land as a unit (ood.reporting.commit): a run stopped by a full disk,
an error or a kill leaves either all of them or none, and the next run into the folder finishes a run
that was killed after its commit point.
"""
import json
import warnings
from pathlib import Path

import numpy as np

from ood.data import get_benchmark
from ood.reporting import reports
from ood.system.device import describe
from ood.reporting.commit import check_targets, transaction
from ood.evaluation.comparisons import reconcile
from ood.errors import UserError
from ood.evaluation.protocols import AUROC_SMALL_SET, FPR95_THRESHOLD_IMAGES, MIN_INTERVAL_IMAGES
from ood.evaluation.rows import PROVENANCE, assign_labels, dist_key, row_key, table_groups, variant_of
from ood.io import atomic_path, write_text


# The files the tools write into their folders, relative to the folder: the one list from which what a
# run may write, what it moves to previous/ and which folders must be writable are derived (ood.reporting.commit).
# Everything else in a folder is the user's and is never moved.
RESULTS_FILES = ("results.json", "results.csv", "results.md", "results.tex", "scores.npz", "bootstrap.npz",
                 "plots/hist_*.png", "plots/roc_*.png", "plots/forest_*.png")
SWEEP_FILES = ("sweep.json", "sweep.md", "sweep_*.png", "selected.md", "selected.json",
               "reclag_operating_point.png", "reclag_operating_point.csv", "reclag_operating_point.json")


# What a caption says of a FPR95 variant whose convention differs from the paper's (ood.evaluation.metrics).
VARIANT_NOTES = {"openood": " (OpenOOD's: OOD positive, the share of ID inputs rejected at 95 % OOD recall; "
                            "trapezoid AUPRs)"}


def benchmark_note(row):
    """" (OpenOOD v1.5)" for a row of a benchmark other than the paper's, "" otherwise."""
    name = row.get("benchmark")
    if not name:
        return ""
    try:
        return f" ({get_benchmark(name).label})"
    except UserError:  # a row written by a version that knew another benchmark
        return f" ({name})"


def fsood_note(rows):
    """What a table of OpenOOD's full-spectrum setting (--fsood) counts as ID, its ACC included; "" for
    another table."""
    if not rows or not rows[0].get("fsood"):
        return ""
    sets = list(dict.fromkeys(c for r in rows for c in r.get("csid_sets") or ()))
    return (f", full-spectrum setting (OpenOOD's fsood: ID = the ID test set followed by the covariate-shifted ID "
            f"set{'s' if len(sets) > 1 else ''} {', '.join(sets)}, each OOD set against all of them)")


def caption(rows):
    r = rows[0]
    text = f"{r['id_dataset']}{benchmark_note(r)}{fsood_note(rows)}, {r['model']} @ {r['input_size']}px, " \
           f"{r['protocol']} protocol"
    if r["protocol"] == "paper":
        full = sorted({x["label"] for x in rows if x["seed"] is None})
        sampled = [x for x in rows if x["seed"] is not None]
        text += " (each score as its published row was produced: "
        if full:
            text += f"{', '.join(full)} on every OOD image, FPR95 at the first ROC point with TPR > 95 %"
        if sampled:
            text += ("; " if full else "") + (f"the others {sampled[0]['repeats']} draws of {sampled[0]['n_ood']} "
                                              f"OOD images, seed {sampled[0]['seed']}, FPR95 at the recall "
                                              f"closest to 95 %")
        text += ")"
    elif r["protocol"] == "sampled":
        text += f" ({r['repeats']} draws, seed {r['seed']})"
    if r["protocol"] != "paper":
        text += f", FPR95 variant {r['fpr_variant']}{VARIANT_NOTES.get(r['fpr_variant'], '')}"
    if r.get("train_precision"):
        text += f", backbone trained in {r['train_precision']}"
        trained = sorted({x["train_environment"]["device"] for x in rows if x.get("train_environment")})
        text += f" on {' and '.join(trained)}" if trained else ""
    if (r.get("preprocessing") or {}).get("source") == "backbone":
        text += f", the backbone's own preprocessing ({r['preprocessing']['transform']})"
    if r.get("feature_precision", "fp32") != "fp32":
        text += f", {r['feature_precision']} features"
    if r.get("subset"):
        text += f", subset {r['subset']}"
    ran = sorted({describe(r["environment"]) for r in rows if r.get("environment")})
    if ran:
        text += f"; scored on {' and '.join(ran)}"
    replicated = sorted({r["label"] for r in rows if len(r.get("replicate_metrics") or []) > 1})
    boot = r.get("bootstrap")
    if replicated:
        fits = max(len(x.get("replicate_metrics") or []) for x in rows)
        text += f"; {', '.join(replicated)}: mean " + ("" if boot else "± std ") + f"over {fits} fits"
    metrics = reports.table_metrics(rows)
    text += f"; {reports.units(metrics)}"
    if r.get("fsood") and any(x.get("fsood_accuracy") is not None for x in rows):
        text += (", ID Acc.: the backbone's accuracy over the ID test set and the covariate-shifted ID sets pooled, "
                 "in % (OpenOOD's ACC in the full-spectrum setting)")
    elif any(x.get("id_accuracy") is not None for x in rows):
        text += ", ID Acc.: the backbone's ID test accuracy in %"
    chance = reports.chance_note(rows)  # first, where a reader of the table cannot miss it
    text = f"WARNING: {chance}. {text}" if chance else text
    if not boot:
        return text
    pct = f"{100 * boot['level']:g} %"
    text += (f"; ± half the width of the {pct} interval from the stratified bootstrap ({boot['resamples']} "
             f"resamples, seed {boot['seed']}): AUROC's on the logit scale (Newcombe's score interval at 0 or 1), "
             f"FPR95's Wilson interval at the bootstrap's effective sample size"
             + (", the AUPRs' percentile interval" if len(metrics) > 2 else "")
             + "; both ends in results.json and results.csv")
    if r["protocol"] == "paper":
        text += "; best in bold (the scores' rows differ in draws: no ties are tested)"
    else:
        text += (f"; bold: the best and every score not significantly worse than another (paired bootstrap, all "
                 f"pairs of the column at once by the max-t: at most {100 * (1 - boot['level']):.3g} % chance "
                 f"that any score tied with the best is left unbolded)")
    return text + marks_note(rows)


def marks_note(rows):
    """What the marks after a table's values mean (ood.reporting.reports.row_marks), for the marks its rows carry."""
    text = ""
    if any(r.get("intervals_note") for r in rows):
        text += (f"; {reports.FEW_MARK}: too few images for an interval or a test (fewer than {MIN_INTERVAL_IMAGES} "
                 f"in the ID test set or the OOD set): no interval, and bold there is the best value only, not a test")
    why = ([f"FPR95's, its 95 % threshold being placed by fewer than {FPR95_THRESHOLD_IMAGES} images"]
           if any(r.get("fpr95_ci_note") for r in rows) else [])
    why += ([f"AUROC's, from a set of fewer than {AUROC_SMALL_SET} images"]
            if any(r.get("auroc_ci_note") for r in rows) else [])
    if why:
        text += f"; {reports.APPROX_MARK}: the interval is approximate ({'; '.join(why)})"
    return text


class ResultsFolder:
    def __init__(self, path):
        self.path = Path(path)

    def check_writable(self):
        """Before any long work: the folder, its plots/ and previous/ (when they exist) are writable."""
        check_targets(self.path, RESULTS_FILES, "--results_dir")

    def read(self):
        f = self.path / "results.json"
        if not f.exists():
            return []
        try:
            return json.loads(f.read_text(encoding="utf-8"))["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{f} exists but is not a results.json of this project; move it away or choose "
                            f"another --results_dir.") from None

    def write(self, rows, order=None, per_sample=None, save_scores=False, plot=False, log=print, dists=None,
              reference=None):
        """Merge ``rows`` into the folder and (re)write its files. ``order`` maps score names to their
        table position; ``per_sample`` maps (score, variant_of(row)) to {set name: scores, or
        {replicate: scores}}; ``dists`` maps dist keys to the rows' bootstrap distributions; ``reference``
        is the score this run compared with ("none", or None: see ood.evaluation.comparisons.reconcile).
        Returns the Markdown of the tables that hold the new rows."""
        order = order or {}
        moved = None
        with transaction(self.path, RESULTS_FILES, "--results_dir", log) as t:  # every file below is staged
            old = self.read()
            if old and any([o.get(k) for k in PROVENANCE] != [rows[0].get(k) for k in PROVENANCE]
                           for o in old):
                moved = t.archive()
                old = []
            fresh = {row_key(r) for r in rows}
            merged = assign_labels([r for r in old if row_key(r) not in fresh] + list(rows))
            merged.sort(key=lambda r: (order.get(r["score"], 1000), r["label"]))
            kept = self._write_dists(merged, dists or {}, t.stage / "bootstrap.npz", keep=not moved)
            merged = reconcile(merged, kept, {dist_key(r) for r in rows}, reference)
            groups = table_groups(merged)
            if (per_sample and save_scores) or t.will_remain("scores.npz"):
                self._write_scores(merged, per_sample, t.stage / "scores.npz", keep=not moved)
            if per_sample and (plot or t.will_remain("plots")):
                self._plot(merged, per_sample, t.stage, kept)
            md = "\n".join(_markdown(g, kept) for g in groups)
            write_text(md, t.stage / "results.md")
            write_text("\n".join(reports.csv_table(g, kept) for g in groups), t.stage / "results.csv")
            write_text("\n".join(reports.latex(g, caption(g), kept) for g in groups), t.stage / "results.tex")
            write_text(json.dumps({"rows": merged}, indent=1) + "\n", t.stage / "results.json")
        if moved:
            log(f"note: {self.path} held results of another checkpoint or ID test set; they were moved to "
                f"{moved}/")
        new = {row_key(r) for r in rows}
        return "\n".join(_markdown(g, kept) for g in groups if any(row_key(r) in new for r in g))

    def _write_dists(self, merged, dists, dest, keep=True):
        """bootstrap.npz (written to ``dest`` when any row has a distribution): each row's bootstrap
        distribution (len(METRICS) x resamples, float32) under '__keys__' order; rows kept from earlier runs
        keep theirs (``keep``: the folder's file is not being archived). Returns {row key: distribution}
        of the rows in ``merged``, as float32, which every table is computed from."""
        found = read_dists(self.path / "bootstrap.npz") if keep else {}
        found.update({k: np.asarray(v, np.float32) for k, v in dists.items()})
        wanted = [dist_key(r) for r in merged if r.get("bootstrap")]
        kept = {k: found[k] for k in wanted if k in found}
        if kept:
            keys = list(kept)
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, __keys__=np.array(json.dumps(keys)),
                                        **{f"d{i}": kept[k] for i, k in enumerate(keys)})
        return kept

    def _labels(self, merged, per_sample):
        by = {(r["score"], variant_of(r)): r["label"] for r in merged}
        return {by[k]: v for k, v in per_sample.items() if k in by}

    def _write_scores(self, merged, per_sample, dest, keep=True):
        """scores.npz (written to ``dest``): '<label>/<set>' -> per-sample scores in input order
        ('<label>@<seed>/<set>' per replicate of a replicated score), and '__index__', which says what
        each key is so that entries of rows kept from earlier runs are kept (``keep``: the folder's
        scores.npz is not being archived), re-keyed when their label changes. Entries are merged per
        image set, as rows are merged per OOD set: a run of MSP against one new set replaces MSP's
        entries of that set (and of the ID test set, which every run scores) and keeps those of the
        sets it did not score, whose rows the folder keeps."""
        f = self.path / "scores.npz"
        entries = {}  # (score, variant, set, replicate) -> array
        if keep and f.exists():
            try:
                with np.load(f) as old:
                    index = json.loads(str(old["__index__"])) if "__index__" in old.files else {}
                    entries = {tuple(v): old[k] for k, v in index.items() if k in old.files}
            except Exception as e:  # a truncated or foreign file: refused, as writing over it would lose it
                raise UserError(f"{f} exists but cannot be read ({type(e).__name__}); move it away (its "
                                f"per-sample scores would otherwise be lost) and run again.") from None
        current = {(r["score"], variant_of(r)): r["label"] for r in merged}
        entries = {k: v for k, v in entries.items() if (k[0], k[1]) in current}
        for (score, variant), sets in (per_sample or {}).items():
            entries = {k: v for k, v in entries.items() if (k[0], k[1], k[2]) not in
                       {(score, variant, name) for name in sets}}
            for name, values in sets.items():
                for rep, v in (values.items() if isinstance(values, dict) else [("", values)]):
                    entries[(score, variant, name, rep)] = np.asarray(v)
        arrays, index = {}, {}
        for (score, variant, name, rep), v in entries.items():
            key = f"{current[(score, variant)]}{'@' + rep if rep else ''}/{name}"
            arrays[key], index[key] = v, [score, variant, name, rep]
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, __index__=np.array(json.dumps(index)), **arrays)

    def _plot(self, merged, per_sample, dest, dists=None):
        plain = {}
        csid = {c for r in merged for c in r.get("csid_sets") or ()}  # ID images: not plotted as OOD sets
        for label, sets in self._labels(merged, per_sample).items():
            plain[label] = {k: (next(iter(v.values())) if isinstance(v, dict) else v) for k, v in sets.items()
                            if k not in csid}
        reports.plot(plain, dest)
        for i, g in enumerate(table_groups(merged)):  # one forest plot per table that has intervals
            if any(r.get("auroc_ci") for r in g):
                reports.forest(g, dists, dest / "plots" / f"forest_{i + 1}.png", caption(g))


def read_dists(path):
    """{dist key: distribution (float32)} of a folder's bootstrap.npz; {} when it is missing or unreadable
    (its rows then lose their ties and averages' intervals, nothing else)."""
    if not Path(path).exists():
        return {}
    try:
        with np.load(path) as npz:
            keys = json.loads(str(npz["__keys__"]))
            return {k: npz[f"d{i}"] for i, k in enumerate(keys) if f"d{i}" in npz.files}
    except Exception as e:  # a truncated or foreign file (zipfile.BadZipFile, ValueError, KeyError, ...)
        warnings.warn(f"{path} could not be read ({type(e).__name__}); its distributions are not used.")
        return {}


def _markdown(rows, dists):
    """One table's Markdown: its caption and table, then the paired differences against the reference
    score when its rows have them."""
    text = f"{caption(rows)}\n\n{reports.markdown(rows, dists)}"
    vs = reports.comparison_markdown(rows, dists)
    return text + (f"\n{reports.comparison_caption(rows)}\n\n{vs}" if vs else "")


def default_folder(setup):
    return Path("results") / setup.id_set.key / setup.store_name
