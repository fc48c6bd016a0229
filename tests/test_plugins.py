"""A user's own score (``--score package.module:Class``) through the scripts, where its code can go wrong:
its output is checked at the registry boundary, its stored patterns follow its code, its errors are one
line naming it, its settings cannot take a flag the script has, and a state of numpy arrays is reloaded
rather than refitted on every run (issue 17)."""
import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import generate_stored_pattern
import scores
import test_score_ood_detection
import train_model
from ood import plugins
from ood.cache.features import loaded_state, storable_state

TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1", "--resize_val", "16",
        "--batch_size", "32", "--workers", "0", "--device", "cpu", "--quiet"]
PATTERNS = Path("stored_pattern/cifar10/wrn/patterns")


@pytest.fixture
def trained(data, workdir):
    common = TINY + ["--dataset_path", str(data)]
    train_model.main(common + ["--epochs", "3", "--lr", "0.05", "--augment", "none", "--amp", "off"])
    return common


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``plugin(name, source)`` writes the module ``name`` into a folder on sys.path; the registry, the
    plug-in bookkeeping and sys.modules are restored afterwards. ``plugin.fresh()`` forgets the loaded
    modules and registrations, as a new process would start."""
    folder = tmp_path / "plugin_modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edit within the same second is re-read
    written, registry, loaded = [], dict(scores._BY_KEY), dict(plugins._SCORES)

    def fresh():
        monkeypatch.setattr(scores, "_BY_KEY", dict(registry))
        monkeypatch.setattr(plugins, "_SCORES", dict(loaded))
        for name in written:
            if name in sys.modules:
                monkeypatch.delitem(sys.modules, name)

    def write(name, source):
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        fresh()
        return folder / f"{name}.py"

    write.fresh = fresh
    fresh()
    yield write
    for name in written:
        sys.modules.pop(name, None)


def user_error(capsys, run, *args):
    """Run a script's main expecting exit status 2; returns its one-line message."""
    with pytest.raises(SystemExit) as e:
        run(list(args))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


OUTPUTS = '''
    import numpy as np
    import torch

    from scores.base import Score


    def _msp(data):
        return data["logits"].softmax(1).max(1).values


    class Short(Score):
        name = "Short"
        def score(self, data, state, head):
            return _msp(data)[:-1]


    class Wide(Score):
        name = "Wide"
        def score(self, data, state, head):
            return torch.stack([_msp(data), _msp(data)], 1)


    class Scalar(Score):
        name = "Scalar"
        def score(self, data, state, head):
            return _msp(data).sum()


    class WithNaN(Score):
        name = "WithNaN"
        def score(self, data, state, head):
            out = _msp(data).numpy().copy()
            out[3:5] = np.nan
            out[7] = -np.inf
            return out


    class Flags(Score):
        name = "Flags"
        def score(self, data, state, head):
            return _msp(data) > 0.5


    class Complex(Score):
        name = "Complex"
        def score(self, data, state, head):
            return _msp(data).numpy() + 1j


    class Nothing(Score):
        name = "Nothing"
        def score(self, data, state, head):
            return None


    class AsNumpy(Score):
        name = "AsNumpy"
        def score(self, data, state, head):
            return _msp(data).double().numpy()


    class AsList(Score):
        name = "AsList"
        def score(self, data, state, head):
            return _msp(data).tolist()
'''


def test_score_output_is_checked_at_the_registry_boundary(trained, plugin, capsys):
    plugin("outputs_mod", OUTPUTS)
    base = trained + ["--ood", "iSUN", "--results_dir", "r"]
    [msp] = test_score_ood_detection.main(base + ["--score", "MSP"])
    n_id = msp["n_id"]
    capsys.readouterr()
    expected = {
        "Short": f"got a tensor with shape ({n_id - 1},) and dtype float32",
        "Wide": f"got a tensor with shape ({n_id}, 2) and dtype float32",
        "Scalar": "got a tensor with shape () and dtype float32",
        "WithNaN": f"got 2 NaN and 1 infinite of {n_id} values (the first at input 3)",
        "Flags": f"got a tensor with shape ({n_id},) and dtype bool",
        "Complex": f"got a numpy array with shape ({n_id},) and dtype complex64",
        "Nothing": "got a NoneType with shape () and dtype object",
    }
    for name, got in expected.items():
        err = user_error(capsys, test_score_ood_detection.main, *base, "--score", f"outputs_mod:{name}")
        assert f"score {name} (--score outputs_mod:{name}) on the ID test set: expected one finite real " \
               f"number per input ({n_id} values in a 1-D tensor or array); {got}." in err, err
    # a numpy array or a list of one number per input is accepted and scores as the tensor does
    rows = test_score_ood_detection.main(base + ["--score", "outputs_mod:AsNumpy", "outputs_mod:AsList"])
    assert [r["auroc"] for r in rows] == pytest.approx([msp["auroc"]] * 2)
    assert [r["n_id"] for r in rows] == [n_id] * 2


