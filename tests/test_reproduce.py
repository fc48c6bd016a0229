"""The reproduction scripts end to end on generated data (tiny WRN on CIFAR-10/100, a torchvision
ResNet-18 with a random checkpoint on a tiny ImageNet tree; two seeds each), their dry-run plans, the
ImageNet entry points' defaults, and aggregate_results.py on hand-checked numbers.

The scripts run Python in subprocesses, which do not see conftest's md5 patch; a sitecustomize.py on
their PYTHONPATH applies the same patch there (torchvision still checks every file, against the sums of
the generated files). The scripts run concurrently to keep the module near one minute on 2 cores."""
import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aggregate_results
import datagen
import generate_stored_pattern_imagenet
import models
import scores
import test_score_ood_detection_imagenet
from generate_stored_pattern_imagenet import imagenet_argv
from ood.data import get_id_set

pytestmark = pytest.mark.slow  # see pytest.ini
REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SCORES = [c.name for c in scores.paper_scores()]
CIFAR_OOD = list(get_id_set("cifar10").default_ood)  # the OOD sets the scripts pass, as ood/data/paper.py declares them
BACKBONES = ["resnet18", "resnet34", "wrn"]
GENERATED_OOD = ["SVHN", "LSUN_C", "iSUN", "Textures"]  # the OOD sets of datagen.write_all
TINY = ["--layers", "10", "--widen_factor", "1", "--resize_val", "16", "--batch_size", "32", "--workers", "0",
        "--device", "cpu", "--amp", "off", "--quiet"]
CIFAR_ARGS = ["--models", "wrn", "--seeds", "1", "2", "--epochs", "3", "--ood", *GENERATED_OOD,
              "--train-args", "--lr 0.05 --augment none", "--eval-args", "--repeats 3", *TINY]
IMAGENET_OOD = list(get_id_set("imagenet").default_ood)

SITECUSTOMIZE = '''\
"""Test-side md5 patch for the subprocesses of tests/test_reproduce.py (as conftest's data fixture)."""
import json
import torchvision.datasets as _d

_md5s = json.loads({md5s!r})
for _cls, _key in ((_d.CIFAR10, "cifar10"), (_d.CIFAR100, "cifar100")):
    _cls.train_list = [[n, _md5s[_key][n]] for n, _ in _cls.train_list]
    _cls.test_list = [[n, _md5s[_key][n]] for n, _ in _cls.test_list]
    _cls.meta = {{**_cls.meta, "md5": _md5s[_key][_cls.meta["filename"]]}}
_split = dict(_d.SVHN.split_list)
_split["test"] = [_split["test"][0], _split["test"][1], _md5s["svhn"]]
_d.SVHN.split_list = _split
'''


def sh(script, *args, env=None, cwd=None, timeout=120):
    return subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def parse_options(tokens):
    """{option: [values]} of one command line's options (values: the words up to the next option)."""
    opts, key = {}, None
    for t in tokens:
        if t.startswith("--"):
            key = t
            opts.setdefault(key, [])
        elif key is not None:
            opts[key].append(t)
    return opts


def plan(stdout):
    """[(script name, options)] of a dry run's output, one command per line."""
    out = []
    for line in stdout.splitlines():
        argv = shlex.split(line)
        assert argv[0] == sys.executable and argv[1].endswith(".py"), line
        out.append((Path(argv[1]).name, parse_options(argv[2:])))
    return out


