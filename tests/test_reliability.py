"""Reliability through the scripts themselves: nothing stale is reused, nothing computed earlier is lost,
an interrupted run resumes exactly, every bad input ends with one line and exit status 2 before any
long work starts and leaves no partial output, and a run leaves the interpreter as it found it.

Most tests start from the session's trained Fashion-MNIST backbone (``trained_fmnist``); those about
the CIFAR formats (the pickles, the ``data`` fixture of tests/conftest.py) train their own WRN-10-1."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datagen
from checks import exits_2, one_line_error
import generate_stored_pattern
import test_score_ood_detection
import train_model
from ood.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
CIFAR_TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
              "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--amp", "off",
              "--quiet"]
QUICK_TRAIN = ["--epochs", "3", "--lr", "0.05", "--augment", "none"]  # every class gets correct images
TRAIN = QUICK_TRAIN + ["--resize_val", "16"]


@pytest.fixture
def trained(trained_fmnist):
    """Fashion-MNIST, two ImageFolder OOD sets and a WRN-10-1 trained at 16 px (tests/conftest.py)."""
    return trained_fmnist


@pytest.fixture
def run_dir(fmnist_run):
    """A working directory with a copy of the data and the trained checkpoint (tests/conftest.py)."""
    return fmnist_run


def common(root):
    return TINY + ["--dataset_path", str(root / "data")]


def run_script(args, cwd):
    """A script run in a process of its own (``args``: its path and options)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------------------
# Stale or wrong results without an error
# ----------------------------------------------------------------------------------------------------
def test_custom_ood_folder_in_the_scoring_script(run_dir):
    rows = test_score_ood_detection.main(common(run_dir) + ["--ood", f"Mine={run_dir / 'data' / 'mine'}", "iSUN",
                                                            "--score", "MSP", "--results_dir", "r"])
    assert [r["ood_dataset"] for r in rows] == ["Mine", "iSUN"] and rows[0]["n_ood"] == 8


def test_duplicate_ood_names_give_one_row(run_dir):
    rows = test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "isun", "--score", "MSP",
                                                            "--results_dir", "r"])
    assert [r["ood_dataset"] for r in rows] == ["iSUN"]


def test_checkpoint_input_size_is_the_default_and_is_enforced(run_dir, capsys):
    rows = test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--results_dir", "r"])
    assert rows[0]["input_size"] == 16  # the checkpoint's, not the WRN default 64
    capsys.readouterr()  # the run's own output (its near-chance warning): not the next command's
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", "iSUN", "--resize_val", "32"], capsys,
            "--resize_val 32 contradicts", "trained at 16x16", "--force_input_size")
    rows = test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--resize_val", "32",
                                                            "--force_input_size", "--results_dir", "r32"])
    assert rows[0]["input_size"] == 32


def test_unfinished_checkpoint_is_named(run_dir):
    ck = torch.load("checkpoints/fashionmnist/wrn.pt", weights_only=True)
    ck.update(epoch=1, finished=False)
    torch.save(ck, "early.pt")
    with pytest.warns(UserWarning, match=r"unfinished training run \(epoch 1 of 3\)"):
        test_score_ood_detection.main(common(run_dir) + ["--checkpoint", "early.pt", "--ood", "iSUN", "--score",
                                                         "MSP", "--results_dir", "r"])


def test_replaced_images_are_extracted_again(run_dir):
    args = common(run_dir) + ["--ood", "iSUN", "--score", "SHE"]
    generate_stored_pattern.main(args)
    feat = run_dir / "stored_pattern/fashionmnist/wrn/features/iSUN.pt"
    before = torch.load(feat, weights_only=True)
    folder = run_dir / "data/iSUN/images"
    rng = np.random.default_rng(9)
    for f in sorted(folder.iterdir()):  # the same names and count, other pictures
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(f)
    generate_stored_pattern.main(args)
    after = torch.load(feat, weights_only=True)
    assert after["fingerprint"]["source"] != before["fingerprint"]["source"]
    assert not torch.equal(after["features"], before["features"])


