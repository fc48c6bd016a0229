#!/usr/bin/env python3
"""Combine results.json files of test_score_ood_detection.py (several seeds, backbones, data sets or
protocols) into one table: mean ± std over the runs (one run = one results.json) of FPR95 and AUROC
(and AUPR) for every id_dataset / model / protocol / score / OOD set.

Writes into --out: aggregate.md and aggregate.tex (one table per id_dataset, model and protocol, in the
paper's layout), aggregate.csv (every cell on one line), aggregate.json (the rows, with the per-run
values), aggregate.png (grouped bars of FPR95 and AUROC per OOD set, one row of panels per table), and
tables/<id_dataset>_<model>_<protocol>.{md,csv,tex}.

Examples:
  python aggregate_results.py results/cifar10/seed1 results/cifar10/seed2 results/cifar10/seed3 --out results/cifar10/aggregate
  python aggregate_results.py results/ --out results/aggregate       # every results.json below results/
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("aggregate", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = api.parse("aggregate", argv, __doc__)
    done = api.aggregate(args)
    if not args.quiet:
        print(done.table, end="")
    print(f"{len(done.files)} results.json file(s), {len(done.result['groups'])} table(s) -> {args.out}/aggregate."
          f"{{md,csv,tex,json{',png' if args.plot else ''}}}")
    return done.result


if __name__ == "__main__":
    main()
