#!/usr/bin/env python3
"""Score the ID test set and the OOD sets with the paper's six scores (MSP, Energy, ReAct, HE, SHE,
RecLag), every registered score (--score extended) or a score of your own (--score package.module:Class),
from the cached features (the backbone runs only for an image set whose cache is missing or stale), and
report AUROC, AUPR and FPR95 (ID positive) in results.json / .csv / .md / .tex, optional per-sample scores
and plots. Rows are merged into the results folder by key (see docs/cli.md, "Outputs").

Example:  python test_score_ood_detection.py --dataset cifar10 --model resnet18 --score all
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("evaluate", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    rows = api.evaluate(api.parse("evaluate", argv, __doc__))
    print(rows.table, end="")
    print(f"results in {rows.folder}/ ({rows.seconds:.1f} s)")
    return rows


if __name__ == "__main__":
    main()