FITTED = '''
    import torch

    from scores.base import Score

    LOG = {log!r}


    class Centre(Score):
        """Negative distance to one centre of the training features."""
        name = "Centre"
        version = 1

        def fit(self, train, head):
            with open(LOG, "a") as f:
                f.write("fit\\n")
            return {{"centre": {centre}}}

        def score(self, data, state, head):
            return -(data["features"] - state["centre"]).norm(dim=1)
'''


def test_plugin_pattern_is_refitted_when_its_code_changes(trained, plugin, tmp_path):
    log = tmp_path / "fits.log"
    mean = 'train["features"].mean(0)'
    path = plugin("centre_mod", FITTED.format(log=str(log), centre=mean))
    args = trained + ["--ood", "iSUN", "--score", "centre_mod:Centre", "--results_dir", "r"]
    first = test_score_ood_detection.main(args)
    [pattern] = PATTERNS.glob("centre-*.pt")
    assert log.read_text().count("fit") == 1
    # the same code in a new process: the pattern is served
    plugin.fresh()
    assert test_score_ood_detection.main(args)[0]["auroc"] == first[0]["auroc"]
    assert log.read_text().count("fit") == 1
    # fit edited, version not bumped: refitted, and the stored pattern is the new code's
    path.write_text(path.read_text().replace(mean, "torch.zeros_like(" + mean + ")"))
    plugin.fresh()
    second = test_score_ood_detection.main(args)
    assert log.read_text().count("fit") == 2
    assert not torch.load(pattern, weights_only=True)["state"]["centre"].any()
    assert second[0]["auroc"] != first[0]["auroc"]


PLAIN_SCORE = '''
    from scores.base import Score


    class Plain(Score):
        name = "Plain"
        def score(self, data, state, head):
            return data["logits"].max(1).values
'''


def test_plugin_errors_are_one_line_naming_the_plugin(trained, plugin, capsys, monkeypatch):
    plugin("broken_syntax", "def oops(:\n    pass\n")
    plugin("broken_import", "raise RuntimeError('no licence server')\n")
    plugin("broken_fit", PLAIN_SCORE + '''
    class FitFails(Plain):
        name = "FitFails"
        def fit(self, train, head):
            raise ValueError("singular covariance\\nin class 3")
    ''')
    plugin("broken_score", PLAIN_SCORE + '''
    class ScoreFails(Plain):
        name = "ScoreFails"
        def score(self, data, state, head):
            return data["nope"]
    ''')
    base = trained + ["--ood", "iSUN", "--results_dir", "r"]
    hint = "(set RECLAG_DEBUG=1 for the traceback)."
    err = user_error(capsys, test_score_ood_detection.main, *base, "--score", "broken_syntax:Plain")
    assert "cannot load score class 'broken_syntax:Plain': importing broken_syntax raised SyntaxError:" in err
    assert err.endswith(hint)
    err = user_error(capsys, test_score_ood_detection.main, *base, "--score=broken_import:Plain")
    assert "cannot load score class 'broken_import:Plain': importing broken_import raised RuntimeError: no " \
           f"licence server {hint}" in err
    err = user_error(capsys, generate_stored_pattern.main, *trained, "--ood", "--score", "broken_fit:FitFails")
    assert err.endswith(f"--score broken_fit:FitFails: its fit raised ValueError: singular covariance in class 3 "
                        f"{hint}")
    err = user_error(capsys, test_score_ood_detection.main, *base, "--score", "MSP", "broken_score:ScoreFails")
    assert err.endswith(f"--score broken_score:ScoreFails: its score on the ID test set raised KeyError: 'nope' "
                        f"{hint}")
    # RECLAG_DEBUG=1: the plug-in's own exception, with its traceback
    monkeypatch.setenv("RECLAG_DEBUG", "1")
    with pytest.raises(ValueError, match="singular covariance"):
        generate_stored_pattern.main(trained + ["--ood", "--score", "broken_fit:FitFails"])
    with pytest.raises(SyntaxError):
        test_score_ood_detection.main(base + ["--score", "broken_syntax:Plain"])
    monkeypatch.delenv("RECLAG_DEBUG")
    # a built-in score's exception is our bug: it keeps its traceback
    from scores.logits import MSP

    def bug(self, data, state, head):
        raise ZeroDivisionError("our bug")
    monkeypatch.setattr(MSP, "score", bug)
    with pytest.raises(ZeroDivisionError):
        test_score_ood_detection.main(base + ["--score", "MSP"])


