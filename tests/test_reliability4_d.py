"""Reliability round 4 (items 7 and 9), through the scripts: a backbone built for one input size is built
at the size it is run at, or refused with one line before training; --model_arg passes a constructor
argument to the backbones that declare a constructor for it; an option of another backbone is refused,
not ignored; every script's --help shows each default once and no help text stops mid-sentence; an
empty or legacy-format checkpoint is named as such, not as a memory-mapping problem.

The backbones of one's own used here are defined in this module (``--model test_reliability4_d:<builder>``;
tests/ is on sys.path)."""
from pathlib import Path

import pytest
import torch

import test_score_ood_detection

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--dataset", "fashionmnist", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
       "--batch_size", "20", "--dataset_path", "data"]
TRAIN = ["--epochs", "1", "--lr", "0.05", "--augment", "none"]
ME = "test_reliability4_d"


def one_line(code, err, *phrases):
    err = err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in phrases:
        assert p in err, err
    return err


def exits_2(fn, argv, capsys, *phrases):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return one_line(e.value.code, capsys.readouterr().err, *phrases)


# ----------------------------------------------------------------------------------------------------
# 9. Messages: an unreadable checkpoint
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,phrases", [
    ("empty", ["is empty (0 bytes)"]),
    ("legacy", ["legacy format", "re-save it with a current torch"]),
    ("foreign", ["is not a file torch.save wrote"]),
])
def test_an_unreadable_checkpoint_says_what_is_wrong(kind, phrases, small_fmnist, capsys):
    """Not "mmap can only be used with files saved with ...": the user asked for no memory map."""
    path = Path("model.pt")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "legacy":
        torch.save({"fc.weight": torch.zeros(10, 4)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_text("not a checkpoint\n")
    err = exits_2(test_score_ood_detection.main, RUN + ["--model", "wrn", "--checkpoint", str(path), "--ood",
                                                         "iSUN", "--score", "MSP"], capsys, str(path), *phrases)
    assert "mmap" not in err
    assert not Path("results").exists()
