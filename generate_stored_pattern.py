#!/usr/bin/env python3
"""Run the backbone once over the ID training set, the ID test set and the OOD sets, cache the
penultimate features (stored_pattern/<dataset>/<model>/features/<set>.pt), and fit the stored patterns
of the scores that need them (patterns/<score>-<settings>.pt: HE, SHE, ReAct, RecLag, ...).

Example:  python generate_stored_pattern.py --dataset cifar10 --model resnet18 --dataset_path ./data
Several GPUs:  torchrun --nproc_per_node 4 generate_stored_pattern.py ...  (each image set is split across
the processes and gathered in its original order)
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("extract", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    done = api.extract(api.parse("extract", argv, __doc__))
    if done.rank == 0:
        print(f"stored patterns of {done.id_dataset}/{done.model} in {done.store} "
              f"({done.train_features} training features, {done.seconds:.1f} s)")


if __name__ == "__main__":
    main()
