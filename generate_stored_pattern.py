#!/usr/bin/env python3
"""Run the backbone once over the ID training set, the ID test set and the OOD sets, cache the
penultimate features (stored_pattern/<dataset>/<model>/features/<set>.pt), and fit the stored patterns
of the scores that need them (patterns/HE.pt, SHE.pt, ReAct.pt, RecLag.pt).

Example:  python generate_stored_pattern.py --dataset cifar10 --model resnet18 --dataset_path ./data
Several GPUs:  torchrun --nproc_per_node 4 generate_stored_pattern.py ...  (each image set is split across
the processes and gathered in its original order)
"""
import time

import scores
from ood import accel, cli
from ood.errors import cli_main
from ood.pipeline import Run


def build_parser():
    p = cli.parser(__doc__)
    cli.add_common(p)
    p.add_argument("--ood", nargs="*", default=None,
                   help="OOD sets to extract (default: all of the data set's protocol; none with --ood)")
    p.add_argument("--score", nargs="+", default=["HE", "SHE", "ReAct", "RecLag"],
                   help="scores whose stored patterns to fit")
    p.add_argument("--stored_pattern_dir", default="stored_pattern")
    scores.add_score_args(p)
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    run = Run(args, args.stored_pattern_dir)
    names = scores.resolve_names(args.score)
    ood = run.id_set.default_ood if args.ood is None else args.ood
    t0 = time.time()
    train = run.features("train")
    run.features("test")
    for name in ood:
        run.features(name)
    accel.teardown()  # under torchrun, rank 0 alone goes on to fit the stored patterns
    if run.rank != 0:
        return
    opts = scores.options(args, run.spec, run.device)
    for name in names:
        score = scores.make_score(name, opts)
        if score.needs_fit:
            run.pattern(score)
    print(f"stored patterns of {run.id_set.name}/{args.model} in {run.root} "
          f"({len(train['features'])} training features, {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
