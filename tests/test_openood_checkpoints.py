"""verify_data.py --benchmark openood --checkpoints: OpenOOD v1.5's released checkpoints, declared once (the four
zips of tests/fixtures/openood_postprocessors.md, section 5, with their Google Drive ids), fetched from a local
HTTP server on 127.0.0.1 (--mirror) or through a stand-in for gdown (their Drive ids), checked member by member,
unpacked as <checkpoints_dir>/<run folder>/s<k>/best.ckpt whichever folders the zip wraps them in, reported
complete once each best.ckpt loads into its backbone, and never fetched twice; a corrupt zip, a zip of
another layout, a checkpoint of another network and a folder that is not complete are each one line; and an
unpacked best.ckpt scores with test_score_ood_detection.py --benchmark openood --checkpoint.

The checkpoints are state dicts of the real networks (OpenOOD's key layout) whose every tensor is one value
broadcast to its shape: a few KB each, loaded as a full one is. No test reaches any address but 127.0.0.1
(tests/test_download.py's ``loopback_only``)."""
import functools
import hashlib
import io
import re
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

import datagen
import models
import test_score_ood_detection
import verify_data
from ood.data import DRIVE
from ood.data.openood import BENCHMARK
from test_download import failures, loopback_only, mirror  # noqa: F401  (fixtures: the local server, no network)

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "tests" / "fixtures" / "openood_postprocessors.md"
RUN = "cifar10_resnet18_32x32_base_e100_lr0.1_default"
ZIP = "cifar10_res18_v1.5.zip"
CIFAR10 = BENCHMARK.checkpoints_of(BENCHMARK.id_set("cifar10"))[0]


@functools.lru_cache(maxsize=None)
def shapes(name, num_classes):
    return tuple((k, v.shape, v.dtype) for k, v in models.build_model(name, num_classes).state_dict().items())


def tiny_state(name="openood_resnet18_32x32", num_classes=10, value=0.0):
    """A state dict with ``name``'s keys and shapes (as OpenOOD's recorders save ``net.state_dict()``), each
    tensor a broadcast of one value: torch.save stores one element per tensor."""
    return {k: torch.full((), value if dtype.is_floating_point else 0, dtype=dtype).expand(shape)
            for k, shape, dtype in shapes(name, num_classes)}


