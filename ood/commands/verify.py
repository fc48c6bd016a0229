"""verify_data.py: whether the data sets a target needs are in place (counts, checksums), and with --download
fetching what is missing; with --checkpoints, the same for a benchmark's released checkpoints."""
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ood.data import BENCHMARKS, OOD_SETS, benchmark_names, get_benchmark
from ood.data.download import MIRROR_ENV, TIMEOUT, resolve_mirror
from ood.data.verify import check, csid_keys, downloadable, resolve_target, target_names
from ood.errors import UserError
from ood.io import check_writable_dir
from ood.runtime import options as cli
from ood.training import released


@dataclass(frozen=True)
class Verified:
    """The root and target checked, and the report (``table()``, ``summary()``, ``failures``, ``ok``);
    ``what``: "data", or "checkpoints" (--checkpoints: the root is --checkpoints_dir)."""
    root: Path
    target: str
    benchmark: str
    report: object
    what: str = "data"


def build_parser(argv=None, doc=__doc__):
    cli.load_data_plugins(argv)
    p = cli.parser(doc)
    cli.add_data_plugin(p)
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
    p.add_argument("--fsood", action="store_true",
                   help="under --benchmark openood: the target's covariate-shifted ID sets too (OpenOOD's "
                        "full-spectrum setting, test_score_ood_detection.py --fsood: cifar10c; imagenet_v2, "
                        "imagenet_c, imagenet_r; imagenet_es), and with --download their archives; without it "
                        "they are neither needed nor fetched (only --fsood runs read them)")
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
    p.add_argument("--checkpoints", action="store_true",
                   help="check the benchmark's released checkpoints instead of its data (with --download: fetch, "
                        "check and unpack them): under --benchmark openood, OpenOOD v1.5's ResNet-18 runs "
                        "s0/s1/s2 of cifar10, cifar100 and imagenet200, each best.ckpt loaded into its backbone, "
                        "and its ImageNet-1k ResNet-50s (imagenet)")
    p.add_argument("--checkpoints_dir", default=None, metavar="DIR",
                   help=f"with --checkpoints: the folder they unpack into, <DIR>/<run folder>/s<k>/best.ckpt "
                        f"(./results gives OpenOOD's own layout) [./{released.DEFAULT_DIR}/<benchmark>]")
    p.add_argument("--expect", action="append", default=[], metavar="SET=N",
                   help="expect N images in SET instead of the reference count (e.g. iSUN=8925, "
                        "cifar10/train=50000; under --benchmark openood, keys such as cifar10/val or cifar10/tin); "
                        "repeatable")
    return p


def run(args):
    """Check (and with --download fetch) the sets the target needs, or with --checkpoints the released
    checkpoints; returns a Verified."""
    resolve_target(args.target, args.benchmark)
    if args.fsood:
        csid_keys(BENCHMARKS.get(args.benchmark), args.target)  # a benchmark and target without csid sets: one line
    if args.checkpoints_dir is not None and not args.checkpoints:
        raise UserError("--checkpoints_dir says where --checkpoints looks for the released checkpoints; add "
                        "--checkpoints (or drop --checkpoints_dir to check the data).")
    _check_download_flags(args)
    if args.checkpoints and args.fsood:
        raise UserError("--fsood names the covariate-shifted ID sets; --checkpoints checks the released checkpoints "
                        "only (drop --fsood, or --checkpoints to check the data).")
    if args.checkpoints:
        return _checkpoints(args)
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
    mirror = None
    if args.download:
        mirror = resolve_mirror(args.mirror)
        check_writable_dir(root, "--dataset_path")
        root.mkdir(parents=True, exist_ok=True)
    report = check(root, args.target, args.ood, expected, args.download, benchmark=args.benchmark,
                   mirror=mirror, quiet=not sys.stderr.isatty(), timeout=args.timeout, fsood=args.fsood)
    return Verified(root, args.target, args.benchmark, report)


def _check_download_flags(args):
    if args.mirror is not None and not args.download:
        raise UserError("--mirror says where --download fetches the archives from; add --download (or drop "
                        "--mirror to only check the data).")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise UserError(f"--timeout {args.timeout:g}: give the seconds without data after which a download is "
                        f"given up, a finite number above 0.")


def _checkpoints(args):
    """--checkpoints: the benchmark's released checkpoints under --checkpoints_dir (ood.training.released)."""
    bench = get_benchmark(args.benchmark)
    if bench is None or not bench.checkpoints:
        with_some = [b.name for b in BENCHMARKS.values() if b.checkpoints]
        raise UserError(f"--checkpoints: --benchmark {args.benchmark} releases no checkpoints; "
                        f"{' and '.join(f'--benchmark {n}' for n in with_some) or 'no benchmark'} does.")
    for flag, value in (("--ood", args.ood), ("--expect", args.expect)):
        if value:
            raise UserError(f"{flag} names data sets; --checkpoints checks the released checkpoints only (drop "
                            f"{flag}, or --checkpoints to check the data).")
    root = Path(args.checkpoints_dir) if args.checkpoints_dir is not None else released.default_root(bench)
    mirror = None
    if args.download:
        mirror = resolve_mirror(args.mirror)
        check_writable_dir(root, "--checkpoints_dir")
        root.mkdir(parents=True, exist_ok=True)
    report = released.check(root, bench, args.target, args.download, mirror, quiet=not sys.stderr.isatty(),
                            timeout=args.timeout)
    return Verified(root, args.target, args.benchmark, report, "checkpoints")
