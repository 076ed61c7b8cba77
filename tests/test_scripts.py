"""The speed scripts run end to end on tiny sizes: ``scripts/gpu_benchmark.py`` on its CPU
path (no GPU here) and the scale curve of ``scripts/benchmark.py`` (its timings are not
asserted: speed lives in the scripts, not in tests)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_runs_its_cpu_path():
    cmd = [sys.executable, "scripts/gpu_benchmark.py", "--device", "cpu", "--sizes", "2", "3", "--rounds", "2", "--warmup", "1"]
    out = subprocess.run([*cmd, "--cpu-rounds", "1", "--cpu-threads", "1"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("rlhf", "2"), ("rlhf", "3"), ("fpo-relaxed", "2"), ("fpo-relaxed", "3")]
    for row in rows:
        assert float(row[2].replace(",", "")) > 0 and float(row[3].replace(",", "")) > 0 and row[4].endswith("x")


def test_gpu_benchmark_without_the_device_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = subprocess.run([sys.executable, "scripts/gpu_benchmark.py", "--sizes", "2"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "torch.cuda.is_available() is False" in out.stderr


def test_the_scale_curve_is_printed_and_drawn(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    benchmark = _load("benchmark")
    monkeypatch.setattr(benchmark, "SCALE_SEEDS", (1, 4))
    monkeypatch.setattr(benchmark, "SCALE_GAMES", (("FPO/LinearRM-v0", 3), ("FPO/NeuralRM-v0", 2)))
    figure = tmp_path / "scale.png"
    benchmark.scale(argparse.Namespace(repeats=1, scale_figure=str(figure)))
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("FPO/")}
    assert set(rows) == {"FPO/LinearRM-v0", "FPO/NeuralRM-v0"}
    assert all(len(values) == 3 and float(values[0]) > 0 for values in rows.values())
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize(
    "ratio, target, higher, expected",
    [(1.4, 1.5, False, "met"), (1.8, 1.5, False, "MISSED by 1.20x"), (120, 100, True, "met"), (50, 100, True, "MISSED by 2.00x")],
)
def test_a_missed_target_says_by_how_much(ratio, target, higher, expected):
    assert _load("benchmark").verdict(ratio, target, higher_is_better=higher) == expected
