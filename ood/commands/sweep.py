"""sweep_scores.py: sweep the declared settings of the scores from the cached features, choose settings on
validation sets, and draw RecLag's operating point."""
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ood.evaluation.rows import assign_labels
from ood.evaluation.scoring import RowSource, score_all
from ood.evaluation.sweep import cost_summary, grid_pairs, grid_plugins, parse_grid, resolve_grid, select
from ood.reporting import sweep as report
from ood.reporting.commit import transaction
from ood.reporting.results import SWEEP_FILES
from ood.runtime.run import open_run, script_parser
from ood.system.progress import track


@dataclass(frozen=True)
class Swept:
    """A sweep's rows (every grid point against every test OOD set), the table it prints, its folder,
    where an earlier sweep there was moved (or None), and its cost summary."""
    rows: list
    table: str
    folder: Path
    moved: Path | None
    cost: dict
    points: int


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



def build_parser(argv=None, doc=__doc__):
    argv = [*(argv or ()), *grid_plugins(argv)]  # a plug-in swept by --grid gets its flags too
    p = script_parser(doc, argv, "sweep", results="results/<dataset>/<model>/sweep/", own=_own)
    # a sweep compares settings, each row once; its tables show no intervals, so none are computed unless asked
    p.set_defaults(bootstrap=0)
    return p


class _Fits:
    """The stored patterns of a sweep's grid points: each fitted (or read) once per fit settings, and
    the seconds each fit took, per score."""

    def __init__(self, store):
        self.store, self.states, self.seconds = store, {}, {}

    def __call__(self, score):
        key = (type(score), json.dumps(score.fit_settings(), sort_keys=True))
        if key not in self.states:
            t0 = time.perf_counter()
            self.states[key] = self.store.pattern(score)
            self.seconds.setdefault(score.name, []).append(time.perf_counter() - t0)
        return self.states[key]


def run(args):
    """Sweep, select and write; returns a Swept."""
    asked = parse_grid(args.grid)
    with open_run(args, lambda ctx: grid_pairs(resolve_grid(asked, ctx)), results=("sweep", SWEEP_FILES),
                  validation=args.select_on) as run:
        grid = resolve_grid(asked, run.ctx)
        names, validation, out, store, head = run.ood_names, list(run.validation), run.results, run.store, run.head
        source = RowSource.of_setup(run.setup)
        sets = run.feature_sets()
        pair = run.validation_sets() if run.val_oods else None  # --select_on val: the ID val split and val OOD
        rows, val_rows, fits, points = [], [], _Fits(store), {}
        for (cls, _), objs in track(list(zip(run.wanted, run.score_runs)), "sweep", len(run.wanted),
                                    run.setup.quiet or run.rank != 0, size=lambda _: 1, unit="grid points"):
            t0 = time.perf_counter()
            for _, _, new in score_all([objs], fits, sets, head, source, names, run.evaluation,
                                       csid=run.csid_names):  # --fsood: the test rows' ID side
                rows += new
            if pair:
                for _, _, new in score_all([objs], fits, pair, head, source, run.val_names, run.evaluation):
                    val_rows += new
            points.setdefault(cls.name, []).append(time.perf_counter() - t0)
        labelled = assign_labels(rows + val_rows)  # one label per variant across both
        rows, val_rows = labelled[:len(rows)], labelled[len(rows):]
        passes = {k: float(v["seconds"]) for k, v in sets.items() if "seconds" in v}
        summary = cost_summary({"points": points, "fits": fits.seconds}, passes, store)
        if pair:
            validation = run.val_names
        selection = select(val_rows or rows, grid, validation) if validation else None
        with transaction(out, SWEEP_FILES) as t:  # a folder holds one sweep: an earlier one is kept aside
            moved = t.archive()
            table = report.write(t.stage, rows, grid, summary, selection, names, validation, val_rows)
            if args.operating_point:
                report.operating_point(t.stage, store, sets, head, run.ctx, run.setup, selection, args)
    return Swept(rows, table, out, moved, summary, sum(len(v) for v in points.values()))
