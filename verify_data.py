#!/usr/bin/env python3
"""Check that the data sets are in place before a long run: for every ID and OOD set under the data
root, whether it is there, how many images it holds against the reference protocol's count
(docs/method.md, "Data"), and the md5 of the files torchvision verifies (CIFAR, SVHN) and of any
downloaded archive lying in the root (e.g. <root>/LSUN.tar.gz, <root>/dtd-r1.0.1.tar.gz).

--download fetches what the target needs and is missing: every set with a public archive (fetched into
<root>/<file>.part, resumed when interrupted, checked against its md5 and member by member before it is
unpacked into its folder; the archive is kept in the root), the sets torchvision fetches (CIFAR, SVHN,
Fashion-MNIST) through torchvision, and for the others (ImageNet-1k) it prints where to get them.
--benchmark openood checks (and fetches, from Google Drive through gdown) OpenOOD v1.5's image lists and
images instead. --mirror URL (or the environment variable RECLAG_DATA_MIRROR) fetches every archive from
<URL>/<file name> instead, e.g. a lab server holding copies. A set that is complete is never fetched again;
a folder that exists but is incomplete is never written into (move it aside).

Exit status: 0 when every set the target needs is complete (count as expected, md5 ok where checked),
1 otherwise (or when a download failed: one line each, at the end), 2 for a usage error.

Examples:
  python verify_data.py --dataset_path ./data                        # everything the paper uses
  python verify_data.py --dataset_path ./data --for cifar10          # CIFAR-10 and its default OOD sets
  python verify_data.py --dataset_path ./data --for scripts/reproduce_imagenet.sh
  python verify_data.py --dataset_path ./data --for cifar100 --download   # fetch CIFAR-100 and its OOD sets
  python verify_data.py --dataset_path ./data --benchmark openood --for cifar10 --download
  python verify_data.py --dataset_path ./data --download --mirror http://lab-server/datasets
"""
import math
import sys
from pathlib import Path

from ood.runtime import options as cli
from ood.data import BENCHMARKS, OOD_SETS, benchmark_names
from ood.data.download import MIRROR_ENV, TIMEOUT, resolve_mirror
from ood.errors import UserError
from ood.runtime.entry import cli_main
from ood.io import check_writable_dir
from ood.data.verify import check, downloadable, resolve_target, target_names


def build_parser():
    p = cli.parser(__doc__)
    others = "; ".join(f"{b.name}: {', '.join(s.name for s in b.id_sets)}" for b in BENCHMARKS.values())
    p.add_argument("--dataset_path", default="./data", help="data root holding every data set (see README)")
    p.add_argument("--benchmark", choices=benchmark_names(), default="paper",
                   help="whose data sets: the paper's, or OpenOOD v1.5's image lists and images (openood)")
    p.add_argument("--for", dest="target", default="all", metavar="TARGET",
                   help=f"what the data is for, deciding which sets are needed: {', '.join(target_names())}; "
                        f"under another --benchmark, one of its ID sets or all ({others})")
    p.add_argument("--ood", nargs="+", default=None,
                   help=f"needed OOD sets instead of the target's: {' '.join(s.name for s in OOD_SETS.values())} "
                        "(case-insensitive, as in test_score_ood_detection.py), or NAME=PATH; under "
                        "--benchmark openood, names of the target's own OOD sets (e.g. tin mnist)")
    p.add_argument("--download", action="store_true",
                   help=f"fetch, check and unpack the needed sets that are missing: those with a public archive, "
                        f"and through torchvision {', '.join(downloadable())}; print the link and target folder "
                        f"of the others")
    p.add_argument("--mirror", default=None, metavar="URL",
                   help=f"with --download: fetch every archive from URL/<its file name> (an http(s):// or "
                        f"file:// URL, or a folder) instead of its own source; default: the environment "
                        f"variable {MIRROR_ENV}, when set")
    p.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                   help=f"with --download: give up on a URL whose server sends no data for SECONDS (a stalled "
                        f"mirror) [{TIMEOUT}]")
    p.add_argument("--expect", action="append", default=[], metavar="SET=N",
                   help="expect N images in SET instead of the reference count (e.g. iSUN=8925, "
                        "cifar10/train=50000; under --benchmark openood, keys such as cifar10/val or cifar10/tin); "
                        "repeatable")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    resolve_target(args.target, args.benchmark)
    root = Path(args.dataset_path)
    if not root.is_dir() and not args.download:
        raise UserError(f"--dataset_path {root} is not a directory. Pass the data root that holds the data "
                        f"sets (see the README's Data section), or add --download to create it.")
    if args.mirror is not None and not args.download:
        raise UserError("--mirror says where --download fetches the archives from; add --download (or drop "
                        "--mirror to only check the data).")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise UserError(f"--timeout {args.timeout:g}: give the seconds without data after which a download is "
                        f"given up, a finite number above 0.")
    expected = {}
    for item in args.expect:
        name, _, n = item.partition("=")
        if not name or not n.isdigit():
            raise UserError(f"--expect {item!r}: write it as SET=N, e.g. iSUN=8925.")
        expected[name] = int(n)
    mirror = None
    if args.download:
        mirror = resolve_mirror(args.mirror)
        check_writable_dir(root, "--dataset_path")
        root.mkdir(parents=True, exist_ok=True)
    report = check(root, args.target, args.ood, expected, args.download, benchmark=args.benchmark,
                   mirror=mirror, quiet=not sys.stderr.isatty(), timeout=args.timeout)
    bench = f", benchmark '{args.benchmark}'" if args.benchmark != "paper" else ""
    print(f"data root {root.resolve()}, target '{args.target}'{bench}")
    print(report.table())
    print(report.summary())
    sys.stdout.flush()
    for line in report.failures:  # --download: one line per archive that could not be fetched or unpacked
        print(f"download failed: {line}", file=sys.stderr)
    sys.stderr.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
