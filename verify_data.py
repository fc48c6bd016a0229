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
images instead; with --fsood its covariate-shifted ID sets too (the full-spectrum setting). --mirror URL
(or the environment variable RECLAG_DATA_MIRROR) fetches every archive from <URL>/<file name> instead, e.g.
a lab server holding copies. A set that is complete is never fetched again; a folder that exists but is
incomplete is never written into (move it aside).

--checkpoints checks a benchmark's released checkpoints instead (--benchmark openood: OpenOOD v1.5's
ResNet-18 runs, <--checkpoints_dir>/<run folder>/s<k>/best.ckpt, each loaded into its backbone), and with
--download fetches, checks and unpacks them the same way (default folder ./checkpoints/openood).

Exit status: 0 when every set (or checkpoint) the target needs is complete (count as expected, md5 ok
where checked), 1 otherwise (or when a download failed: one line each, at the end), 2 for a usage error.

Examples:
  python verify_data.py --dataset_path ./data                        # everything the paper uses
  python verify_data.py --dataset_path ./data --for cifar10          # CIFAR-10 and its default OOD sets
  python verify_data.py --dataset_path ./data --for scripts/reproduce_imagenet.sh
  python verify_data.py --dataset_path ./data --for cifar100 --download   # fetch CIFAR-100 and its OOD sets
  python verify_data.py --dataset_path ./data --benchmark openood --for cifar10 --download
  python verify_data.py --benchmark openood --checkpoints --for cifar10 --download   # OpenOOD's best.ckpt
  python verify_data.py --dataset_path ./data --benchmark openood --for cifar10 --fsood --download   # + cifar10c
  python verify_data.py --dataset_path ./data --download --mirror http://lab-server/datasets
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("verify", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    done = api.verify(api.parse("verify", argv, __doc__))
    bench = f", benchmark '{done.benchmark}'" if done.benchmark != "paper" else ""
    print(f"{done.what} root {done.root.resolve()}, target '{done.target}'{bench}")
    print(done.report.table())
    print(done.report.summary())
    sys.stdout.flush()
    for line in done.report.failures:  # --download: one line per archive that could not be fetched or unpacked
        print(f"download failed: {line}", file=sys.stderr)
    sys.stderr.flush()
    return 0 if done.report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