def test_new_training_images_refit_patterns_once_and_each_file_is_read_once(run_dir, monkeypatch):
    """Patterns are keyed on the training features they were fitted from, also when those were just
    extracted anew; one run reads and verifies features/train.pt once, however many scores it fits."""
    import ood.cache.features
    args = common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "ReAct", "SHE", "KNN", "DICE", "ViM"]
    generate_stored_pattern.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP"])  # extracts, fits nothing
    datagen.write_fashion_mnist(run_dir / "data", n_train=100, n_test=40, seed=11)  # other training images
    reads = []
    real_load = ood.cache.features.load_torch
    monkeypatch.setattr(ood.cache.features, "load_torch", lambda path, **kw: reads.append(Path(path).name) or
                        real_load(path, **kw))
    test_score_ood_detection.main(args + ["--results_dir", "r"])
    assert reads.count("train.pt") <= 2 and reads.count("head.pt") == 1, reads
    store = run_dir / "stored_pattern/fashionmnist/wrn"
    digest = torch.load(store / "features/train.pt", weights_only=True)["digest"]
    patterns = sorted((store / "patterns").glob("*.pt"))
    assert len(patterns) == 5 and all(torch.load(p, weights_only=True)["fingerprint"]["train"] == digest
                                      for p in patterns)
    stamps = [p.stat().st_mtime_ns for p in patterns]
    test_score_ood_detection.main(args + ["--results_dir", "r"])
    assert [p.stat().st_mtime_ns for p in patterns] == stamps  # nothing refitted


def test_per_sample_scores_follow_a_replaced_row(run_dir):
    """Once a folder has scores.npz, a later run that replaces a row replaces its per-sample scores too."""
    args = common(run_dir) + ["--ood", "iSUN", "--score", "MSP"]
    test_score_ood_detection.main(args + ["--results_dir", "r", "--save_scores"])
    rng = np.random.default_rng(9)
    for f in sorted((run_dir / "data/iSUN/images").iterdir()):  # other pictures: other iSUN scores
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(f)
    test_score_ood_detection.main(args + ["--results_dir", "r"])   # without --save_scores
    test_score_ood_detection.main(args + ["--results_dir", "fresh", "--save_scores"])
    with np.load("r/scores.npz") as kept, np.load("fresh/scores.npz") as fresh:
        np.testing.assert_array_equal(kept["MSP/iSUN"], fresh["MSP/iSUN"])


def test_edited_features_are_recomputed_and_patterns_follow_them(run_dir):
    """The issue's case: a NaN row lands in features/train.pt before ReAct is fitted."""
    args = common(run_dir) + ["--ood", "iSUN", "--score", "ReAct"]
    generate_stored_pattern.main(args[:-1] + ["MSP"])  # extracts every set, fits nothing
    path = run_dir / "stored_pattern/fashionmnist/wrn/features/train.pt"
    train = torch.load(path, weights_only=True)
    good = train["features"].clone()
    train["features"][3] = float("nan")  # a NaN row written by hand, the fingerprint and digest kept
    torch.save(train, path)
    with pytest.warns(UserWarning, match="was modified after it was written"):
        rows = test_score_ood_detection.main(args + ["--results_dir", "r"])
    assert np.isfinite(rows[0]["auroc"])
    assert torch.equal(torch.load(path, weights_only=True)["features"], good)
    # a pattern file is keyed on the features it was fitted from: an edited state is not reused either
    [pattern] = (run_dir / "stored_pattern/fashionmnist/wrn/patterns").glob("react-*.pt")
    state = torch.load(pattern, weights_only=True)
    state["fingerprint"]["train"] = "something else"
    torch.save(state, pattern)
    stamp = pattern.stat().st_mtime_ns
    test_score_ood_detection.main(args + ["--results_dir", "r"])
    assert pattern.stat().st_mtime_ns != stamp  # refitted


def test_non_finite_checkpoint_stops_before_anything_is_cached(run_dir, capsys):
    ck = torch.load("checkpoints/fashionmnist/wrn.pt", weights_only=True)
    ck["model"]["fc.weight"][0, 0] = float("nan")
    torch.save(ck, "nan.pt")
    exits_2(generate_stored_pattern.main, common(run_dir) + ["--checkpoint", "nan.pt", "--ood", "iSUN"], capsys,
            "not finite")
    assert not list(run_dir.glob("stored_pattern/**/features/*.pt"))