def saved(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def release(members):
    """The bytes of a zip holding ``members`` ({path: bytes}), plus the macOS metadata a zip made on a Mac has."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("__MACOSX/._best.ckpt", b"\0\5\26\7")
    return buf.getvalue()


# where the three runs lie in the zip: under a folder named like the zip and the run folder (as users of
# OpenOOD's release write their paths), under the run folder only, or at its top
LAYOUTS = {"wrapped": f"cifar10_res18_v1.5/{RUN}/", "run": f"{RUN}/", "top": ""}


def cifar10_release(layout="wrapped", runs=(0, 1, 2), states=None):
    prefix = LAYOUTS[layout]
    states = states or {}
    members = {f"{prefix}s{k}/best.ckpt": states.get(k, saved(tiny_state(value=0.01 * k))) for k in runs}
    if layout == "wrapped":
        members["cifar10_res18_v1.5/README.txt"] = b"three runs"  # beside the run folder: not put in place
    return release(members)


def args(root, *more):
    return ["--benchmark", "openood", "--checkpoints", "--for", "cifar10", "--checkpoints_dir", str(root), *more]


def tree(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_declared_once_as_openood_publishes_them():
    """The four archives are the ones OpenOOD's README and download.py name, with their Drive ids; the three
    ResNet-18 ones unpack into the run folder OpenOOD's scripts read, each holding s0, s1 and s2's best.ckpt,
    which must load into the backbone of OpenOOD's network."""
    text = FACTS.read_text().split("## 5.", 1)[1].split("## 6.", 1)[0]
    facts = {m[1]: (m[2], m[3]) for m in re.finditer(
        r"^\| `([\w.]+\.zip)` \| `([\w-]+)` .*?\| ([^|]*) \|$", text, re.M)}
    assert len(facts) == len(BENCHMARK.checkpoints) == 4
    models_of = {"cifar10": "openood_resnet18_32x32", "cifar100": "openood_resnet18_32x32",
                 "imagenet200": "openood_resnet18_224x224", "imagenet": ""}
    for r in BENCHMARK.checkpoints:
        drive_id, where = facts[r.archive.file]
        assert r.archive.drive_id == drive_id and r.archive.source == f"{DRIVE}{drive_id}"
        assert r.model == models_of[r.id_set]
        if r.model:
            run = re.search(r"\./results/([^/]+)/s", where)[1]
            assert r.archive.dest == run and r.archive.contents == ("s0/best.ckpt", "s1/best.ckpt", "s2/best.ckpt")
        else:  # ImageNet-1k: ResNet-50s of several methods; the baseline is torchvision's own weights
            assert r.archive.dest == "imagenet_res50_v1.5" and not r.archive.contents
    assert [BENCHMARK.checkpoints_of(s)[0].id_set for s in BENCHMARK.id_sets] == list(models_of)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fetched_checked_unpacked_then_left_alone(tmp_path, mirror, capsys, layout):
    """Missing: one line with the command. Fetched from the mirror, unpacked as <dir>/<run>/s<k>/best.ckpt
    whichever folders the zip wraps the runs in, each loaded into openood_resnet18_32x32: complete. A second
    run fetches nothing and touches nothing; without --download it reports them complete."""
    root = tmp_path / "ckpt"
    assert verify_data.main(args(root)) == 1
    out = capsys.readouterr().out
    assert f"CIFAR-10: missing (in {root / RUN}). Fetch them with: python verify_data.py --benchmark openood " \
           f"--checkpoints --for cifar10 --download --checkpoints_dir {root} (or fetch {ZIP} by hand from " \
           f"{DRIVE}1byGeYxM_PlLjT72wZsMQvP6popJeWBgt and put it at {root / ZIP}" in out
    assert not root.exists()

    mirror.files[ZIP] = cifar10_release(layout)
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 0
    out, err = capsys.readouterr()
    assert not failures(err) and mirror.asked(ZIP) == [None]
    assert f"{ZIP}: unpacked into {root / RUN}" in out
    beside = f"{ZIP}: put cifar10_res18_v1.5/{RUN}/ in place; left out what lies beside it: cifar10_res18_v1.5/README.txt"
    assert (beside in out) == (layout == "wrapped")
    runs = [root / RUN / f"s{k}" / "best.ckpt" for k in range(3)]
    assert "OK: the released checkpoints 'cifar10' needs are in place" in out
    assert f"--model openood_resnet18_32x32 --checkpoint {', '.join(map(str, runs))}" in out
    with zipfile.ZipFile(root / ZIP) as zf:  # the archive is kept beside them, as the data archives are
        assert [p.read_bytes() for p in runs] == [zf.read(f"{LAYOUTS[layout]}s{k}/best.ckpt") for k in range(3)]
    assert sorted(p.name for p in root.iterdir()) == sorted([ZIP, RUN])  # no .part, staging or wrapper
    assert sorted(p.name for p in (root / RUN).iterdir()) == ["s0", "s1", "s2"]
    state = torch.load(runs[2], weights_only=True)
    models.build_model("openood_resnet18_32x32", 10).load_state_dict(state)

    before = tree(root)
    mirror.requests.clear()
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 0
    assert "fetching" not in capsys.readouterr().out and not mirror.requests
    assert tree(root) == before
    assert verify_data.main(args(root)) == 0
    table = capsys.readouterr().out
    assert re.search(rf"CIFAR-10 +{RUN} +3/3 +openood_resnet18_32x32 +ok", table), table


def test_corrupt_zip_is_refused(tmp_path, mirror, capsys):
    """A zip with a flipped byte: one line, kept aside as .corrupt, nothing unpacked; served whole, it is."""
    root = tmp_path / "ckpt"
    mirror.files[ZIP] = cifar10_release()
    mirror.modes[ZIP] = "corrupt"
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 1
    out, err = capsys.readouterr()
    [line] = failures(err)
    assert line.startswith(f"download failed: {ZIP}: the download from {mirror.url}/{ZIP} is a damaged zip archive")
    assert f"kept aside as {root / (ZIP + '.corrupt')}" in line
    assert sorted(p.name for p in root.iterdir()) == [ZIP + ".corrupt"]
    assert "NOT READY: 1 of the 1 released checkpoint sets" in out
    mirror.modes.clear()
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 0
    assert (root / RUN / "s0" / "best.ckpt").is_file()


def test_zip_of_another_layout_says_what_it_holds(tmp_path, mirror, capsys):
    """A zip without the three runs under one folder is not unpacked: one line naming its best.ckpt files;
    the zip is kept, and the next run checks that copy again instead of fetching it anew."""
    root = tmp_path / "ckpt"
    mirror.files[ZIP] = cifar10_release(runs=(0, 1))
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 1
    [line] = failures(capsys.readouterr().err)
    assert line == (f"download failed: {ZIP}: expected one folder holding s0/best.ckpt, s1/best.ckpt, s2/best.ckpt, "
                    f"but no folder holds them all; its best.ckpt files: cifar10_res18_v1.5/{RUN}/s0/best.ckpt, "
                    f"cifar10_res18_v1.5/{RUN}/s1/best.ckpt. Nothing was put at {root / RUN}; the archive is kept "
                    f"at {root / ZIP}: unpack it by hand so that {root / RUN}/s0/best.ckpt and the others exist, or "
                    f"report its layout.")
    assert sorted(p.name for p in root.iterdir()) == [ZIP]
    mirror.requests.clear()
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 1
    assert not mirror.requests and len(failures(capsys.readouterr().err)) == 1


def test_a_checkpoint_that_does_not_load_is_named(tmp_path, mirror, capsys):
    """Unpacked, but s1 is a CIFAR-100 network and s2 no torch file: each is named, with the first key that
    differs; --download then leaves the folder alone (one line: move it aside) and fetches nothing."""
    root = tmp_path / "ckpt"
    mirror.files[ZIP] = cifar10_release(states={1: saved(tiny_state(num_classes=100)), 2: b"not a checkpoint"})
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 1
    out, err = capsys.readouterr()
    assert not failures(err)
    assert ("s1/best.ckpt does not fit openood_resnet18_32x32 with 10 classes (first difference: 'fc.weight' has "
            "shape (100, 512) in the checkpoint but (10, 512) in the model; 2 keys of another shape") in out
    assert f"checkpoint {root / RUN / 's2' / 'best.ckpt'} is not a file torch.save wrote" in out
    assert re.search(rf"CIFAR-10 +{RUN} +1/3 ", out)
    mirror.requests.clear()
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 1
    [line] = failures(capsys.readouterr().err)
    assert line.startswith(f"download failed: cifar10_res18_v1.5: {root / RUN} already exists and is not complete "
                           f"(s1/best.ckpt does not fit") and f"mv {root / RUN} {root / RUN}.old" in line
    assert not mirror.requests


def test_missing_runs_name_what_is_there(tmp_path, capsys):
    """A run folder put there by hand with one run missing and a checkpoint elsewhere: the missing file and
    the checkpoint files found are named."""
    root = tmp_path / "ckpt"
    for k in (0, 1):
        (root / RUN / f"s{k}").mkdir(parents=True)
        (root / RUN / f"s{k}" / "best.ckpt").write_bytes(saved(tiny_state()))
    (root / RUN / "seed2").mkdir()
    (root / RUN / "seed2" / "last.pth").write_bytes(saved(tiny_state()))
    assert verify_data.main(args(root)) == 1
    out = capsys.readouterr().out
    assert ("s2/best.ckpt missing; its checkpoint files: s0/best.ckpt, s1/best.ckpt, seed2/last.pth "
            f"(in {root / RUN}). Move it aside (mv {root / RUN} {root / RUN}.old)") in out


def test_drive_ids_through_gdown(tmp_path, monkeypatch, capsys):
    """Without a mirror, each zip comes from its Google Drive id through gdown (a stand-in here: the tests have
    no network), into a .part file that is then checked and unpacked; ImageNet-1k's ResNet-50s need one
    checkpoint file at least and are not loaded."""
    asked = []
    zips = {"1byGeYxM_PlLjT72wZsMQvP6popJeWBgt": cifar10_release(),
            "15PdDMNRfnJ7f2oxW6lI-Ge4QJJH3Z0Fy": release({
                "imagenet_res50_v1.5/imagenet_resnet50_tvsv1_augmix_default/ckpt.pth": saved({"w": torch.zeros(1)}),
                "imagenet_res50_v1.5/README.txt": b"ResNet-50s"})}

    def download(url=None, output=None, resume=False, quiet=True):
        asked.append((url, Path(output).name, resume))
        Path(output).write_bytes(zips[url.removeprefix(DRIVE)])
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    root = tmp_path / "ckpt"
    for target in ("cifar10", "imagenet"):
        argv = ["--benchmark", "openood", "--checkpoints", "--for", target, "--download", "--checkpoints_dir", str(root)]
        assert verify_data.main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert asked == [(f"{DRIVE}1byGeYxM_PlLjT72wZsMQvP6popJeWBgt", f"{ZIP}.part", True),
                     (f"{DRIVE}15PdDMNRfnJ7f2oxW6lI-Ge4QJJH3Z0Fy", "imagenet_res50_v1.5.zip.part", True)]
    assert (root / RUN / "s1" / "best.ckpt").is_file()
    assert (root / "imagenet_res50_v1.5" / "imagenet_resnet50_tvsv1_augmix_default" / "ckpt.pth").is_file()
    assert re.search(r"ImageNet-1k +imagenet_res50_v1.5 +1 +\(not loaded\) +ok", out), out


def test_usage_errors(tmp_path, capsys):
    for argv in (["--checkpoints"], ["--benchmark", "openood", "--checkpoints_dir", str(tmp_path)],
                 ["--benchmark", "openood", "--checkpoints", "--ood", "tin"],
                 ["--benchmark", "openood", "--checkpoints", "--expect", "cifar10/tin=3"],
                 ["--benchmark", "openood", "--checkpoints", "--for", "nosuch"],
                 ["--benchmark", "openood", "--checkpoints", "--mirror", "http://127.0.0.1:9"]):
        with pytest.raises(SystemExit) as e:
            verify_data.main(argv)
        assert e.value.code == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err


def test_an_unpacked_checkpoint_scores(tmp_path, mirror, monkeypatch, capsys):
    """The path the verifier prints is what --checkpoint takes: test_score_ood_detection.py --benchmark
    openood scores with s0/best.ckpt on OpenOOD's layout in small."""
    root = tmp_path / "ckpt"
    mirror.files[ZIP] = cifar10_release()
    assert verify_data.main(args(root, "--download", "--mirror", mirror.url)) == 0
    datagen.write_openood(tmp_path / "data", "cifar10", n_id=(6, 6, 6), n_ood=3)
    monkeypatch.chdir(tmp_path)
    rows = test_score_ood_detection.main([
        "--benchmark", "openood", "--dataset", "cifar10", "--dataset_path", str(tmp_path / "data"),
        "--model", "openood_resnet18_32x32", "--checkpoint", str(root / RUN / "s0" / "best.ckpt"), "--score", "MSP",
        "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet", "--batch_size", "16"])
    assert {r["ood_dataset"] for r in rows} == {"cifar100", "tin", "mnist", "svhn", "texture", "places365"}
    assert all(r["benchmark"] == "openood" and r["model"] == "openood_resnet18_32x32" for r in rows)
    assert {r["checkpoint"] for r in rows} == {hashlib.sha256((root / RUN / "s0" / "best.ckpt").read_bytes()).hexdigest()}
    # its weights, not a fresh network's: every logit 0, so MSP is one value (AUROC 0.5) and each image is
    # classified 0 (the ID test labels cycle through 0..3: 2 of 6)
    assert {r["auroc"] for r in rows} == {0.5} and all(r["id_accuracy"] == pytest.approx(1 / 3) for r in rows)
