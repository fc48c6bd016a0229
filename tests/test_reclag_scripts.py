"""The RecLag benchmark and figure scripts run and write what they promise."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see pytest.ini
ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/benchmark_reclag.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for name in ("cifar10", "cifar100"):
        r = res["datasets"][name]
        assert r["batched"]["wall_s"] > 0 and r["loop"]["wall_s"] > 0
        assert r["speedup"] == r["speedup"] and r["max_abs_diff"] < 1e-2


def test_energy_landscape_figure(tmp_path):
    out = tmp_path / "fig.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/plot_energy_landscape.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20000