def test_cache_file_of_the_wrong_kind_is_recomputed(run_dir):
    args = common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--results_dir", "r"]
    feat = run_dir / "stored_pattern/fashionmnist/wrn/features/iSUN.pt"
    feat.parent.mkdir(parents=True)
    torch.save(torch.zeros(3), feat)  # a valid torch file, but not a features file
    rows = test_score_ood_detection.main(args)
    assert rows[0]["n_ood"] == 10 and set(torch.load(feat, weights_only=True)) >= {"features", "digest"}


def test_changed_checkpoint_invalidates_cache(data, workdir, capsys):
    common = CIFAR_TINY + ["--dataset_path", str(data)]
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


def test_results_folder_keeps_earlier_rows(run_dir, capsys):
    args = common(run_dir) + ["--ood", "iSUN", "Mine=" + str(run_dir / "data/mine"), "--results_dir", "res"]
    test_score_ood_detection.main(args + ["--score", "MSP", "Energy", "SHE", "--save_scores"])
    test_score_ood_detection.main(args + ["--score", "MSP", "--protocol", "sampled", "--repeats", "3"])
    rows = json.loads(Path("res/results.json").read_text())["rows"]
    assert sorted((r["protocol"], r["score"]) for r in rows if r["ood_dataset"] == "iSUN") == [
        ("full", "Energy"), ("full", "MSP"), ("full", "SHE"), ("sampled", "MSP")]
    md = Path("res/results.md").read_text()
    assert "full protocol" in md and "sampled protocol (3 draws, seed 1)" in md
    # a rerun of one score replaces its rows only; scores.npz keeps the entries of the others
    test_score_ood_detection.main(args + ["--score", "Energy", "--energy_t", "2"])
    rows = json.loads(Path("res/results.json").read_text())["rows"]
    assert {r["label"] for r in rows} == {"MSP", "SHE", "Energy (T=1.0)", "Energy (T=2.0)"}
    with np.load("res/scores.npz") as npz:
        assert {"MSP/id", "SHE/iSUN", "Energy (T=1.0)/Mine"} <= set(npz.files)
    # results of another checkpoint are moved aside, not mixed in and not lost
    ck = torch.load("checkpoints/fashionmnist/wrn.pt", weights_only=True)
    ck["model"]["fc.bias"] += 0.5
    torch.save(ck, "other.pt")
    capsys.readouterr()
    Path("res/extended").mkdir()  # a results folder of its own inside this one (as the demo's) stays put
    test_score_ood_detection.main(args + ["--score", "MSP", "--checkpoint", "other.pt"])
    assert "moved to" in capsys.readouterr().out
    assert Path("res/extended").is_dir()
    [old] = Path("res/previous").iterdir()
    assert len(json.loads((old / "results.json").read_text())["rows"]) == 10
    assert len(json.loads(Path("res/results.json").read_text())["rows"]) == 2


@pytest.mark.slow
def test_concurrent_runs_into_one_folder(run_dir):
    args = [sys.executable, str(ROOT / "test_score_ood_detection.py"), *common(run_dir), "--ood", "iSUN",
            "--results_dir", "res", "--save_scores"]
    test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--results_dir", "warm"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args + ["--score", *s], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (["MSP", "Energy"], ["SHE", "HE"])]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = json.loads(Path("res/results.json").read_text())["rows"]
    assert sorted(r["score"] for r in rows) == ["Energy", "HE", "MSP", "SHE"]
    with np.load("res/scores.npz") as npz:
        assert {f"{s}/id" for s in ("MSP", "Energy", "SHE", "HE")} <= set(npz.files)


# ----------------------------------------------------------------------------------------------------
# Training: resume exactly, or refuse
# ----------------------------------------------------------------------------------------------------
def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_after_interruption_gives_same_weights(data, workdir, monkeypatch):
    args = CIFAR_TINY + ["--dataset_path", str(data), "--epochs", "3", "--lr", "0.05"]
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


