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
import argparse
import warnings
from pathlib import Path

import scores
from ood.runtime import options as cli
from ood.reporting.aggregate import aggregate, find_results, load_runs, write
from ood.runtime.entry import cli_main
from ood.io import check_writable_dir


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files, or folders searched recursively for results.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ddof", type=int, default=0, choices=[0, 1],
                   help="std over runs: 0 = population std (numpy.std, as the sampled protocol), 1 = sample std")
    p.add_argument("--allow_mixed", action="store_true",
                   help="average runs even when they differ in a score's settings or in the FPR95 variant, "
                        "input size, precision, subset or number of draws (by default that is an error "
                        "naming the difference)")
    p.add_argument("--no_plot", dest="plot", action="store_false", help="skip aggregate.png")
    p.add_argument("--no-plot", dest="plot", action="store_false", help=argparse.SUPPRESS)  # earlier spelling
    p.add_argument("--quiet", action="store_true", help="do not print the tables")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    for d in (Path(args.out), Path(args.out) / "tables"):  # what write() writes into, checked before reading
        check_writable_dir(d, "--out")
    files = find_results(args.results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agg = aggregate(load_runs(files), args.ddof, {c.name: c.order for c in scores.registered()},
                        args.allow_mixed)
    for w in caught:
        print(f"warning: {w.message}")
    md = write(agg, args.out, figure=args.plot)
    if not args.quiet:
        print(md, end="")
    print(f"{len(files)} results.json file(s), {len(agg['groups'])} table(s) -> {args.out}/aggregate.{{md,csv,tex,json"
          f"{',png' if args.plot else ''}}}")
    return agg


if __name__ == "__main__":
    main()
