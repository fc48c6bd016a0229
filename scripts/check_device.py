#!/usr/bin/env python3
"""Say which device the project's scripts will use here, and stop (exit status 2, one line) when this
machine has an NVIDIA GPU that this PyTorch cannot use (ood/system/device.py). The reproduce scripts run it
before any work; other options than --device are ignored, so they can pass on everything they got.

Example:  python scripts/check_device.py [--device cuda:0]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood.runtime import options as cli  # noqa: E402
from ood.system.device import describe, environment, resolve_device  # noqa: E402
from ood.runtime.entry import cli_main  # noqa: E402


@cli_main
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    env = environment(resolve_device(args.device))
    print(f"device: {describe(env)}")
    return env


if __name__ == "__main__":
    main()