@pytest.mark.slow
def test_resume_after_sigkill_with_worker_processes(trained, tmp_path):
    """WRN with dropout, loader worker processes: a run killed with SIGKILL after epoch 2 and resumed ends
    with exactly the weights of an uninterrupted run."""
    args = [sys.executable, str(ROOT / "train_model.py"), *TINY, "--dataset_path", str(trained / "data"),
            "--epochs", "4", "--lr", "0.05", "--augment", "flip", "--resize_val", "16", "--batch_size", "10",
            "--workers", "2", "--droprate", "0.3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(args + ["--checkpoint", "full.pt"], cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(args + ["--checkpoint", "part.pt"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        log = tmp_path / "part.log.csv"
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    saved = torch.load(tmp_path / "part.pt", weights_only=True)
    assert saved["epoch"] in (2, 3) and not saved["finished"]
    subprocess.run(args + ["--checkpoint", "part.pt", "--resume"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    full, part = _weights(tmp_path / "full.pt"), _weights(tmp_path / "part.pt")
    for k in full:
        assert torch.equal(full[k], part[k]), k


def test_resume_refuses_other_settings(run_dir, capsys):
    args = common(run_dir) + ["--epochs", "3", "--augment", "none", "--resize_val", "16", "--resume"]
    err = exits_2(train_model.main, args + ["--lr", "0.1", "--batch_size", "10"], capsys, "cannot resume")
    assert "lr: 0.05 in the checkpoint, 0.1 now" in err and "batch_size: 20 in the checkpoint, 10 now" in err
    assert len(train_model.main(args + ["--lr", "0.05"])) == 3  # the same settings: nothing left to do


def test_stale_temporaries_of_a_killed_write_are_removed(run_dir):
    stale = run_dir / "checkpoints/fashionmnist/.wrn.pt.999999999.abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    train_model.main(common(run_dir) + TRAIN + ["--overwrite", "--epochs", "1"])
    assert not stale.exists()


def test_outputs_follow_the_umask(run_dir):
    old = os.umask(0o022)
    try:
        test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--results_dir", "r"])
    finally:
        os.umask(old)
    assert (run_dir / "r/results.json").stat().st_mode & 0o777 == 0o644
    assert (run_dir / "stored_pattern/fashionmnist/wrn/features/test.pt").stat().st_mode & 0o777 == 0o644


def test_no_correct_sample_warning_is_printed_once(run_dir):
    """A head that predicts class 3 for every image (whatever the training reached on this machine):
    nine classes have no correctly classified training image; three scores fit, one warning."""
    ck = torch.load("checkpoints/fashionmnist/wrn.pt", weights_only=True)
    ck["model"]["fc.weight"].zero_()
    ck["model"]["fc.bias"].copy_(10 * torch.nn.functional.one_hot(torch.tensor(3), 10))
    torch.save(ck, "class3.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test_score_ood_detection.main(common(run_dir) + ["--checkpoint", "class3.pt", "--ood", "iSUN", "--score",
                                                         "HE", "SHE", "RecLag", "--reclag_epochs", "1",
                                                         "--results_dir", "r"])
    fit = [str(w.message) for w in caught if "have no correctly classified training image" in str(w.message)]
    assert fit == [fit[0]] and "classes [0, 1, 2, 4, 5, 6, 7, 8, 9]" in fit[0]


def test_routing_warnings_name_the_score_and_the_set(capsys):
    """Inputs predicted as a class without stored patterns: the per-set line names the set and the score."""
    from ood.evaluation.scoring import score_set
    from scores.hopfield import HE, SHE
    g = torch.Generator().manual_seed(0)
    train = {"features": torch.rand(20, 4, generator=g), "labels": torch.arange(20) % 2}
    train["logits"] = torch.nn.functional.one_hot(torch.zeros(20, dtype=torch.long), 3).float()  # all class 0
    data = {"features": torch.rand(5, 4, generator=g),
            "logits": torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 0]), 3).float()}
    head = {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}
    for cls in (HE, SHE):
        score = cls()
        values = score_set(score, data, score.fit(train, head), head, "iSUN")
        assert values.shape == (5,)
        [line] = [x for x in capsys.readouterr().err.splitlines() if "inputs are predicted as classes" in x]
        assert line.startswith(f"warning: iSUN: {cls.name}: 3 inputs are predicted as classes [1, 2]")


# ----------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, before any long work
# ----------------------------------------------------------------------------------------------------
OUT_OF_RANGE = [
    ("--batch_size", "0"), ("--subset", "-5"), ("--resize_val", "-8"), ("--resize_val", "0"), ("--workers", "-1"),
    ("--layers", "11"), ("--widen_factor", "0"), ("--droprate", "2"), ("--react_percentile", "150"),
    ("--reclag_hidden", "0"), ("--reclag_batch_size", "0"), ("--reclag_n_samples", "0"), ("--reclag_beta", "0"),
    ("--he_beta", "-1"), ("--energy_t", "0"), ("--reclag_sampler", "uniform"), ("--repeats", "0"), ("--knn_k", "0"),
    # the older spellings, still accepted (not listed by --help), are checked and named as given
    ("--widen-factor", "0"), ("--reclag_batch", "0"), ("--energy_T", "0"),
]


