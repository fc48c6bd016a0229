"""A new ID set and a new OOD set are one declaration each (tests/extra_sets.py), with no other file
edited: the verifier lists and counts them, the scripts' --help names them, ``--dataset kmnist`` trains
and is scored against its default OOD set Glyphs.

The registrations are undone after this module, so that the other tests see the built-in sets only."""

import pytest

import datagen
import generate_stored_pattern
import sweep_scores
import test_score_ood_detection
import train_model
import verify_data
from ood import data as D
from ood.data import verify as V
from ood.errors import UserError

TINY = ["--model", "tiny_models:no_norm_net", "--amp", "off", "--device", "cpu", "--workers", "0", "--quiet",
        "--batch_size", "20"]


@pytest.fixture(scope="module")
def extra(register_sets):
    """tests/extra_sets.py imported (its two registrations done) for this module only."""
    return register_sets("extra_sets")


@pytest.fixture
def root(extra, tmp_path, monkeypatch):
    """KMNIST idx files (60 training, 20 test images) and Glyphs (2 class folders of 6 images) under
    tmp_path/data, with tmp_path as the working directory."""
    data = tmp_path / "data"
    datagen.write_idx_set(data, "KMNIST", n_train=60, n_test=20, seed=7)
    datagen.write_image_folder(data / "glyphs", n=6, seed=8, size=20, subdirs=("hiragana", "kanji"))
    (data / "glyphs.tar.gz").write_bytes(extra.GLYPHS_ARCHIVE)
    monkeypatch.chdir(tmp_path)
    return data


def test_one_declaration_each(extra):
    kmnist = D.get_id_set("KMNIST")
    assert kmnist is extra.KMNIST and kmnist.channels == 1 and kmnist.default_ood == ("Glyphs",)
    assert D.resolve_ood("kuzushiji-ood") is extra.GLYPHS and D.resolve_ood("glyphs").folder == "glyphs"
    assert [type(t).__name__ for t in D.test_transform(kmnist, 28).transforms] == \
        ["Resize", "Grayscale", "ToTensor", "Normalize"]  # the "cifar" preprocessing family, one channel
    assert "kmnist" in str(pytest.raises(UserError, D.get_id_set, "qmnist").value)  # the error lists it
    assert "Glyphs" in str(pytest.raises(UserError, D.resolve_ood, "nothing").value)
    with pytest.raises(ValueError, match="already selects"):  # one name, one set
        D.register_ood(D.OODSet("Glyphs2", "elsewhere", 1, aliases=("glyphs",)))
    with pytest.raises(ValueError, match="already selects"):
        D.register_id(D.IDSet("KMNIST", 10, (0.5,), (0.5,), "cifar", layout=D.IdxFiles("KMNIST")))
    with pytest.raises(ValueError, match="preprocessing"):
        D.register_id(D.IDSet("other", 10, (0.5,), (0.5,), "tencrop", layout=D.IMAGE_FOLDER))


def test_verifier_lists_and_counts_them(root, capsys):
    ids, oods = V.resolve_target("kmnist")
    assert ids == ("kmnist/train", "kmnist/test") and oods == ("Glyphs",)
    assert "kmnist" in V.target_names() and "kmnist/train" not in V.resolve_target("all")[0]  # not a paper set
    expect = ["--expect", "kmnist/train=60", "--expect", "kmnist/test=20", "--expect", "Glyphs=12"]
    assert verify_data.main(["--dataset_path", str(root), "--for", "kmnist", *expect]) == 0
    out = capsys.readouterr().out
    assert "OK: all 3 sets needed by 'kmnist'" in out
    rows = {r.entry.key: r for r in V.check(root, "kmnist").rows}
    assert (rows["kmnist/train"].count, rows["kmnist/test"].count, rows["Glyphs"].count) == (60, 20, 12)
    assert rows["kmnist/train"].entry.location == "KMNIST/raw/" and rows["Glyphs"].entry.location == "glyphs/"
    assert rows["Glyphs"].md5 == "glyphs.tar.gz ok" and rows["Glyphs"].note == "2 class folders"
    assert rows["kmnist/train"].status == "too few images (60 of 60,000)"  # the declared counts
    assert not rows["cifar10/train"].needed and not rows["SVHN"].needed

    (root / "glyphs.tar.gz").unlink()
    for p in (root / "glyphs" / "kanji").iterdir():
        p.unlink()
    (root / "glyphs" / "kanji").rmdir()
    assert verify_data.main(["--dataset_path", str(root), "--for", "kmnist", *expect]) == 1
    out = capsys.readouterr().out
    assert "Glyphs: too few images (6 of 12)" in out
    assert f"Download glyphs.tar.gz from {D.OOD_SETS['glyphs'].url} (md5 {D.OOD_SETS['glyphs'].md5})" in out


def test_help_of_the_scripts_names_them(extra):
    for script in (train_model, test_score_ood_detection, generate_stored_pattern, sweep_scores):
        text = " ".join(script.build_parser().format_help().split())
        assert "fashionmnist or kmnist" in text, script.__name__
        if script in (test_score_ood_detection, sweep_scores):  # cli.add_evaluation's --ood
            assert "kmnist: Glyphs" in text and "UniformNoise Glyphs" in text, script.__name__
    text = " ".join(verify_data.build_parser().format_help().split())
    assert "fashionmnist, kmnist, all" in text and "Glyphs" in text and "KMNIST" in text  # --for, --ood, --download


def test_train_and_score_kmnist_against_glyphs(root):
    common = ["--dataset", "kmnist", "--dataset_path", str(root), *TINY]
    log = train_model.main(common + ["--epochs", "1"])
    assert len(log) == 1 and len(list((root.parent / "checkpoints/kmnist").glob("*.pt"))) == 1
    rows = test_score_ood_detection.main(common + ["--score", "MSP", "--results_dir", "r"])  # the default --ood
    [row] = rows
    assert (row["id_dataset"], row["ood_dataset"], row["n_id"], row["n_ood"]) == ("kmnist", "Glyphs", 20, 12)
    assert 0 <= row["auroc"] <= 1
