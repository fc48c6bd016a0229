#!/usr/bin/env python3
"""Run the backbone once over the ID training set, the ID test set and the OOD sets, cache the
penultimate features (stored_pattern/<dataset>/<model>/features/<set>.pt), and fit the stored patterns
of the scores that need them (patterns/<score>-<settings>.pt: HE, SHE, ReAct, RecLag, ...).

Example:  python generate_stored_pattern.py --dataset cifar10 --model resnet18 --dataset_path ./data
Several GPUs:  torchrun --nproc_per_node 4 generate_stored_pattern.py ...  (each image set is split across
the processes and gathered in its original order)
"""
import sys
import time

import scores
from ood.data import ood_help
from ood.runtime.entry import cli_main
from ood.cache.features import TEST, TRAIN
from ood.runtime.run import open_run, script_parser


def _own(g):
    g.add_argument("--ood", nargs="*", default=None,
                   help=f"to extract; with no name, none. {ood_help()}")


def build_parser(argv=None):
    return script_parser(__doc__, argv, "stored patterns", own=_own, score=(
        "extended", "scores whose stored patterns to fit (extended: every registered score that has one)"))


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    wanted = [(c, {}) for c in scores.resolve_names(args.score) if c.needs_fit()]
    with open_run(args, wanted, sets=(TRAIN, TEST)) as run:
        t0 = time.time()
        train = run.store.features(TRAIN)
        run.feature_sets()
        run.close()  # under torchrun, rank 0 alone goes on to fit the stored patterns
        if run.rank != 0:
            return
        for score in run.scores:
            run.store.pattern(score)
        print(f"stored patterns of {run.setup.id_set.name}/{run.setup.model.name} in {run.store.root} "
              f"({len(train['features'])} training features, {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