@pytest.mark.parametrize("flag,value", OUT_OF_RANGE)
def test_numbers_out_of_range(flag, value, capsys):
    exits_2(test_score_ood_detection.main, ["--dataset", "fashionmnist", "--model", "wrn", flag, value], capsys,
            f"argument {flag}:")


@pytest.mark.parametrize("flag,says", [
    ("--beta", "--beta is ambiguous since HE also has a beta: use --reclag_beta (RecLag) or --he_beta (HE)"),
    ("--hidden", "--hidden was dropped (a setting's flag names its score): use --reclag_hidden (RecLag)"),
    ("--n_samples", "use --reclag_n_samples (RecLag)"), ("--init", "use --reclag_init (RecLag)"),
    ("--sampler", "use --reclag_sampler (RecLag)")])
def test_unprefixed_score_settings_name_the_flags_to_use(flag, says, capsys):
    """``--beta`` once set RecLag's beta although HE has one too: a user who meant HE's changed RecLag's."""
    exits_2(test_score_ood_detection.main, ["--dataset", "fashionmnist", flag, "5"], capsys, says)
    exits_2(test_score_ood_detection.main, ["--dataset", "fashionmnist", f"{flag}=5"], capsys, says)


def test_older_spellings_work_but_are_not_listed(capsys):
    """One spelling per flag in --help (lower case, underscores: docs/cli.md); the older ones still parse."""
    from ood.runtime import options as cli
    import scores
    p = cli.parser("x")
    cli.add_common(p)
    scores.add_score_args(p)
    old = ["--widen-factor", "3", "--reclag_batch", "7", "--energy_T", "2", "--react_T", "3", "--gen_M", "4",
           "--no-channels_last"]
    new = ["--widen_factor", "3", "--reclag_batch_size", "7", "--energy_t", "2", "--react_t", "3", "--gen_m", "4",
           "--no_channels_last"]
    assert vars(p.parse_args(old)) == vars(p.parse_args(new))
    assert p.parse_args(new).channels_last is False and p.parse_args(["--channels_last"]).channels_last is True
    assert p.parse_args([]).channels_last is None
    shown = p.format_help()
    assert all(f in shown for f in new[::2]) and "--channels_last" in shown
    for f in old[::2] + ["--beta", "--hidden", "--n_samples", "--init", "--sampler"]:
        assert f"{f} " not in shown and f"{f}\n" not in shown and f"{f}," not in shown, f


@pytest.mark.slow
def test_user_errors_exit_2_without_partial_output(data_root, tmp_path):
    data, _ = data_root
    empty = tmp_path / "nodata"
    empty.mkdir()
    script = str(ROOT / "test_score_ood_detection.py")
    base = CIFAR_TINY + ["--results_dir", str(tmp_path / "res"), "--stored_pattern_dir", str(tmp_path / "sp")]

    def fails(args, *phrases):
        proc = run_script(args, tmp_path)
        one_line_error(proc.returncode, proc.stderr, *phrases)

    # missing ID data: names the folder and how to get it; a missing checkpoint is named first
    fails([str(ROOT / "train_model.py"), *CIFAR_TINY, "--dataset_path", str(empty), "--epochs", "1"],
          "cifar-10-batches-py", "--download")
    fails([script, *base, "--dataset_path", str(empty)], "checkpoints/cifar10/wrn.pt does not exist")
    # unknown score, unknown model, unknown OOD set
    fails([script, *base, "--score", "NoSuchScore"], "unknown score")
    fails([script, *base[:3], "nonet", *base[4:]], "unknown model")
    fails([script, *base, "--ood", "MNIST"], "unknown OOD set")
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
    common = CIFAR_TINY + ["--dataset_path", str(data)]
    with pytest.raises(SystemExit) as e:
        test_score_ood_detection.main(common + ["--checkpoint", "missing.pt", "--ood", "iSUN"])
    assert e.value.code == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    train_model.main(common + QUICK_TRAIN)
    ck = "checkpoints/cifar10/wrn.pt"
    for bad, phrase in ((["--dataset", "cifar100"], "trained on cifar10 (all classes), but this run asks for cifar100"),
                        (["--widen_factor", "2"], "does not fit")):
        args = common + bad + ["--checkpoint", ck, "--ood", "iSUN", "--results_dir", "r"]
        with pytest.raises(SystemExit) as e:
            test_score_ood_detection.main(args)
        assert e.value.code == 2
        assert phrase in capsys.readouterr().err
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


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--lr", "-1"), ("--momentum", "-0.5"),
                                        ("--batch_size", "0")])
