"""test_score_ood_detection.py: score the ID test set and the OOD sets from the cached features, with the
paired comparisons against a reference score, into a results folder."""
import sys
import time

import scores
from ood.errors import UserError
from ood.evaluation.comparisons import against, planned
from ood.evaluation.protocols import mc_note
from ood.evaluation.rows import dist_key, row_key, variant_of
from ood.evaluation.scoring import RowSource, id_side, replicate_name, score_all
from ood.reporting.reports import chance_note
from ood.reporting.results import RESULTS_FILES, ResultsFolder, read_dists
from ood.runtime.run import open_run, script_parser


class Rows(list):
    """The rows a run wrote (as results.json has them), with ``table`` (the markdown tables it printed),
    ``folder`` (the results folder) and ``seconds``."""
    table = ""
    folder = None
    seconds = 0.0


def _own(g):
    g.add_argument("--save_scores", action="store_true", help="also write the per-sample scores.npz")
    g.add_argument("--plot", action="store_true",
                   help="also write score histograms, ROC curves and a forest plot of the AUROCs with their intervals")
    g.add_argument("--compare_to", default=None, metavar="SCORE",
                   help="the reference of the paired comparisons: each other score's AUROC and FPR95 difference to "
                        "it on every OOD set, with its interval and p-values (DeLong's test for AUROC, the paired "
                        "permutation test for FPR95, the paired bootstrap); "
                        "a score of this run, or one already in the results folder (then from its stored bootstrap "
                        "distributions, which must come from this run's protocol, draws, FPR95 variant and "
                        "bootstrap); default: RecLag when the run scores it, else the folder's reference; "
                        "none: no comparisons")


def build_parser(argv=None, doc=__doc__):
    return script_parser(doc, argv, "evaluation", results="results/<dataset>/<model>/", own=_own, score=(
        "all", "{names}; all (the paper's six), extended (every registered score), or package.module:Class "
               "for a score of your own"))


def run(args):
    """Score, evaluate and write; returns the Rows. Notes and warnings are printed as the run goes."""
    t0 = time.time()
    wanted = [(cls, {}) for cls in scores.resolve_names(args.score)]
    reference = reference_of(args, wanted)
    compare = reference not in (None, "none")
    with open_run(args, wanted, results=("", RESULTS_FILES)) as run:
        out = ResultsFolder(run.results)
        check_reference(reference, wanted, out, run.evaluation)
        sets = run.feature_sets()
        rows, per_sample, dists, kept = Rows(), {}, {}, {}
        for objs, values, new in score_all(run.score_runs, run.store.pattern, sets, run.head,
                                           RowSource.of_setup(run.setup), run.ood_names, run.evaluation, dists,
                                           run.csid_names):
            rows += new
            per_sample[(objs[0].name, variant_of(new[0]))] = {
                k: (v[0] if len(objs) == 1 else {replicate_name(s): x for s, x in zip(objs, v)})
                for k, v in values.items()}
            if compare and run.evaluation.intervals:  # what DeLong's test needs
                ids = id_side(values, run.csid_names)["id"]  # under --fsood, ID test and csid sets
                kept.update({(objs[0].name, o): (ids, values[o]) for o in run.ood_names})
        if compare and run.evaluation.intervals:
            rows = Rows(against(rows, dists, reference, kept))
        note = mc_note(rows) if run.evaluation.intervals else None
        if note:
            print(note)
        chance = chance_note(rows)
        if chance:
            print(f"warning: {chance}.", file=sys.stderr, flush=True)
        rows.table = out.write(rows, order={c.name: c.order for c in scores.registered()}, per_sample=per_sample,
                               save_scores=args.save_scores, plot=args.plot, dists=dists, reference=reference)
    if args.compare_to is not None and reference != "none":
        warn_uncompared(reference, rows, out)
    rows.folder, rows.seconds = out.path, time.time() - t0
    return rows


def reference_of(args, wanted):
    """The score the paired comparisons are against: --compare_to, else RecLag when the run scores it;
    "none" for none; None when neither (the folder's tables keep the reference they have)."""
    names = [cls.name for cls, _ in wanted]
    if args.compare_to is None:
        return next((n for n in names if n == "RecLag"), None)
    if args.compare_to.lower() == "none":
        return "none"
    if not getattr(args, "bootstrap", 0):
        raise UserError(f"--compare_to {args.compare_to} needs the bootstrap's resamples; --bootstrap 0 turns them off.")
    return next((n for n in names if n.lower() == args.compare_to.lower()), args.compare_to)


def check_reference(reference, wanted, folder, evaluation=None):
    """Before any work: a reference that this run does not score must have rows in the results folder
    with stored bootstrap distributions (its comparisons come from them), evaluated as this run evaluates
    (``evaluation``: protocol, FPR95 variant, resamples and, under sampled, the draws; not checked under
    paper, where each score has its own)."""
    names = [cls.name for cls, _ in wanted]
    if reference in (None, "none") or reference in names:
        return
    theirs = [r for r in folder.read() if r["score"].lower() == reference.lower()]
    if not theirs:
        raise UserError(f"--compare_to {reference}: neither among this run's scores ({', '.join(names)}) nor in "
                        f"{folder.path}/results.json; add it to --score, or give --compare_to none.")
    stored = read_dists(folder.path / "bootstrap.npz")
    if not any(r.get("bootstrap") and dist_key(r) in stored for r in theirs):
        raise UserError(f"--compare_to {reference}: its rows in {folder.path}/results.json have no stored bootstrap "
                        f"distributions (scored with --bootstrap 0, by an earlier version, or bootstrap.npz is gone), "
                        f"so nothing can be compared with them; add {reference} to --score to score it in this run, "
                        f"or give --compare_to none.")
    want = planned(evaluation) if evaluation is not None else None
    if want is None:
        return
    with_dists = [r for r in theirs if dist_key(r) in stored]
    differ = [[k for k, v in want.items() if r.get(k) != v] for r in with_dists]
    if all(differ):  # every stored row of the reference differs from this run in a setting
        k, row = differ[0][0], with_dists[0]
        raise UserError(f"--compare_to {reference}: its rows in {folder.path}/results.json were evaluated with {k} "
                        f"{_setting(k, row.get(k))}, this run with {k} {_setting(k, want[k])}, so their bootstrap "
                        f"distributions are not paired with this run's; add {reference} to --score to score it in "
                        f"this run, run with its settings, or give --compare_to none.")


def _setting(key, value):
    if key == "bootstrap" and value:
        return f"{value['resamples']} resamples at level {value['level']:g}, seed {value['seed']}"
    if key == "fsood":
        return "on (the covariate-shifted ID sets counted as ID)" if value else "off"
    return str(value)


def warn_uncompared(reference, rows, folder):
    """After the run: a warning naming the OOD sets where this run's rows got no comparison with the
    --compare_to ``reference`` (its rows there missing, without a stored distribution, or evaluated on other
    draws, FPR95 variant or resamples), so that a comparison asked for is never dropped unsaid."""
    mine = {row_key(r) for r in rows if r["score"].lower() != reference.lower()}
    missing = sorted({r["ood_dataset"] for r in folder.read() if row_key(r) in mine and not r.get("vs")})
    if missing:
        print(f"warning: --compare_to {reference}: no comparison with {reference} on {', '.join(missing)} "
              f"({reference}'s rows there are missing, have no stored bootstrap distribution, or were evaluated "
              f"on other draws, FPR95 variant or resamples); add {reference} to --score to score it in this run "
              f"with the same settings.", file=sys.stderr, flush=True)
