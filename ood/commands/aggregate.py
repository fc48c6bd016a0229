"""aggregate_results.py: mean and spread over runs (seeds, backbones) of results.json files."""
import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import scores
from ood.io import check_writable_dir
from ood.reporting.aggregate import aggregate, find_results, load_runs, write
from ood.runtime import options as cli


@dataclass(frozen=True)
class Aggregated:
    """``result``: the aggregate (groups, rows, as aggregate.json holds them); ``table``: aggregate.md's
    text; ``files``: the results.json files read."""
    result: dict
    table: str
    files: list


def build_parser(argv=None, doc=__doc__):
    p = cli.parser(doc)
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


def run(args):
    """Read, check, average and write; returns an Aggregated. Warnings about the runs are printed."""
    for d in (Path(args.out), Path(args.out) / "tables"):  # what write() writes into, checked before reading
        check_writable_dir(d, "--out")
    files = find_results(args.results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agg = aggregate(load_runs(files), args.ddof, {c.name: c.order for c in scores.registered()},
                        args.allow_mixed)
    for w in caught:
        print(f"warning: {w.message}")
    return Aggregated(agg, write(agg, args.out, figure=args.plot), files)