def test_training_numbers_out_of_range(flag, value, capsys):
    exits_2(train_model.main, ["--dataset", "fashionmnist", flag, value], capsys, flag)


def test_unknown_names(run_dir, capsys):
    exits_2(test_score_ood_detection.main, common(run_dir)[:2] + ["--model", "tv:resnet999"], capsys,
            "unknown model 'tv:resnet999'")
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--checkpoint", "checkpoints"], capsys,
            "is a directory")
    exits_2(generate_stored_pattern.main, common(run_dir) + ["--ood", "iSUN", "Nowhere"], capsys,
            "unknown OOD set 'Nowhere'")
    assert not (run_dir / "stored_pattern").exists()  # found before any extraction


def test_a_percentile_that_keeps_no_entry_is_refused_before_extraction(run_dir, capsys):
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", "iSUN", "--score", "ASH-B",
                                                              "--ash_b_percentile", "99.9"],
            capsys, "--ash_b_percentile 99.9 keeps none of the d = 64 entries")
    assert not list(run_dir.glob("stored_pattern/**/features/*.pt"))


def test_unwritable_output_locations(run_dir, capsys):
    Path("afile").write_text("x")
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", "iSUN", "--results_dir", "afile"], capsys,
            "--results_dir afile is a file")
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", "iSUN", "--stored_pattern_dir", "afile/sp"],
            capsys, "--stored_pattern_dir afile/sp", "lies under afile, which is a file")
    exits_2(train_model.main, common(run_dir) + TRAIN + ["--checkpoint", "afile/m.pt"], capsys, "afile")
    exits_2(train_model.main, common(run_dir) + TRAIN + ["--checkpoint", "checkpoints"], capsys, "is a directory")
    assert not (run_dir / "stored_pattern").exists()


def test_disk_full_says_so(run_dir, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)  # what ood.io's save_torch calls
    exits_2(generate_stored_pattern.main, common(run_dir) + ["--ood", "iSUN"], capsys, "the disk is full")
    assert not [p for p in run_dir.rglob("*.tmp")]


def test_download_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    monkeypatch.chdir(tmp_path)
    exits_2(train_model.main, ["--dataset", "cifar10", "--model", "wrn", "--download", "--dataset_path", "d",
                               "--device", "cpu"], capsys, "--download could not fetch cifar10",
            "Temporary failure in name resolution")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_bad_image_files_are_named(run_dir, capsys, damage):
    victim = sorted((run_dir / "data/iSUN/images").iterdir())[4]
    if damage == "empty":
        victim.write_bytes(b"")
    else:
        victim.write_bytes(victim.read_bytes()[:60])
    err = exits_2(generate_stored_pattern.main, common(run_dir) + ["--ood", "iSUN", "--workers", "2"], capsys,
                  str(victim))
    if damage == "empty":  # found while listing the files, before any extraction
        assert "empty file" in err and not (run_dir / "stored_pattern/fashionmnist/wrn/features/train.pt").exists()


def test_sixteen_bit_images_are_scaled(tmp_path):
    from ood.data import load_image
    arr = np.full((8, 8), 32896, dtype=np.uint16)  # 128.5 of 255 in 16 bits
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    assert rgb.shape == (8, 8, 3) and np.all(np.abs(rgb.astype(int) - 128) <= 1)


# ----------------------------------------------------------------------------------------------------
# A user's name selects what the user meant, and nothing else
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["SVHN", "lsunc", "HeldOut", "digits", "dtd"])
def test_a_custom_name_that_names_a_registered_set_is_refused(run_dir, capsys, name):
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", f"{name}={run_dir / 'data/mine'}"], capsys,
            f"--ood {name}=", "already names the OOD set", "another name")
    assert not (run_dir / "stored_pattern").exists()  # before any extraction


