"""Precision on every machine: the ``--amp auto`` decision follows the CPU's bf16 capability probe (tested
by replacing the probe both ways, never by relying on the CPU the suite happens to run on), the bf16
path itself runs here whatever the CPU (emulated where bf16 is not native), and every result row says
what precision the backbone was trained in, so two tables of the same command on two CPUs can be told
apart. Every other test pins ``--amp off``."""
import json
from pathlib import Path

import pytest
import torch

import aggregate_results
import test_score_ood_detection
import train_model
from ood.system import accel

ARGS = ["--dataset", "fashionmnist", "--model", "tiny_models:no_norm_net", "--batch_size", "20", "--workers", "0",
        "--device", "cpu", "--quiet"]
TRAIN = ["--epochs", "1", "--lr", "0.05", "--augment", "none"]


@pytest.fixture
def fmnist(small_fmnist):
    return ARGS + ["--dataset_path", str(small_fmnist)]


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_probe(native, monkeypatch):
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    mode, why = accel.amp_mode("auto", cpu, training=True)
    assert mode == ("bf16" if native else "off") and ("native bf16" in why)
    assert accel.amp_mode("auto", cpu, training=False)[0] == "off"  # extraction: fp32 unless asked
    assert accel.amp_mode("off", cpu, training=True)[0] == "off"    # a pinned precision ignores the probe
    assert accel.amp_mode("bf16", cpu, training=True)[0] == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_auto_training_precision_is_recorded_in_checkpoint_and_rows(fmnist, native, monkeypatch, capsys):
    """``--amp auto`` through the scripts on a CPU reported as having (or lacking) native bf16: the
    checkpoint records what it trained in and each result row and table caption say so. With the probe
    True this is the bf16 training path, run here on any CPU."""
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: native)
    train_model.main(fmnist + TRAIN + ["--checkpoint", "m.pt"])
    assert f"amp {'bf16' if native else 'off'}" in capsys.readouterr().out
    ckpt = torch.load("m.pt", weights_only=True)
    assert ckpt["amp"] == ("bf16" if native else "off")
    rows = test_score_ood_detection.main(fmnist + ["--checkpoint", "m.pt", "--ood", "iSUN", "--score", "MSP",
                                                   "--results_dir", "r"])
    want = "bf16" if native else "fp32"
    assert {r["train_precision"] for r in rows} == {want}
    assert {r["feature_precision"] for r in rows} == {"fp32"}  # extraction stays fp32 under auto
    caption = Path("r/results.md").read_text().splitlines()[0]
    assert f"backbone trained in {want}" in caption


def test_bf16_extraction_on_any_cpu(fmnist):
    """``--amp bf16`` for extraction runs on a CPU without native bf16 too, and is recorded apart."""
    train_model.main(fmnist + TRAIN + ["--checkpoint", "m.pt", "--amp", "off"])
    rows = test_score_ood_detection.main(fmnist + ["--checkpoint", "m.pt", "--ood", "iSUN", "--score", "Energy",
                                                   "--amp", "bf16", "--results_dir", "r"])
    assert {(r["train_precision"], r["feature_precision"]) for r in rows} == {("fp32", "bf16")}
    store = next(Path("stored_pattern").rglob("features/test.pt"))
    assert torch.load(store, weights_only=True)["fingerprint"]["amp"] == "bf16"


def test_aggregator_refuses_to_mix_training_precisions(fmnist, capsys):
    """Two seeds of one command on two CPUs (fp32 on one, bf16 on the other) are not averaged silently."""
    for seed, amp in ((1, "off"), (2, "bf16")):
        train_model.main(fmnist + TRAIN + ["--checkpoint", f"m{seed}.pt", "--amp", amp, "--seed", str(seed)])
        test_score_ood_detection.main(fmnist + ["--checkpoint", f"m{seed}.pt", "--ood", "iSUN", "--score", "MSP",
                                                "--results_dir", f"r{seed}", "--amp", "off"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        aggregate_results.main(["r1", "r2", "--out", "agg"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "train_precision" in err and len(err.strip().splitlines()) == 1
    aggregate_results.main(["r1", "r2", "--out", "agg", "--allow_mixed"])
    assert json.loads(next(Path("agg").rglob("*.json")).read_text())
