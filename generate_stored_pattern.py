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
from ood import accel, cli
from ood.data import get_id_set
from ood.device import describe
from ood.errors import cli_main
from ood.features import TEST, TRAIN, FeatureStore
from ood.scoring import context, resolve_oods
from ood.setup import Setup


def build_parser(argv=None):
    scores.load_plugins(argv)
    p = cli.parser(__doc__)
    cli.add_common(p)
    p.add_argument("--ood", nargs="*", default=None,
                   help="OOD sets to extract (default: all of the data set's protocol; none with --ood)")
    p.add_argument("--score", nargs="+", default=["extended"],
                   help="scores whose stored patterns to fit (default: every registered score that has one)")
    cli.add_store(p)
    scores.add_score_args(p)
    return p


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    classes = [c for c in scores.resolve_names(args.score) if c.needs_fit()]
    oods = resolve_oods(get_id_set(args.dataset, args.id_classes).default_ood if args.ood is None else args.ood)
    setup = Setup.from_args(args, training=False)
    print(f"device: {describe(setup.environment)}")
    store = FeatureStore(setup, args.stored_pattern_dir)
    store.check([TRAIN, TEST, *oods])  # every set is there and readable, the cache writable, before extraction
    head = store.head()
    fits = [s for cls in classes for s in scores.instances(cls, scores.given_settings(cls, args),
                                                           context(setup, head), setup.device)]
    store.check_patterns(fits)
    t0 = time.time()
    train = store.features(TRAIN)
    store.features(TEST)
    for o in oods:
        store.features(o)
    accel.teardown()  # under torchrun, rank 0 alone goes on to fit the stored patterns
    if store.rank != 0:
        return
    for score in fits:
        store.pattern(score)
    print(f"stored patterns of {setup.id_set.name}/{setup.model.name} in {store.root} "
          f"({len(train['features'])} training features, {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