def test_custom_names_never_share_a_cache_file(run_dir):
    datagen.write_image_folder(run_dir / "data" / "other", n=5, seed=8)
    pairs = [("x y", "mine"), ("x_y", "other"), ("猫", "iSUN"), ("犬", "other")]
    rows = test_score_ood_detection.main(common(run_dir) + ["--ood", *[f"{n}={run_dir / 'data' / f}" for n, f in pairs],
                                                            "--score", "MSP", "--results_dir", "r"])
    assert [(r["ood_dataset"], r["n_ood"]) for r in rows] == [("x y", 8), ("x_y", 5), ("猫", 10), ("犬", 5)]
    assert len(list((run_dir / "stored_pattern/fashionmnist/wrn/features").glob("custom-*.pt"))) == 4
    assert rows[0]["auroc"] != rows[1]["auroc"]


def test_one_name_for_two_folders_is_refused(run_dir, capsys):
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", f"mine={run_dir / 'data/mine'}",
                                                              f"Mine={run_dir / 'data/iSUN'}"], capsys,
            "two different sets")


def test_a_checkpoint_is_scored_on_its_own_class_split(run_dir, capsys):
    split = ["--id_classes", "0", "1", "2", "3", "4"]
    train_model.main(common(run_dir) + TRAIN + split + ["--epochs", "1"])
    ckpt = "checkpoints/fashionmnist_classes0-1-2-3-4/wrn.pt"
    for other in (["5", "6", "7", "8", "9"], ["1", "0", "2", "3", "4"]):
        exits_2(test_score_ood_detection.main, common(run_dir) + ["--checkpoint", ckpt, "--id_classes", *other,
                                                                  "--ood", "HeldOut"], capsys,
                "trained on fashionmnist with --id_classes 0 1 2 3 4", f"--id_classes {' '.join(other)}")
    exits_2(generate_stored_pattern.main, common(run_dir) + ["--checkpoint", ckpt, "--ood", "iSUN"], capsys,
            "trained on fashionmnist with --id_classes 0 1 2 3 4", "fashionmnist (all classes)")
    rows = test_score_ood_detection.main(common(run_dir) + ["--checkpoint", ckpt, *split, "--ood", "HeldOut",
                                                            "--score", "MSP", "--results_dir", "r"])
    assert rows[0]["ood_dataset"] == "HeldOut" and rows[0]["id_dataset"] == "fashionmnist_classes0-1-2-3-4"


def test_held_out_without_a_split_names_the_fix(run_dir, capsys):
    exits_2(test_score_ood_detection.main, common(run_dir) + ["--ood", "HeldOut"], capsys,
            "train a backbone on some classes", "the same --id_classes")


def test_paper_protocol_says_which_flags_it_ignores(run_dir, capsys):
    args = common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--results_dir", "r"]
    test_score_ood_detection.main(args + ["--protocol", "paper"])
    assert "do not apply" not in capsys.readouterr().out
    rows = test_score_ood_detection.main(args + ["--protocol", "paper", "--repeats", "3", "--fpr_variant", "strict"])
    out = capsys.readouterr().out
    assert "--repeats, --fpr_variant do not apply" in out
    assert rows[0]["repeats"] == 10 and rows[0]["seed"] == 12 and rows[0]["fpr_variant"] == "closest"


def test_rewritten_training_images_refit_patterns_in_the_scoring_script(run_dir, capsys):
    """The README calls generate_stored_pattern.py optional: the scoring script alone notices training
    images rewritten after the patterns were fitted, and refits them on the new features."""
    args = common(run_dir) + ["--ood", "iSUN", "--score", "SHE", "ReAct"]
    generate_stored_pattern.main(args)
    store = run_dir / "stored_pattern/fashionmnist/wrn"
    old = torch.load(store / "features/train.pt", weights_only=True)["digest"]
    first = test_score_ood_detection.main(args + ["--results_dir", "r"])
    datagen.write_fashion_mnist(run_dir / "data", n_train=100, n_test=40, seed=11)  # other training images
    second = test_score_ood_detection.main(args + ["--results_dir", "r"])
    new = torch.load(store / "features/train.pt", weights_only=True)["digest"]
    assert new != old
    assert all(torch.load(p, weights_only=True)["fingerprint"]["train"] == new
               for p in (store / "patterns").glob("*.pt"))
    assert [r["auroc"] for r in first] != [r["auroc"] for r in second]


