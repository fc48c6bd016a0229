"""The assertion every reliability test makes of a refused input: exit status 2 and one line on stderr,
no traceback, naming what is wrong. One definition, imported by the test files that check scripts."""
import pytest


def one_line_error(code, err, *phrases, ignore_warnings=False):
    """Exit status ``code`` is 2 and stderr ``err`` is one line, no traceback, containing ``phrases``.
    ``ignore_warnings``: lines starting with "warning: " (printed before the error, e.g. the session's
    near-chance backbone) do not count."""
    err = err.strip()
    if ignore_warnings:
        err = "\n".join(x for x in err.splitlines() if not x.startswith("warning: "))
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in phrases:
        assert p in err, err
    return err


def exits_2(fn, argv, capsys, *phrases, ignore_warnings=False):
    """``fn(argv)`` ends with exit status 2 and one line on stderr containing ``phrases``."""
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return one_line_error(e.value.code, capsys.readouterr().err, *phrases, ignore_warnings=ignore_warnings)
