"""scripts/gpu_check.py on the CPU with small shapes: every section runs and is written, so the one device
call is not where the script first runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import datagen
import scores

pytestmark = pytest.mark.slow  # see pytest.ini

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_cpu(tmp_path):
    datagen.write_fashion_mnist(tmp_path / "data", n_train=200, n_test=60)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_check.py"), "--device", "cpu", "--quick",
                           "--epochs", "1", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "out/gpu_check.json").read_text())
    for name in ("throughput", "loader", "real_data", "scale", "cpu_step"):
        assert "error" not in res[name] and "skipped" not in res[name], (name, res[name])
    assert set(res["throughput"]["training_bf16"]) == {"resnet18", "resnet34", "wrn"}
    c = res["throughput"]["compile_resnet18"]
    assert c["backend"] == "eager" and c["eager_img_s"] > 0 and c["compiled_img_s"] > 0
    assert res["throughput"]["training_compiled"] == {}  # --quick does not compile with Inductor
    runs = {k: v for k, v in res["real_data"].items() if k != "seconds"}
    assert set(runs) == {"resnet18", "wrn", "resnet18_near_ood"}
    assert all(0 <= r["test_acc"] <= 1 and "| RecLag |" in r["table"] for r in runs.values())
    assert all(f"| {name} |" in runs["wrn"]["table"] for name in scores.names())  # every registered score
    assert "HeldOut FPR95" in runs["resnet18_near_ood"]["table"]
    assert {"KNN", "Mahalanobis", "RMD"} <= set(res["scale"])
    assert res["gpu_hours"]["one_seed_hours_with_loader"] > 0
    md = (tmp_path / "out/gpu_check.md").read_text()
    assert md.startswith("# GPU check: cpu") and "GPU-hours" in md and "torch.compile (eager)" in md


def test_gpu_hours_count_the_compiled_rates_and_the_compilation(monkeypatch):
    """The grid's 100-epoch runs compile (--compile auto): its hours use the compiled rates plus the
    measured compilation, and the eager rates when the compiled ones were not measured."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import gpu_check
    eager = {"resnet18": 5000.0, "resnet34": 3000.0, "wrn": 10000.0}
    compiled = {m: 2 * v for m, v in eager.items()}
    t = {"training_bf16": eager, "training_compiled": compiled, "extraction_resnet18": {"pipeline_img_s": 8000.0},
         "compile_resnet18": {"compile_s": 36.0}}
    g = gpu_check.GRID
    h = gpu_check.gpu_hours({"throughput": t, "loader": {}})
    assert h["compiled"]
    for m, rate in compiled.items():
        ext = 8000.0 * rate / compiled["resnet18"]
        expect = (g["epochs"] * g["train"] / rate + 36.0 + (g["epochs"] * g["test"] + g["extracted"]) / ext) / 3600
        assert h["per_backbone"][m]["hours_per_dataset_and_seed_gpu_bound"] == pytest.approx(expect)
    plain = gpu_check.gpu_hours({"throughput": {**t, "training_compiled": {}}, "loader": {}})
    assert not plain["compiled"] and plain["one_seed_hours_gpu_bound"] > h["one_seed_hours_gpu_bound"]
    assert plain["per_backbone"]["wrn"]["train_img_s"] == 10000.0