CLASHES = '''
    from ood.params import Param
    from scores.base import Score


    class Batch(Score):
        name = "batch"
        params = (Param("size", int, 1, "a setting whose flag is the scripts' --batch_size"),)
        def score(self, data, state, head):
            return data["logits"].max(1).values


    class Ash(Batch):
        name = "ASH"
        params = (Param("p_percentile", float, 1.0, "a setting whose flag is ASH-P's percentile"),)


    class Aliased(Batch):
        name = "Aliased"
        params = (Param("k", int, 1, "an alias that is a common flag", aliases=("--seed",)),)


    class Fine(Batch):
        name = "x"
        params = (Param("seed", int, 1, "--x_seed is no common flag"),)
'''


def test_a_setting_whose_flag_is_taken_is_refused_by_name(plugin, capsys):
    plugin("clash_mod", CLASHES)
    err = user_error(capsys, test_score_ood_detection.main, "--score", "clash_mod:Batch")
    assert err.endswith("--score clash_mod:Batch: its setting 'size' makes the option --batch_size, which is "
                        "already an option of this script (--batch_size); rename the setting or the score.")
    plugin.fresh()
    err = user_error(capsys, generate_stored_pattern.main, "--score", "clash_mod:Ash")
    assert "--score clash_mod:Ash: its setting 'p_percentile' makes the option --ash_p_percentile, which is " \
           "already score ASH-P's setting 'percentile' (--ash_p_percentile)" in err
    plugin.fresh()
    err = user_error(capsys, test_score_ood_detection.main, "--score", "clash_mod:Aliased")
    assert "its setting 'k' makes the option --seed, which is already an option of this script" in err
    # a flag nothing else has is fine
    plugin.fresh()
    parser = test_score_ood_detection.build_parser(["--score", "clash_mod:Fine"])
    assert parser.parse_args(["--x_seed", "3"]).x_seed == 3
    assert isinstance(parser, argparse.ArgumentParser)


NUMPY_STATE = '''
    import numpy as np
    import torch

    from scores.base import Score

    LOG = {log!r}


    class NumpyCentre(Score):
        name = "NumpyCentre"

        def fit(self, train, head):
            with open(LOG, "a") as f:
                f.write("fit\\n")
            feats = train["features"].double().numpy()
            return {{"mean": feats.mean(0), "scale": np.float32(2.0), "counts": [np.bincount(train["labels"].numpy())],
                    "small": feats[:3, :2].astype(np.float16)}}

        def score(self, data, state, head):
            assert isinstance(state["mean"], np.ndarray) and state["mean"].dtype == np.float64
            assert state["small"].dtype == np.float16 and state["small"].shape == (3, 2)
            assert state["counts"][0].dtype.kind == "i"
            x = data["features"].double().numpy()
            return torch.from_numpy(-np.linalg.norm(x - state["mean"], axis=1) * float(state["scale"]))


    class ObjectState(NumpyCentre):
        name = "ObjectState"

        def fit(self, train, head):
            return {{"mean": train["features"].mean(0), "extra": {{"names": np.array(["a", None], dtype=object)}}}}
'''


def test_numpy_state_is_reloaded_not_refitted(trained, plugin, tmp_path, capsys):
    log = tmp_path / "fits.log"
    plugin("numpy_mod", NUMPY_STATE.format(log=str(log)))
    args = trained + ["--ood", "iSUN", "--score", "numpy_mod:NumpyCentre", "--results_dir", "r", "--save_scores"]
    test_score_ood_detection.main(args)
    first = dict(np.load("r/scores.npz"))
    [pattern] = PATTERNS.glob("numpycentre-*.pt")
    mtime = pattern.stat().st_mtime_ns
    plugin.fresh()
    test_score_ood_detection.main(args)
    assert log.read_text().count("fit") == 1 and pattern.stat().st_mtime_ns == mtime
    second = dict(np.load("r/scores.npz"))
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    capsys.readouterr()
    err = user_error(capsys, test_score_ood_detection.main, *trained, "--ood", "iSUN", "--results_dir", "r",
                     "--score", "numpy_mod:ObjectState")
    assert "score ObjectState (--score numpy_mod:ObjectState): its fitted state cannot be stored: " \
           "state.extra.names is a numpy array of dtype object." in err


def test_state_conversion_round_trips_dtypes_and_shapes():
    class Named:
        name = "Toy"
    state = {"a": np.arange(6, dtype=">i4").reshape(2, 3), "b": np.float64(1.5), "c": (np.zeros((0, 4)), True),
             "d": np.array(3.0), "e": torch.ones(2), "f": np.array([True, False]), "g": {"h": np.uint64(2 ** 63)}}
    back = loaded_state(storable_state(state, Named()))
    for k in ("a", "d", "f"):
        assert back[k].dtype == state[k].dtype and back[k].shape == state[k].shape
        assert np.array_equal(back[k], state[k])
    assert back["b"] == 1.5 and type(back["b"]) is float and back["g"]["h"] == 2 ** 63
    assert back["c"][0].shape == (0, 4) and back["c"][1] is True and torch.equal(back["e"], state["e"])
