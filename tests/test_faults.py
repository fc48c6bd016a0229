"""Faults and bad input: resume gives the same weights, a changed checkpoint invalidates the cache,
user errors end with exit status 2 and a one-paragraph message, and leave no partial output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import generate_stored_pattern
import test_score_ood_detection
import train_model
from ood.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen-factor", "1",
        "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
QUICK_TRAIN = ["--epochs", "3", "--lr", "0.05", "--augment", "none"]  # every class gets correct images


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_after_interruption_gives_same_weights(data, workdir, monkeypatch):
    args = TINY + ["--dataset_path", str(data), "--epochs", "3", "--lr", "0.05"]
    train_model.main(args + ["--checkpoint", "full.pt"])

    calls = {"n": 0}
    real_save = Trainer.save

    def save_then_die(self, *a):
        real_save(self, *a)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the run is killed right after epoch 1 was saved

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_model.main(args + ["--checkpoint", "part.pt"])
    assert torch.load("part.pt", weights_only=True)["epoch"] == 1
    # burn some global RNG state, as another program in the same process might
    torch.rand(1000)
    train_model.main(args + ["--checkpoint", "part.pt", "--resume"])
    full, part = _weights("full.pt"), _weights("part.pt")
    assert full.keys() == part.keys()
    for k in full:
        assert torch.equal(full[k], part[k]), k
    log = Path("part.log.csv").read_text().splitlines()
    assert [l.split(",")[0] for l in log] == ["epoch", "1", "2", "3"]
    # a finished run resumes to nothing; without --resume/--overwrite an existing checkpoint is kept
    assert len(train_model.main(args + ["--checkpoint", "part.pt", "--resume"])) == 3
    with pytest.raises(SystemExit) as e:
        train_model.main(args + ["--checkpoint", "part.pt"])
    assert e.value.code == 2


def test_changed_checkpoint_invalidates_cache(data, workdir, capsys):
    common = TINY + ["--dataset_path", str(data)]
    train_model.main(common + QUICK_TRAIN)
    gen = common + ["--ood", "iSUN"]
    generate_stored_pattern.main(gen)
    feat = workdir / "stored_pattern/cifar10/wrn/features/iSUN.pt"
    [he] = (workdir / "stored_pattern/cifar10/wrn/patterns").glob("he-*.pt")
    first = torch.load(feat, weights_only=True)
    stamp = feat.stat().st_mtime_ns, he.stat().st_mtime_ns
    generate_stored_pattern.main(gen)  # unchanged inputs: nothing recomputed
    assert (feat.stat().st_mtime_ns, he.stat().st_mtime_ns) == stamp

    train_model.main(common + QUICK_TRAIN + ["--overwrite", "--seed", "7"])
    generate_stored_pattern.main(gen)
    second = torch.load(feat, weights_only=True)
    assert second["fingerprint"]["checkpoint"] != first["fingerprint"]["checkpoint"]
    assert not torch.equal(first["features"], second["features"])
    assert he.stat().st_mtime_ns != stamp[1]
    # a changed input size or subset also invalidates (another size than the checkpoint's must be forced)
    generate_stored_pattern.main(gen + ["--resize_val", "20", "--force_input_size"])
    assert torch.load(feat, weights_only=True)["fingerprint"]["input_size"] == 20
    generate_stored_pattern.main(gen + ["--subset", "5"])
    assert torch.load(feat, weights_only=True)["features"].shape[0] == 5
    # a changed ReAct percentile fits ReAct again (a file of its own), nothing else
    patterns = workdir / "stored_pattern/cifar10/wrn/patterns"
    before = {p: p.stat().st_mtime_ns for p in patterns.glob("*.pt")}
    generate_stored_pattern.main(gen + ["--subset", "5", "--react_percentile", "50"])
    after = {p: p.stat().st_mtime_ns for p in patterns.glob("*.pt")}
    [new] = set(after) - set(before)
    assert new.name.startswith("react-") and torch.load(new, weights_only=True)["settings"] == {"percentile": 50.0,
                                                                                          "threshold": "interpolated"}
    assert all(after[p] == t for p, t in before.items())


def _run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _assert_user_error(proc, *phrases):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err  # one paragraph
    for p in phrases:
        assert p in err, err


@pytest.mark.slow
def test_user_errors_exit_2_without_partial_output(data_root, tmp_path):
    data, _ = data_root
    empty = tmp_path / "nodata"
    empty.mkdir()
    script = str(ROOT / "test_score_ood_detection.py")
    base = TINY + ["--results_dir", str(tmp_path / "res"), "--stored_pattern_dir", str(tmp_path / "sp")]

    # missing ID data: names the folder and how to get it; a missing checkpoint is named first
    proc = _run([str(ROOT / "train_model.py"), *TINY, "--dataset_path", str(empty), "--epochs", "1"], tmp_path)
    _assert_user_error(proc, "cifar-10-batches-py", "--download")
    proc = _run([script, *base, "--dataset_path", str(empty)], tmp_path)
    _assert_user_error(proc, "checkpoints/cifar10/wrn.pt does not exist")
    # unknown score, unknown model, unknown OOD set
    _assert_user_error(_run([script, *base, "--score", "NoSuchScore"], tmp_path), "unknown score")
    _assert_user_error(_run([script, *base[:3], "nonet", *base[4:]], tmp_path), "unknown model")
    _assert_user_error(_run([script, *base, "--ood", "MNIST"], tmp_path), "unknown OOD set")
    assert not (tmp_path / "res").exists()
    assert not (tmp_path / "sp").exists() or not any(p.suffix == ".tmp" for p in (tmp_path / "sp").rglob("*"))


def test_missing_ood_set_message(data, tmp_path):
    from ood.data import resolve_ood
    from ood.errors import UserError
    with pytest.raises(UserError) as e:
        resolve_ood("Places").build(tmp_path, None)
    msg = str(e.value)
    assert str(tmp_path / "Places") in msg and "b5cb5eba2754ae2a28beea8718db699a" in msg and "http" in msg
    (tmp_path / "Places").mkdir()
    with pytest.raises(UserError, match="Places"):
        resolve_ood("Places").build(tmp_path, None)
    with pytest.raises(UserError, match=r"SVHN.*test_32x32.mat.*eb5a983be6a315427106f1b164d9cef3"):
        resolve_ood("svhn").build(tmp_path, None)


def test_checkpoint_for_another_model_or_class_count(data, workdir, capsys):
    common = TINY + ["--dataset_path", str(data)]
    with pytest.raises(SystemExit) as e:
        test_score_ood_detection.main(common + ["--checkpoint", "missing.pt", "--ood", "iSUN"])
    assert e.value.code == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    train_model.main(common + QUICK_TRAIN)
    ck = "checkpoints/cifar10/wrn.pt"
    for bad, phrase in ((["--dataset", "cifar100"], "num_classes=10"),
                        (["--widen-factor", "2"], "does not fit")):
        args = common + bad + ["--checkpoint", ck, "--ood", "iSUN", "--results_dir", "r"]
        with pytest.raises(SystemExit) as e:
            test_score_ood_detection.main(args)
        assert e.value.code == 2
    # a missing OOD set stops the run before anything is written
    with pytest.raises(SystemExit) as e:
        test_score_ood_detection.main(common + ["--ood", "iSUN", "Places", "--results_dir", "r"])
    assert e.value.code == 2
    assert not Path("r").exists()
    # a plain state dict with DataParallel prefixes loads
    state = torch.load(ck, weights_only=True)["model"]
    torch.save({"module." + k: v for k, v in state.items()}, "dp.pth")
    rows = test_score_ood_detection.main(common + ["--checkpoint", "dp.pth", "--ood", "iSUN", "--score", "MSP",
                                                   "--results_dir", "r"])
    assert rows[0]["ood_dataset"] == "iSUN"
