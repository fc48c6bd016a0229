"""--data_plugin package.module: a module of the user's that declares data sets is imported before the
command line is read, so that the scripts know its sets without any edit of the repository (run in
subprocesses: the registrations live in that process only, as a user's do)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses
ROOT = Path(__file__).resolve().parents[1]


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_users_module_declares_sets_the_scripts_then_know(tmp_path):
    # tests/extra_sets.py declares the ID set KMNIST and the OOD set Glyphs; run from tests/, where it lies
    out = run("verify_data.py", "--data_plugin", "extra_sets", "--for", "kmnist", "--dataset_path", str(tmp_path),
              cwd=ROOT / "tests")
    assert out.returncode == 1, out.stderr  # checked, and missing: not a usage error
    assert "KMNIST/raw/" in out.stdout and "Glyphs" in out.stdout
    without = run("verify_data.py", "--for", "kmnist", "--dataset_path", str(tmp_path), cwd=ROOT / "tests")
    assert without.returncode == 2 and "kmnist" in without.stderr
    helped = run("train_model.py", "--data_plugin", "extra_sets", "--help", cwd=ROOT / "tests")
    assert helped.returncode == 0 and "kmnist" in " ".join(helped.stdout.split())


def test_a_module_that_cannot_be_imported_is_one_line(tmp_path):
    (tmp_path / "broken_sets.py").write_text("raise RuntimeError('half-written declaration')\n")
    for module, expected in [("no_such_sets", "ModuleNotFoundError"), ("broken_sets", "half-written declaration"),
                             ("not a module", "give a module as package.module")]:
        out = run("test_score_ood_detection.py", "--data_plugin", module, "--dataset_path", str(tmp_path),
                  cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert "data-set module" in lines[0] and expected in lines[0]
