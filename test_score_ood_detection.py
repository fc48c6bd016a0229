#!/usr/bin/env python3
"""Score the ID test set and the OOD sets with the paper's six scores (MSP, Energy, ReAct, HE, SHE,
RecLag), every registered score (--score extended) or a score of your own (--score package.module:Class),
from the cached features (the backbone runs only for an image set whose cache is missing or stale), and
report AUROC, AUPR and FPR95 (ID positive) in results.json / .csv / .md / .tex, optional per-sample scores
and plots. Rows are merged into the results folder by key (see docs/cli.md, "Outputs").

Example:  python test_score_ood_detection.py --dataset cifar10 --model resnet18 --score all
"""
import sys
import time

import scores
from ood.errors import cli_main
from ood.results import RESULTS_FILES, ResultsFolder, variant_of
from ood.run import open_run, script_parser
from ood.scoring import compute, replicate_name, rows_for


def _own(g):
    g.add_argument("--save_scores", action="store_true", help="also write the per-sample scores.npz")
    g.add_argument("--plot", action="store_true", help="also write score histograms and ROC curves")


def build_parser(argv=None):
    return script_parser(__doc__, argv, "evaluation", results="results/<dataset>/<model>/", own=_own, score=(
        "all", "{names}; all (the paper's six), extended (every registered score), or package.module:Class "
               "for a score of your own"))


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    t0 = time.time()
    wanted = [(cls, {}) for cls in scores.resolve_names(args.score)]
    with open_run(args, wanted, results=("", RESULTS_FILES)) as run:
        sets = run.feature_sets()
        rows, per_sample = [], {}
        for objs in run.score_runs:
            states = [run.store.pattern(s) if s.needs_fit() else {} for s in objs]
            values = compute(objs, states, sets, run.head)
            new = rows_for(run.setup, objs, values, run.ood_names, run.evaluation, sets["id"])
            rows += new
            per_sample[(objs[0].name, variant_of(new[0]))] = {
                k: (v[0] if len(objs) == 1 else {replicate_name(s): x for s, x in zip(objs, v)})
                for k, v in values.items()}
        out = ResultsFolder(run.results)
        md = out.write(rows, order={c.name: c.order for c in scores.registered()}, per_sample=per_sample,
                       save_scores=args.save_scores, plot=args.plot)
    print(md, end="")
    print(f"results in {out.path}/ ({time.time() - t0:.1f} s)")
    return rows


if __name__ == "__main__":
    main()
