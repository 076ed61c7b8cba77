"""fpo-bench's store never keeps a corrupt run: each stored run a sweep relies on is verified
(size and sha256 recorded at write time; a full read where there is no record), and a bad one
is named, moved to quarantine and rerun, and the report is written again."""

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("rliable")

from agents import bench  # noqa: E402
from agents.bench import cli, runner  # noqa: E402
from agents.bench.store import Store, StoreError  # noqa: E402
from tests.bench.test_bench import TINY, _run, _tiny  # noqa: E402


def _toml(suite: dict) -> str:
    """The tiny suite as a TOML file (flat tables of strings and numbers: JSON literals are TOML)."""
    lines = []
    for table in ("games", "learners"):
        for entry in suite[table]:
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def finished(tmp_path):
    """A finished store of the tiny suite, run through the command line: ``(command, out)``."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(_toml(TINY))
    assert bench.load_suite(suite).games == _tiny().games
    out = tmp_path / "out"
    command = ["run", str(suite), "--out", str(out), "--backend", "serial", "--no-plots", "--reps", "200"]
    assert cli.main(command) == 0
    return command, out


def _outputs(out):
    return {name: (out / name).read_text() for name in ("leaderboard.md", "leaderboard.csv", "per_seed.csv")}


def _job_of(env_id, seed):
    job = next(j for j in runner.plan(_tiny()) if j["env"] == env_id and j["label"] == "fpo-relaxed" and seed in j["seeds"])
    return job, job["hashes"][job["seeds"].index(seed)]


def _middle_of_array(path, name="true_utility.npy"):
    """The byte offset of the middle of a member's compressed data."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        info = archive.getinfo(name)
        fh.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(fh.read(4), dtype="<u2")
        return info.header_offset + 30 + int(name_len) + int(extra_len) + info.compress_size // 2


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    at = _middle_of_array(path)
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    path.write_bytes(bytes(data))


