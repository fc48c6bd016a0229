#!/usr/bin/env python3
"""Score the ID test set and the OOD sets with the paper's six scores (MSP, Energy, ReAct, HE, SHE,
RecLag), every registered score (--score extended) or a score of your own (--score package.module:Class),
from the cached features (the backbone runs only for an image set whose cache is missing or stale), and
report AUROC, AUPR and FPR95 (ID positive) in results.json / .csv / .md / .tex, optional per-sample scores
and plots. Rows are merged into the results folder by key (see README, "Outputs").

Example:  python test_score_ood_detection.py --dataset cifar10 --model resnet18 --score all
"""
import sys
import time

import scores
from ood import cli
from ood.data import get_id_set
from ood.device import describe
from ood.errors import cli_main
from ood.evaluation import Evaluation
from ood.features import TEST, FeatureStore
from ood.results import ResultsFolder, default_folder, variant_of
from ood.scoring import compute, context, replicate_name, resolve_oods, rows_for
from ood.setup import Setup


def build_parser(argv=None):
    scores.load_plugins(argv)
    p = cli.parser(__doc__)
    cli.add_common(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--score", nargs="+", default=["all"],
                   help=f"{', '.join(scores.names())}; all (the paper's six), extended (every registered "
                        f"score), or package.module:Class for a score of your own")
    cli.add_evaluation(g)
    g.add_argument("--results_dir", default=None, help="default results/<dataset>/<model>/")
    g.add_argument("--save_scores", action="store_true", help="also write the per-sample scores.npz")
    g.add_argument("--plot", action="store_true", help="also write score histograms and ROC curves")
    scores.add_score_args(p)
    return p


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    t0 = time.time()
    classes = scores.resolve_names(args.score)
    oods = resolve_oods(args.ood or get_id_set(args.dataset, args.id_classes).default_ood)
    setup = Setup.from_args(args, training=False)
    evaluation = Evaluation.from_args(args)
    print(f"device: {describe(setup.environment)}")
    out = ResultsFolder(args.results_dir or default_folder(setup))
    out.check_writable()
    store = FeatureStore(setup, args.stored_pattern_dir)
    store.check([TEST, *oods])  # a missing set, a bad image file or an unwritable cache stops the run here
    head = store.head()
    ctx = context(setup, head, evaluation.protocol)
    runs = [scores.instances(cls, scores.given_settings(cls, args), ctx, setup.device) for cls in classes]
    store.check_patterns([s for objs in runs for s in objs])  # before any extraction

    id_feats = store.features(TEST)
    sets = {"id": id_feats, **{o.name: store.features(o) for o in oods}}
    rows, per_sample = [], {}
    for objs in runs:
        states = [store.pattern(s) if s.needs_fit() else {} for s in objs]
        values = compute(objs, states, sets, head)
        new = rows_for(setup, objs, values, [o.name for o in oods], evaluation, id_feats)
        rows += new
        per_sample[(objs[0].name, variant_of(new[0]))] = {
            k: (v[0] if len(objs) == 1 else {replicate_name(s): x for s, x in zip(objs, v)}) for k, v in values.items()}
    md = out.write(rows, order={c.name: c.order for c in scores.registered()}, per_sample=per_sample,
                   save_scores=args.save_scores, plot=args.plot)
    print(md, end="")
    print(f"results in {out.path}/ ({time.time() - t0:.1f} s)")
    return rows


if __name__ == "__main__":
    main()