# ----------------------------------------------------------------------------------------------------
# The scripts end to end (run once per module, concurrently)
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    data = base / "data"
    md5s = datagen.write_all(data)
    for split, n in (("train", 8), ("val", 4)):
        datagen.write_image_folder(data / "imagenet" / split, n=n, seed=5 if split == "train" else 6,
                                   subdirs=("n01440764", "n01443537"))
    for i, name in enumerate(["iNaturalist", "SUN", "Places"]):
        datagen.write_image_folder(data / name, n=6, seed=20 + i)
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(md5s=json.dumps(md5s)))
    # a random torchvision ResNet-18 whose head prefers the two classes of the tiny ImageNet tree, so
    # that every class has correctly classified training images
    torch.manual_seed(0)
    net = models.build_model("tv:resnet18", 1000)
    with torch.no_grad():
        net.fc.bias.fill_(-20.0)
        net.fc.bias[:2] = 0.0
    torch.save(net.state_dict(), base / "tv_resnet18.pt")

    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    out = base / "out"

    def start(script, *args):
        return subprocess.Popen(["bash", str(SCRIPTS / script), *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, cwd=base)

    def finish(proc):
        stdout, _ = proc.communicate(timeout=900)
        return proc.returncode, stdout

    # Python's start-up (importing torch and torchvision, ~4 s) dominates, so CIFAR-100 and ImageNet run
    # one protocol each; the dry-run tests check the plans of every protocol.
    procs = {
        "cifar10": start("reproduce_cifar10.sh", "--dataset_path", data, "--out", out, "--no-verify", *CIFAR_ARGS),
        # CIFAR-100 through the launcher: each seed's chain a job of submitit's local executor, then the
        # aggregation (the same commands as the sequential run: test_launcher_runs_the_sequential_commands)
        "cifar100": start("reproduce_cifar100.sh", "--dataset_path", data, "--out", out, "--no-verify", *CIFAR_ARGS,
                          "--protocols", "full", "--launcher", "local"),
        "imagenet": start("reproduce_imagenet.sh", "--dataset_path", data, "--out", out, "--no-verify",
                          "--model", "tv:resnet18", "--checkpoint", base / "tv_resnet18.pt", "--seeds", "1", "2",
                          "--protocols", "sampled", "--eval-args", "--repeats 3", "--resize_val", "32",
                          "--batch_size", "16", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"),
        # the data check runs first (the generated sets are far smaller than the paper's) and stops the script
        "verify": start("reproduce_cifar10.sh", "--dataset_path", data, "--out", base / "out_verify", *CIFAR_ARGS),
    }
    res = {name: finish(proc) for name, proc in procs.items()}
    return {"base": base, "out": out, "data": data, "res": res}


def _rows(path):
    return json.loads(Path(path).read_text())["rows"]


@pytest.mark.parametrize("dataset,protocols", [("cifar10", ["full", "sampled"]), ("cifar100", ["full"])])
def test_cifar_script_end_to_end_two_seeds(runs, dataset, protocols):
    rc, log = runs["res"][dataset]
    assert rc == 0, log[-3000:]
    out = runs["out"]
    ckpts = [torch.load(out / f"checkpoints/{dataset}/seed{k}/wrn.pt", weights_only=True) for k in (1, 2)]
    assert all(c["finished"] and c["epoch"] == 3 and c["settings"]["seed"] == k for c, k in zip(ckpts, (1, 2)))
    assert ckpts[0]["meta"]["dataset"] == dataset and ckpts[0]["meta"]["input_size"] == 16
    w = "block1.0.conv1.weight"
    assert not torch.equal(ckpts[0]["model"][w], ckpts[1]["model"][w])  # each seed trains its own backbone
    for k in (1, 2):
        store = out / f"stored_pattern/seed{k}/{dataset}/wrn"
        assert {p.stem for p in (store / "features").glob("*.pt")} == {"train", "test", *GENERATED_OOD}
        assert {p.stem.split("-")[0] for p in (store / "patterns").glob("*.pt")} == {
            c.key() for c in scores.paper_scores() if c.needs_fit()}
        assert sorted(p.name for p in (out / f"results/{dataset}/seed{k}/wrn").iterdir()) == protocols
        for protocol in protocols:
            rows = _rows(out / f"results/{dataset}/seed{k}/wrn/{protocol}/results.json")
            assert sorted((r["score"], r["ood_dataset"]) for r in rows) == sorted(itertools.product(SCORES, GENERATED_OOD))
            assert all(r["id_dataset"] == dataset and r["protocol"] == protocol for r in rows)
            assert all(r["repeats"] == (3 if protocol == "sampled" else 1) for r in rows)

    agg_dir = out / f"results/{dataset}/aggregate"
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert [(g["model"], g["protocol"], g["runs"]) for g in agg["groups"]] == [
        ("wrn", p, ["seed1", "seed2"]) for p in protocols]
    per_seed = {k: {(r["protocol"], r["score"], r["ood_dataset"]): r for p in protocols
                    for r in _rows(out / f"results/{dataset}/seed{k}/wrn/{p}/results.json")} for k in (1, 2)}
    cells = [r for r in agg["rows"] if r["ood_dataset"] != "Average"]
    assert len(cells) == len(protocols) * len(SCORES) * 4 and all(r["n_runs"] == 2 for r in cells)
    for r in cells:
        key = (r["protocol"], r["score"], r["ood_dataset"])
        vals = [per_seed[k][key]["auroc"] for k in (1, 2)]
        assert r["auroc"] == pytest.approx(np.mean(vals)) and r["auroc_std"] == pytest.approx(np.std(vals))
    md = (agg_dir / "aggregate.md").read_text()
    assert f"### {dataset}, wrn, full protocol: 2 runs (seed1, seed2)" in md and "| RecLag |" in md
    for name in ["aggregate.csv", "aggregate.tex"] + [f"tables/{dataset}_wrn_{p}.{ext}" for p in protocols
                                                      for ext in ("md", "csv", "tex")]:
        assert (agg_dir / name).stat().st_size > 100, name
    assert (agg_dir / "aggregate.png").read_bytes()[:4] == b"\x89PNG"


def test_the_launcher_ran_each_seed_as_a_job(runs):
    rc, log = runs["res"]["cifar100"]
    assert rc == 0, log[-3000:]
    jobs = runs["out"] / "jobs/cifar100"
    assert {p.name for p in jobs.iterdir() if p.is_dir()} >= {"cifar100-seed1-wrn", "cifar100-seed2-wrn", "aggregate"}
    for k in (1, 2):  # every step of a finished job has its marker: a resubmission would skip them
        assert len(list((jobs / f"cifar100-seed{k}-wrn/done").iterdir())) == 3
    assert "cifar100-seed1-wrn: finished" in log and "aggregate: finished" in log


@pytest.mark.parametrize("script,args", [("reproduce_cifar10.sh", ["--seeds", "1", "2", "--models", "wrn", "resnet18"]),
                                         ("reproduce_imagenet.sh", ["--seeds", "1", "2"])])
def test_launcher_runs_the_sequential_commands(tmp_path, script, args):
    """The launcher's jobs hold exactly the commands of the sequential run, in its order: its results
    are the sequential run's."""
    env = {**os.environ, "PYTHON": sys.executable}
    common = [*args, "--out", tmp_path, "--dataset_path", tmp_path / "data", "--dry-run"]
    seq = sh(script, *common, env=env)
    jobs = sh(script, *common, "--launcher", "slurm", env=env)
    assert seq.returncode == 0 and jobs.returncode == 0, seq.stderr + jobs.stderr
    in_jobs = [line.strip() for line in jobs.stdout.splitlines() if not line.startswith("job ")]
    assert in_jobs == seq.stdout.splitlines() and len(in_jobs) > 4
    assert sum(line.startswith("job ") for line in jobs.stdout.splitlines()) == (5 if "cifar" in script else 3)


def test_imagenet_script_and_entry_points_end_to_end(runs):
    rc, log = runs["res"]["imagenet"]
    assert rc == 0, log[-3000:]
    out = runs["out"]
    assert "generate_stored_pattern_imagenet.py" in log and "test_score_ood_detection_imagenet.py" in log
    store = out / "stored_pattern/imagenet/tv_resnet18"
    assert {p.stem for p in (store / "features").glob("*.pt")} == {"train", "test", *IMAGENET_OOD}
    train = torch.load(store / "features/train.pt", weights_only=True)
    assert train["features"].shape == (16, 512) and train["logits"].shape == (16, 1000)
    seeds = []
    for k in (1, 2):
        rows = _rows(out / f"results/imagenet/seed{k}/tv_resnet18/sampled/results.json")
        assert sorted((r["score"], r["ood_dataset"]) for r in rows) == sorted(itertools.product(SCORES, IMAGENET_OOD))
        assert all(r["id_dataset"] == "imagenet" and r["model"] == "tv:resnet18" and r["n_id"] == 8 for r in rows)
        assert all(r["seed"] == k and r["repeats"] == 3 and r["n_ood"] == 1 for r in rows)  # floor(8 / 5) per draw
        seeds.append(rows)
    agg = json.loads((out / "results/imagenet/aggregate/aggregate.json").read_text())
    assert [(g["id_dataset"], g["protocol"], g["runs"]) for g in agg["groups"]] == [
        ("imagenet", "sampled", ["seed1", "seed2"])]
    by = {(r["score"], r["ood_dataset"]): r for r in agg["rows"]}
    for r1, r2 in zip(*seeds):
        assert by[(r1["score"], r1["ood_dataset"])]["fpr95"] == pytest.approx((r1["fpr95"] + r2["fpr95"]) / 2)


def test_data_check_stops_the_script_before_training(runs):
    rc, log = runs["res"]["verify"]
    assert rc == 1, log[-3000:]
    assert "verify_data.py" in log and "NOT READY" in log and "too few images (100 of 50,000)" in log
    assert "train_model.py" not in log and not (runs["base"] / "out_verify").exists()


# ----------------------------------------------------------------------------------------------------
# Dry runs, options, entry points
# ----------------------------------------------------------------------------------------------------
def test_dry_run_plan_covers_the_paper_tables(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    combos, steps = [], []
    for dataset in ("cifar10", "cifar100"):
        proc = sh(f"reproduce_{dataset}.sh", "--dry-run", "--dataset_path", "/data/ood", "--device", "cuda:0",
                  env=env, cwd=tmp_path)
        noise = [line for line in proc.stderr.splitlines() if "setlocale" not in line]  # bash, locale not installed
        assert proc.returncode == 0 and not noise, proc.stderr
        for script, opts in plan(proc.stdout):
            steps.append((dataset, script))
            if script == "test_score_ood_detection.py":
                assert opts["--dataset"] == [dataset] and opts["--device"] == ["cuda:0"]
                (model,), (protocol,) = opts["--model"], opts["--protocol"]
                assert opts["--results_dir"] == [f"./results/{dataset}/seed1/{model}/{protocol}"]
                combos += [(dataset, model, protocol, s.name, o) for s in scores.resolve_names(opts["--score"])
                           for o in opts["--ood"]]
    expected = set(itertools.product(["cifar10", "cifar100"], BACKBONES, ["full", "sampled"], SCORES, CIFAR_OOD))
    assert len(expected) == 2 * 3 * 2 * len(SCORES) * 9
    assert len(combos) == len(expected) and set(combos) == expected  # each combination exactly once
    per_backbone = ["train_model.py", "generate_stored_pattern.py"] + ["test_score_ood_detection.py"] * 2
    for dataset in ("cifar10", "cifar100"):
        assert [s for d, s in steps if d == dataset] == ["verify_data.py"] + per_backbone * 3 + ["aggregate_results.py"]
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_dry_run_with_seeds_gives_each_seed_its_files(tmp_path):
    proc = sh("reproduce_cifar.sh", "cifar100", "--dry-run", "--seeds", "1", "2", "3", "--models", "wrn", "resnet18",
              "--out", "runs", "--epochs", "7", "--download", "--score-args", "--react_percentile 98",
              "--eval-args", "--fpr_variant strict", "--train-args", "--lr 0.1", "--", "--workers", "8",
              env={**os.environ, "PYTHON": sys.executable}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = plan(proc.stdout)
    by_script = {}
    for script, opts in steps:
        by_script.setdefault(script, []).append(opts)
    assert by_script["verify_data.py"] == [{"--dataset_path": ["./data"], "--for": ["cifar100"], "--ood": CIFAR_OOD,
                                            "--download": []}]
    train = {(o["--seed"][0], o["--model"][0]): o for o in by_script["train_model.py"]}
    assert set(train) == {(k, m) for k in "123" for m in ("wrn", "resnet18")}
    for (k, m), o in train.items():
        assert o["--checkpoint"] == [f"runs/checkpoints/cifar100/seed{k}/{m}.pt"] and o["--epochs"] == ["7"]
        assert "--resume" in o and o["--lr"] == ["0.1"] and o["--workers"] == ["8"] and "--download" in o
        assert "--react_percentile" not in o and "--fpr_variant" not in o
    for o in by_script["generate_stored_pattern.py"]:
        k, m = o["--seed"][0], o["--model"][0]
        assert o["--stored_pattern_dir"] == [f"runs/stored_pattern/seed{k}"]
        assert o["--checkpoint"] == train[(k, m)]["--checkpoint"] and o["--react_percentile"] == ["98"]
        assert "--fpr_variant" not in o and "--lr" not in o
    scoring = by_script["test_score_ood_detection.py"]
    assert len(scoring) == 3 * 2 * 2
    for o in scoring:
        k, m, p = o["--seed"][0], o["--model"][0], o["--protocol"][0]
        assert o["--results_dir"] == [f"runs/results/cifar100/seed{k}/{m}/{p}"]
        assert o["--stored_pattern_dir"] == [f"runs/stored_pattern/seed{k}"]
        assert o["--react_percentile"] == ["98"] and o["--fpr_variant"] == ["strict"] and o["--workers"] == ["8"]
    (agg,) = by_script["aggregate_results.py"]
    assert agg["--out"] == ["runs/results/cifar100/aggregate"]
    assert steps[-1][0] == "aggregate_results.py"


def test_imagenet_dry_run_and_entry_point_defaults(tmp_path, capsys):
    proc = sh("reproduce_imagenet.sh", "--dry-run", "--seeds", "1", "2", "--device", "cuda:0",
              env={**os.environ, "PYTHON": sys.executable}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = plan(proc.stdout)
    assert [s for s, _ in steps] == ["verify_data.py"] + (["generate_stored_pattern_imagenet.py"] + [
        "test_score_ood_detection_imagenet.py"] * 2) * 2 + ["aggregate_results.py"]
    assert steps[0][1]["--for"] == ["imagenet"] and steps[0][1]["--ood"] == IMAGENET_OOD
    combos = [(o["--seed"][0], o["--protocol"][0], s.name, d) for name, o in steps
              if name == "test_score_ood_detection_imagenet.py" for s in scores.resolve_names(o["--score"])
              for d in o["--ood"]]
    assert len(combos) == 2 * 2 * len(SCORES) * 4 == len(set(combos))
    for name, o in steps[1:-1]:
        assert o["--model"] == ["resnet50"] and o["--dataset"] == ["imagenet"] and "--checkpoint" not in o
        assert o["--stored_pattern_dir"] == ["./stored_pattern"]  # features shared by the seeds

    assert imagenet_argv([]) == ["--dataset", "imagenet", "--model", "resnet50", "--pretrained"]
    assert imagenet_argv(["--device", "cpu"])[-2:] == ["--device", "cpu"]
    assert imagenet_argv(["--model", "tv:resnet18", "--checkpoint", "w.pt"]) == [
        "--dataset", "imagenet", "--model", "tv:resnet18", "--checkpoint", "w.pt"]
    assert imagenet_argv(["--dataset=cifar10", "--pretrained"]) == ["--model", "resnet50", "--dataset=cifar10",
                                                                    "--pretrained"]
    for entry in (generate_stored_pattern_imagenet, test_score_ood_detection_imagenet):
        with pytest.raises(SystemExit) as e:
            entry.main(["--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and "adds --dataset imagenet --model resnet50 --pretrained" in out
        assert "--stored_pattern_dir" in out  # the wrapped script's own options follow


@pytest.mark.parametrize("script,args,message", [
    ("reproduce_cifar.sh", [], "give the data set first"),
    ("reproduce_cifar.sh", ["svhn"], "unknown data set 'svhn'"),
    ("reproduce_cifar10.sh", ["--seed", "3"], "--seed is set by this script"),
    ("reproduce_cifar10.sh", ["--seeds", "one"], "--seeds takes integers"),
    ("reproduce_cifar10.sh", ["--seeds"], "--seeds needs at least one value"),
    ("reproduce_cifar100.sh", ["--epochs", "0"], "--epochs must be a positive integer"),
    ("reproduce_cifar100.sh", ["--protocols", "both"], "--protocols: full, sampled or paper"),
    ("reproduce_cifar10.sh", ["--learner-seeds", "0"], "--learner-seeds must be a positive integer"),
    ("reproduce_imagenet.sh", ["--results_dir", "x"], "--results_dir is set by this script"),
    ("reproduce_imagenet.sh", ["--dataset_path"], "--dataset_path needs a value"),
])
def test_script_usage_errors(tmp_path, script, args, message):
    proc = sh(script, *args, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_script_help():
    for script in ("reproduce_cifar10.sh", "reproduce_cifar100.sh", "reproduce_imagenet.sh"):
        proc = sh(script, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith("usage:") and "--dry-run" in proc.stdout


# ----------------------------------------------------------------------------------------------------
# aggregate_results.py on hand-checked numbers
# ----------------------------------------------------------------------------------------------------
def _row(score, ood, fpr, auroc, protocol="full", model="wrn", **kw):
    return {"id_dataset": "cifar10", "model": model, "score": score, "ood_dataset": ood, "protocol": protocol,
            "repeats": 1, "seed": None, "n_id": 100, "n_ood": 50, "auroc": auroc, "aupr_in": auroc,
            "aupr_out": auroc, "fpr95": fpr, "auroc_std": 0.0, "fpr95_std": 0.0, **kw}


def _write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"rows": rows}))
    return path / "results.json"


def test_aggregate_two_seeds_hand_checked(tmp_path, capsys):
    #            seed 1              seed 2            mean ± std (ddof 0)
    # MSP  SVHN  FPR .30 AUROC .90   FPR .40 AUROC .80  35.00±5.00  85.00±5.00
    # MSP  iSUN  FPR .10 AUROC .95   FPR .20 AUROC .85  15.00±5.00  90.00±5.00   (best values in bold)
    # MSP  Avg   FPR .20 AUROC .925  FPR .30 AUROC .825 25.00±5.00  87.50±5.00
    # RecLag SVHN FPR .05 AUROC .99  FPR .05 AUROC .97   5.00       98.00±1.00
    # RecLag iSUN FPR .25 AUROC .91  FPR .15 AUROC .93  20.00±5.00  92.00±1.00
    # RecLag Avg  FPR .15 AUROC .95  FPR .10 AUROC .95  12.50±2.50  95.00
    f1 = _write(tmp_path / "res/seed1/wrn/full", [_row("MSP", "SVHN", .30, .90), _row("MSP", "iSUN", .10, .95),
                                                  _row("RecLag", "SVHN", .05, .99), _row("RecLag", "iSUN", .25, .91)])
    _write(tmp_path / "res/seed2/wrn/full", [_row("RecLag", "iSUN", .15, .93), _row("MSP", "SVHN", .40, .80),
                                             _row("MSP", "iSUN", .20, .85), _row("RecLag", "SVHN", .05, .97)])
    # the same file twice (as a file and inside a folder) counts once
    agg = aggregate_results.main([str(tmp_path / "res"), str(f1), "--out", str(tmp_path / "agg")])
    md = (tmp_path / "agg/aggregate.md").read_text()
    assert capsys.readouterr().out.startswith(md + "2 results.json file(s)")
    assert md.splitlines()[0] == "### cifar10, wrn, full protocol: 2 runs (seed1, seed2); FPR95 and AUROC in %, mean ± std over runs"
    assert "| MSP | 35.00±5.00 | 85.00±5.00 | **15.00±5.00** | 90.00±5.00 | 25.00±5.00 | 87.50±5.00 |" in md
    assert ("| RecLag | **5.00** | **98.00±1.00** | 20.00±5.00 | **92.00±1.00** | **12.50±2.50** | **95.00** |"
            in md)
    by = {(r["score"], r["ood_dataset"]): r for r in agg["rows"]}
    assert by[("MSP", "Average")]["fpr95"] == pytest.approx(0.25) and by[("MSP", "Average")]["runs"] == ["seed1", "seed2"]
    assert by[("RecLag", "iSUN")]["values"]["fpr95"] == pytest.approx([0.25, 0.15])
    assert json.loads((tmp_path / "agg/aggregate.json").read_text())["rows"][0]["n_runs"] == 2
    csv_lines = (tmp_path / "agg/aggregate.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id_dataset,model,protocol,score,ood_dataset,n_runs,FPR95,FPR95_std,AUROC,AUROC_std")
    assert "cifar10,wrn,full,MSP,Average,2,25.0000,5.0000,87.5000,5.0000" in csv_lines[3]
    assert (tmp_path / "agg/tables/cifar10_wrn_full.csv").read_text().splitlines()[1] == (
        "MSP,35.0000,5.0000,85.0000,5.0000,15.0000,5.0000,90.0000,5.0000,25.0000,5.0000,87.5000,5.0000")
    tex = (tmp_path / "agg/aggregate.tex").read_text()
    assert r"\textbf{12.50$\pm$2.50}" in tex and r"in \%, mean $\pm$ std over runs}" in tex
    assert (tmp_path / "agg/aggregate.png").read_bytes()[:4] == b"\x89PNG"

    # sample std (ddof 1): 5 * sqrt(2)
    agg = aggregate_results.main([str(tmp_path / "res"), "--out", str(tmp_path / "agg1"), "--ddof", "1",
                                  "--no_plot", "--quiet"])
    msp = {(r["score"], r["ood_dataset"]): r for r in agg["rows"]}[("MSP", "SVHN")]
    assert msp["fpr95_std"] == pytest.approx(0.05 * np.sqrt(2)) and not (tmp_path / "agg1/aggregate.png").exists()


def test_aggregate_groups_single_runs_and_errors(tmp_path, capsys):
    # one sampled run keeps its own std over draws; other models and protocols make their own tables
    _write(tmp_path / "a", [_row("MSP", "SVHN", .30, .90, protocol="sampled", fpr95_std=.02, auroc_std=.01)])
    _write(tmp_path / "b", [_row("MSP", "SVHN", .50, .70, model="resnet18")])
    agg = aggregate_results.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "agg")])
    assert [(g["model"], g["protocol"], g["max_runs"]) for g in agg["groups"]] == [("wrn", "sampled", 1),
                                                                                  ("resnet18", "full", 1)]
    md = (tmp_path / "agg/aggregate.md").read_text()
    assert "± std over the sampled protocol's draws" in md and "| MSP | **30.00±2.00** | **90.00±1.00** |" in md
    assert "| MSP | **50.00** | **70.00** |" in md and "Average" not in md  # one OOD set: no average column
    capsys.readouterr()
    # nothing to aggregate, or not a results.json: a one-paragraph error, exit status 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/results.json").write_text('{"rows": [{"score": "MSP"}]}')
    for args in ([str(tmp_path / "empty")], [str(tmp_path / "missing")], [str(tmp_path / "bad")]):
        with pytest.raises(SystemExit) as e:
            aggregate_results.main(args + ["--out", str(tmp_path / "x")])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no results.json under" in err and "does not exist" in err and "is not a results.json" in err


def test_aggregate_skips_archives_and_counts_a_checkpoint_once(tmp_path, capsys):
    """previous/ holds results a later run moved aside; the demo's extended/ table repeats its checkpoint's
    rows: neither is another run."""
    _write(tmp_path / "res/seed1", [_row("MSP", "SVHN", .30, .90, checkpoint="a")])
    _write(tmp_path / "res/seed1/extended", [_row("MSP", "SVHN", .30, .90, checkpoint="a"),
                                             _row("KNN", "SVHN", .10, .99, checkpoint="a")])
    _write(tmp_path / "res/seed1/previous/20260101-000000", [_row("MSP", "SVHN", .90, .10, checkpoint="old")])
    _write(tmp_path / "res/seed2", [_row("MSP", "SVHN", .40, .80, checkpoint="b")])
    agg = aggregate_results.main([str(tmp_path / "res"), "--out", str(tmp_path / "agg"), "--no_plot"])
    by = {(r["score"], r["ood_dataset"]): r for r in agg["rows"]}
    assert by[("MSP", "SVHN")]["values"]["fpr95"] == pytest.approx([0.30, 0.40])
    assert by[("KNN", "SVHN")]["n_runs"] == 1
    assert "1 row(s) of " in capsys.readouterr().out
    assert "previous" not in json.dumps(agg["groups"])


def test_aggregate_refuses_runs_that_mix_settings(tmp_path, capsys):
    """Runs are averaged only when they differ in nothing but their seeds; --allow_mixed overrides."""
    _write(tmp_path / "s1", [_row("MSP", "SVHN", .30, .90, fpr_variant="standard", input_size=64)])
    _write(tmp_path / "s2", [_row("MSP", "SVHN", .40, .80, fpr_variant="strict", input_size=64)])
    args = [str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "agg"), "--no_plot"]
    with pytest.raises(SystemExit) as e:
        aggregate_results.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "fpr_variant" in err and '"strict" in' in err and "--allow_mixed" in err and "input_size" not in err
    # a reference-recipe run is not another seed of the fixed recipe
    _write(tmp_path / "r1", [_row("MSP", "SVHN", .30, .90, recipe="fixed")])
    _write(tmp_path / "r2", [_row("MSP", "SVHN", .40, .80, recipe="reference")])
    with pytest.raises(SystemExit):
        aggregate_results.main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "agg2")])
    assert "recipe" in capsys.readouterr().err
    aggregate_results.main(args + ["--allow_mixed"])
    assert "averaging runs with different settings" in capsys.readouterr().out
    # a score's settings: percentile 90 vs 98 is named, seeds are not a difference
    react = lambda p, seed: _row("ReAct", "SVHN", .3, .9, settings={"percentile": p, "T": 1.0},  # noqa: E731
                                 replicates={"seed": [seed]})
    _write(tmp_path / "r1", [react(90.0, 1)])
    _write(tmp_path / "r2", [react(98.0, 2)])
    with pytest.raises(SystemExit):
        aggregate_results.main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "agg2")])
    err = capsys.readouterr().err
    assert "ReAct: T=1.0, percentile=90.0 in" in err and "T=1.0, percentile=98.0 in" in err
    _write(tmp_path / "r2", [react(90.0, 2)])
    agg = aggregate_results.main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "agg3")])
    assert agg["rows"][0]["n_runs"] == 2 and agg["rows"][0]["settings"] == {"percentile": 90.0, "T": 1.0}