DAMAGE = {
    "corrupt": (_flip_middle, "corrupt: its bytes changed since they were written"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated: "),
    "empty": (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
}


@pytest.mark.parametrize(
    "damage, env_id",
    [("corrupt", "FPO/NeuralRM-v0"), ("truncated", "FPO/LinearRM-v0"), ("empty", "FPO/NeuralRM-v0")],
)
def test_a_damaged_run_is_named_quarantined_rerun_and_the_report_rewritten(finished, damage, env_id, capsys):
    command, out = finished
    store = Store(out / "store")
    job, h = _job_of(env_id, 1)
    victim = store.path(h)
    before = _outputs(out)
    header, history = store.read(h)
    board_written = (out / "leaderboard.md").stat().st_mtime_ns
    others = {p: p.stat().st_mtime_ns for p in store.runs.rglob("*.npz") if p.stem not in job["hashes"]}
    hurt, why = DAMAGE[damage]
    hurt(victim)
    damaged = victim.read_bytes()
    capsys.readouterr()

    assert cli.main(command) == 0
    err = capsys.readouterr().err
    moved = store.quarantine_dir / f"{h}.npz"
    assert f"fpo-bench: warning: {victim} is {why}" in err, err
    assert f"moved it to {moved}" in err and f"rerunning it (fpo-relaxed on {env_id}, seed 1)" in err
    assert err.count("warning") == 1
    assert moved.read_bytes() == damaged  # kept, not deleted
    # The run is played again with the same numbers (same seed, same machine); nothing else is.
    again_header, again = Store(out / "store").read(h)
    assert again_header == header and again.keys() == history.keys()
    for key in history:
        np.testing.assert_array_equal(again[key], history[key], err_msg=key)
    assert {p: p.stat().st_mtime_ns for p in others} == others
    # The report is written again (its input changed) and equals the one before the damage.
    assert (out / "leaderboard.md").stat().st_mtime_ns != board_written
    assert _outputs(out) == before
    # Healed: the next sweep finds nothing to do.
    assert cli.main(command) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_intact_store_is_verified_without_decoding_a_run(finished, monkeypatch, capsys):
    command, out = finished
    store = Store(out / "store")
    runs = {p: p.stat().st_mtime_ns for p in store.runs.rglob("*.npz")}
    assert set(store.index) == {p.stem for p in runs}  # every run recorded as it was written
    board_written = (out / "leaderboard.md").stat().st_mtime_ns
    verified, decoded = [], []
    real_verify, real_open = Store.verify, Store._open
    monkeypatch.setattr(Store, "verify", lambda self, h: verified.append(h) or real_verify(self, h))
    monkeypatch.setattr(Store, "_open", lambda self, h: decoded.append(h) or real_open(self, h))
    capsys.readouterr()

    assert cli.main(command) == 0
    assert sorted(verified) == sorted(p.stem for p in runs)  # every run it relies on is checked ...
    assert decoded == []  # ... by size and checksum alone: no run is decoded
    assert {p: p.stat().st_mtime_ns for p in runs} == runs  # nothing rerun
    assert (out / "leaderboard.md").stat().st_mtime_ns == board_written  # the report is kept
    assert "warning" not in capsys.readouterr().err


def test_a_store_from_before_the_index_is_verified_by_one_full_read_then_recorded(finished, monkeypatch, capsys):
    command, out = finished
    store = Store(out / "store")
    runs = {p: p.stat().st_mtime_ns for p in store.runs.rglob("*.npz")}
    store.index_path.unlink()  # as an older fpo-bench left it
    job, h = _job_of("FPO/LinearRM-v0", 4)
    _, history = store.read(h)
    _flip_middle(store.path(h))  # with no record, only decoding (zlib, the CRC-32s) can catch this
    full = []
    real = Store.read_fully
    monkeypatch.setattr(Store, "read_fully", lambda self, h: full.append(h) or real(self, h))
    capsys.readouterr()

    assert cli.main(command) == 0
    assert sorted(full) == sorted(p.stem for p in runs)  # one full read each
    err = capsys.readouterr().err
    assert f"{store.path(h)} is corrupt (" in err and ("a member does not decompress" in err or "fails its CRC-32" in err), err
    _, again = Store(out / "store").read(h)
    np.testing.assert_array_equal(again["true_utility"], history["true_utility"])
    untouched = {p: t for p, t in runs.items() if p.stem not in job["hashes"]}
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert set(Store(out / "store").index) == {p.stem for p in runs}  # recorded now ...
    full.clear()
    assert cli.main(command) == 0
    assert full == []  # ... so the next sweep reads none in full


def test_an_unreadable_index_is_rebuilt_by_full_reads_with_a_warning(finished, capsys):
    command, out = finished
    store = Store(out / "store")
    runs = {p: p.stat().st_mtime_ns for p in store.runs.rglob("*.npz")}
    store.index_path.write_text("{ not json")
    capsys.readouterr()
    assert cli.main(command) == 0
    err = capsys.readouterr().err
    assert f"{store.index_path} does not read" in err and "rebuilt" in err
    assert {p: p.stat().st_mtime_ns for p in runs} == runs
    assert set(Store(out / "store").index) == {p.stem for p in runs}


def test_a_run_copied_over_another_stops_the_sweep_naming_it(finished, capsys):
    # Not damage but a mix-up: rerunning would hide it, so the sweep stops.
    command, out = finished
    store = Store(out / "store")
    _, a = _job_of("FPO/LinearRM-v0", 0)
    _, b = _job_of("FPO/LinearRM-v0", 1)
    store.path(b).write_bytes(store.path(a).read_bytes())
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert f"{store.path(b)} is not this store's run {b} (foreign or renamed file)" in err
    with pytest.raises(StoreError, match="foreign or renamed"):
        _run(_tiny(), out, plots=False)


def test_a_quarantined_text_run_takes_its_artifacts_along(tmp_path, capsys):
    store = Store(tmp_path)
    key = {"env": "FPO/TextRM-v0", "seed": 0}
    h = store.write(key, {"true_utility": np.arange(3, dtype=np.float32)}, {"optimum": 1.0})
    store.record(h)
    artifacts = runner.artifacts_dir(store.root, h)
    artifacts.mkdir(parents=True)
    (artifacts / "metrics.jsonl").write_text("{}\n")
    store.path(h).write_bytes(b"")
    job = {"env": "FPO/TextRM-v0", "label": "rlhf", "seeds": [0], "hashes": [h]}
    assert runner.verify_stored([job], store) == [h]
    assert not store.has(h) and not artifacts.exists() and h not in store.index
    assert (store.quarantine_dir / f"{h}-artifacts" / "metrics.jsonl").read_text() == "{}\n"
    assert "with its artifacts folder" in capsys.readouterr().err
    # A second quarantine of the same run keeps the first one.
    store.write(key, {"true_utility": np.arange(3, dtype=np.float32)}, {"optimum": 1.0})
    store.path(h).write_bytes(b"x")
    assert runner.verify_stored([job], store) == [h]
    assert {p.name for p in store.quarantine_dir.iterdir()} == {f"{h}.npz", f"{h}.2.npz", f"{h}-artifacts"}
