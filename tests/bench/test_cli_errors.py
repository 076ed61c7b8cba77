"""``fpo-bench run`` with bad arguments or a bad suite: one error line, exit 2, no traceback,
and nothing run."""

import sys

import pytest

pytest.importorskip("rliable")

from agents.bench import cli  # noqa: E402

SUITE = '[[games]]\nid = "FPO/LinearRM-v0"\nrounds = 3\nseeds = 2\n\n[[learners]]\nid = "rlhf"\n'


@pytest.fixture
def suite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the working folder on it
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--reps", "0"], "argument --reps: must be at least 1, got 0"),
        (["--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
        (["--rounds", "-3"], "argument --rounds: must be at least 1, got -3"),
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--reps", "many"], "argument --reps: must be a whole number >= 1, got 'many'"),
        (["--out", "tiny.toml"], "argument --out: tiny.toml is a file; --out names the report's folder"),
    ],
)
def test_bad_numbers_are_argparse_errors(argv, message, suite, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(suite), "--backend", "serial", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"fpo-bench run: error: {message}"
    assert not (suite.parent / "results").exists()


def _error_line(argv, capsys) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("fpo-bench: error: ")
    return lines[0]


def test_a_bad_learner_config_in_a_suite_file_is_one_line_naming_the_file_entry_and_key(suite, capsys):
    suite.write_text(SUITE + '\n[[learners]]\nid = "fpo-relaxed"\nconfig = { lrr = 0.1 }\n')
    line = _error_line(["run", str(suite), "--backend", "serial", "--out", "out"], capsys)
    assert f"{suite}: suite 'tiny', learners[1] ('fpo-relaxed'), config on the linear game: unknown config key(s) ['lrr']" in line
    suite.write_text(SUITE + '\n[[learners]]\nid = "fpo-relaxed"\nlabel = "slow"\nconfig = { lr = "0.1" }\n')
    line = _error_line(["run", str(suite), "--backend", "serial", "--out", "out"], capsys)
    assert "learners[1] ('slow'), config on the linear game: GradientConfig.lr must be a number (float), got '0.1' (str)" in line
    suite.write_text(SUITE.replace('id = "rlhf"', 'id = "rlhf"\nconfig = { oracle_gradient = "yes" }'))
    line = _error_line(["run", str(suite), "--backend", "serial", "--out", "out"], capsys)
    assert "learners[0] ('rlhf')" in line and "oracle_gradient must be True or False, got 'yes'" in line
    assert not (suite.parent / "out").exists()  # found before any run


def test_a_module_that_does_not_import_is_one_line(suite, capsys):
    line = _error_line(["run", str(suite), "--backend", "serial", "--import", "no_such_module_here"], capsys)
    assert "--import no_such_module_here: the module 'no_such_module_here' does not import" in line
    line = _error_line(["run", str(suite), "--backend", "serial", "--learner", "no_such_module_here:x"], capsys)
    assert "learner id no_such_module_here:x: the module 'no_such_module_here' does not import" in line
    (suite.parent / "broken_algo.py").write_text("import agents\nagents.register_penalty('relaxed', abs)\n")
    line = _error_line(["run", str(suite), "--backend", "serial", "--learner", "broken_algo:x"], capsys)
    assert "the module 'broken_algo' does not import (ValueError: 'relaxed' is a built-in penalty" in line