# ----------------------------------------------------------------------------------------------------
# Caches that cannot be written: a complete one is read, anything else is one line before extraction
# ----------------------------------------------------------------------------------------------------
def test_a_complete_read_only_cache_is_used(run_dir, refuse_writes_under):
    args = common(run_dir) + ["--ood", "iSUN", "--score", "SHE", "ReAct", "MSP"]
    generate_stored_pattern.main(args)
    before = test_score_ood_detection.main(args + ["--results_dir", "r1"])
    refuse_writes_under(run_dir / "stored_pattern")
    after = test_score_ood_detection.main(args + ["--results_dir", "r2"])
    assert [r["auroc"] for r in after] == [r["auroc"] for r in before]


@pytest.mark.parametrize("part,extra", [
    ("patterns", ["--ood", "iSUN", "mine={data}/mine", "--score", "KNN"]),        # a new fit
    ("features", ["--ood", "iSUN", "mine={data}/mine", "--score", "MSP"]),        # a new set
    ("", ["--ood", "iSUN", "--score", "MSP", "--resize_val", "20", "--force_input_size"]),  # all redone
])
def test_unwritable_cache_parts_stop_before_extraction(run_dir, capsys, part, extra, refuse_writes_under):
    generate_stored_pattern.main(common(run_dir) + ["--ood", "iSUN", "--score", "SHE"])
    store = run_dir / "stored_pattern/fashionmnist/wrn"
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*.pt")}
    refuse_writes_under(store / part)
    extra = [a.format(data=run_dir / "data") for a in extra]
    exits_2(test_score_ood_detection.main, common(run_dir) + extra + ["--results_dir", "r"], capsys,
            f"--stored_pattern_dir {Path('stored_pattern/fashionmnist/wrn') / part}", "Permission denied")
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.pt")} == stamps  # nothing extracted or fitted


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train", "extract"])
def test_a_write_cut_short_is_one_line(run_dir, script):
    """A real full disk, as torch reports it: the file-size limit (RLIMIT_FSIZE) cuts torch.save's write
    short, which torch raises as "RuntimeError: ... unexpected pos" rather than an OSError."""
    import resource
    limit = 24_000  # smaller than a checkpoint or the training features, larger than the logs

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if script == "train":
        argv = [str(ROOT / "train_model.py"), *common(run_dir), *TRAIN, "--epochs", "1", "--checkpoint", "new.pt"]
    else:
        argv = [str(ROOT / "generate_stored_pattern.py"), *common(run_dir), "--ood", "iSUN", "--score", "SHE"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, *argv], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and err[-1].count("the disk is full (or a quota or file-size limit") == 1
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "new.pt").exists()


# ----------------------------------------------------------------------------------------------------
# A run called from Python (a test, a notebook) leaves the interpreter as it found it
# ----------------------------------------------------------------------------------------------------
def test_a_run_leaves_the_interpreter_as_it_was(run_dir):
    """The scripts' entry (ood.runtime.entry.script_run) sets the warning format and puts the working directory
    on sys.path for the run only; the plots are drawn without switching matplotlib's backend; the rows a
    caller hands to the results folder come back unlabelled."""
    import matplotlib
    from ood.reporting.results import ResultsFolder
    backend = matplotlib.get_backend()
    matplotlib.use("pdf")  # a backend the run must not replace with Agg
    try:
        path, formatwarning = list(sys.path), warnings.formatwarning
        test_score_ood_detection.main(common(run_dir) + ["--ood", "iSUN", "--score", "MSP", "--plot",
                                                         "--results_dir", "r"])
        assert sys.path == path and warnings.formatwarning is formatwarning
        assert matplotlib.get_backend() == "pdf" and (run_dir / "r/plots/roc_MSP.png").stat().st_size > 100
    finally:
        matplotlib.use(backend)
    rows = json.loads((run_dir / "r/results.json").read_text())["rows"]
    mine = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    ResultsFolder(run_dir / "again").write(mine)
    assert all("label" not in r for r in mine)
    assert json.loads((run_dir / "again/results.json").read_text())["rows"] == rows
