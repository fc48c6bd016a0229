#!/usr/bin/env python3
"""Check that the data sets are in place before a long run: for every ID and OOD set under the data
root, whether it is there, how many images it holds against the reference protocol's count
(docs/method.md, "Data"), and the md5 of the files torchvision verifies (CIFAR, SVHN) and of any
downloaded archive lying in the root (e.g. <root>/LSUN.tar.gz, <root>/dtd-r1.0.1.tar.gz).

Exit status: 0 when every set the target needs is complete (count as expected, md5 ok where checked),
1 otherwise, 2 for a usage error.

Examples:
  python verify_data.py --dataset_path ./data                        # everything the paper uses
  python verify_data.py --dataset_path ./data --for cifar10          # CIFAR-10 and its default OOD sets
  python verify_data.py --dataset_path ./data --for scripts/reproduce_imagenet.sh
  python verify_data.py --dataset_path ./data --for cifar100 --download   # fetch CIFAR-100 and SVHN
"""
import sys
from pathlib import Path

from ood import cli
from ood.data import OOD_SETS
from ood.errors import UserError, cli_main
from ood.verify import check, downloadable, resolve_target, target_names


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--dataset_path", default="./data", help="data root holding every data set (see README)")
    p.add_argument("--for", dest="target", default="all", metavar="TARGET",
                   help=f"what the data is for, deciding which sets are needed: {', '.join(target_names())}")
    p.add_argument("--ood", nargs="+", default=None,
                   help=f"needed OOD sets instead of the target's: {' '.join(s.name for s in OOD_SETS.values())} "
                        "(case-insensitive, as in test_score_ood_detection.py), or NAME=PATH")
    p.add_argument("--download", action="store_true",
                   help=f"fetch the needed sets torchvision can fetch ({', '.join(downloadable())}) and "
                        "print the link and target folder of the others")
    p.add_argument("--expect", action="append", default=[], metavar="SET=N",
                   help="expect N images in SET instead of the reference count (e.g. iSUN=8925, "
                        "cifar10/train=50000); repeatable")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    resolve_target(args.target)
    root = Path(args.dataset_path)
    if not root.is_dir() and not args.download:
        raise UserError(f"--dataset_path {root} is not a directory. Pass the data root that holds the data "
                        f"sets (see the README's Data section), or add --download to create it.")
    expected = {}
    for item in args.expect:
        name, _, n = item.partition("=")
        if not name or not n.isdigit():
            raise UserError(f"--expect {item!r}: write it as SET=N, e.g. iSUN=8925.")
        expected[name] = int(n)
    if args.download:
        root.mkdir(parents=True, exist_ok=True)
    report = check(root, args.target, args.ood, expected, args.download)
    print(f"data root {root.resolve()}, target '{args.target}'")
    print(report.table())
    print(report.summary())
    sys.stdout.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