def test_aggregate_pools_replicates(tmp_path):
    """A row fitted with several learner seeds contributes each: mean ± std over runs x seeds."""
    reps = lambda vals: [{"auroc": a, "fpr95": f, "aupr_in": a, "aupr_out": a} for a, f in vals]  # noqa: E731
    _write(tmp_path / "seed1", [_row("RecLag", "SVHN", .2, .9, replicate_metrics=reps([(.88, .25), (.92, .15)]),
                                     replicates={"seed": [1, 2]})])
    _write(tmp_path / "seed2", [_row("RecLag", "SVHN", .4, .8, replicate_metrics=reps([(.78, .45), (.82, .35)]),
                                     replicates={"seed": [1, 2]})])
    agg = aggregate_results.main([str(tmp_path / "seed1"), str(tmp_path / "seed2"), "--out", str(tmp_path / "a"),
                                  "--no_plot", "--quiet"])
    r = agg["rows"][0]
    assert r["values"]["auroc"] == pytest.approx([.88, .92, .78, .82])
    assert r["auroc"] == pytest.approx(0.85) and r["auroc_std"] == pytest.approx(np.std([.88, .92, .78, .82]))
    assert "RecLag: mean ± std over 4 fits" in (tmp_path / "a/aggregate.md").read_text()
