"""scripts/benchmark.py --quick runs and writes every figure docs/performance.md quotes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import scores
from ood.data import get_id_set

pytestmark = pytest.mark.slow  # see pytest.ini

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/benchmark.py"), "--quick", "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for m in ("cnn", "resnet18", "wrn"):
        e = res["extraction"][m]
        assert e["pipeline_img_s"] > 0 and e["bare_img_s"] > 0 and e["ratio"] > 0
        assert e["channels_last"] is True  # the layout a CPU extracts in by default
    assert res["extraction"]["cnn"]["id_set"] == "fashionmnist" and res["machine"]["cpu"]
    assert "bf16_vs_fp32_pipeline_speed" in res["extraction"]["wrn"]
    s = res["scoring"]
    assert s["six_scores_s"] > s["one_score_s"] > 0 and s["ratio_with_backbone_pass"] >= 1
    paper = scores.paper_scores()
    n_ood = len(get_id_set("cifar10").default_ood)  # the CIFAR protocol's OOD sets, as declared
    reference = sum(1 + n_ood + c.needs_fit() for c in paper)  # one script per score: ID test, OOD sets, train if fitted
    assert s["scores"] == [c.name for c in paper]
    assert s["extended"]["scores"] == scores.names() and s["extended"]["ratio_to_backbone_pass"] > 0
    ours = 2 + n_ood  # ID train and test, each OOD set
    assert s["backbone_passes_per_table"] == {"ours": ours, "reference": reference, "ratio": reference / ours}
    assert res["he"]["he_gflops"] > 0 and res["he"]["matmul_gflops"] > 0
    c = res["cpu_demo_training"]
    assert set(c["img_s"]) == {"fp32", "bf16", "fp32+channels_last", "bf16+channels_last"}
    assert all(v > 0 for v in c["img_s"].values()) and c["auto_choice"][0] in ("off", "bf16")
    t = res["training_loop"]
    assert t["model"] == "cnn" and t["workers"] == 2 and t["pipeline_img_s"] > 0 and t["ratio"] > 0
    k = res["compile"]
    assert k["backend"] == "eager" and k["model"] == "cnn" and k["eager_img_s"] > 0 and k["compiled_img_s"] > 0
    saved = 1 / k["eager_img_s"] - 1 / k["compiled_img_s"]
    assert k["break_even_images"] == (pytest.approx(k["compile_s"] / saved) if saved > 0 else None)
    assert "7. --compile (eager), training cnn@28" in proc.stdout
    assert "1. extraction" in proc.stdout and "3. HE" in proc.stdout and "5. CPU training step" in proc.stdout
    assert "5. the demo's training loop" in proc.stdout


def test_benchmark_extraction_only(tmp_path):
    """--extraction_only: part 1 alone, one line per backbone naming its batch, workers and layout."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/benchmark.py"), "--quick", "--extraction_only",
                           "--device", "cpu", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["extraction"]) == {"cnn", "resnet18", "wrn"} and "scoring" not in res
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("1. extraction")]
    assert len(lines) == 3 and all("channels-last" in ln and "ratio" in ln for ln in lines)
