"""How far other float kernels move the recorded reference histories (``tests/data``).

A user's CPU takes other kernels than the machine that recorded the references: torch picks
its vector width (``ATEN_CPU_CAPABILITY``), MKL its code path (``MKL_CBWR``,
``MKL_ENABLE_INSTRUCTIONS``) OpenBLAS its core type (``OPENBLAS_CORETYPE``) and numpy its SIMD loops
(``NPY_DISABLE_CPU_FEATURES``) from the CPU.
Each path is forced here through its environment variable, the reference runs of
``tests/agents/test_reference_numbers.py`` are replayed in a fresh process under it, and the
largest absolute deviation from the recorded history is printed per learner and quantity::

    python scripts/kernel_paths.py                # every path, about 3 minutes on 2 cores
    python scripts/kernel_paths.py --game neural  # one game

The tolerances of the reference tests are set from this table (docs/benchmark.md states them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_NUMPY_SIMD = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
PATHS = {
    "as installed": {},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
    "OPENBLAS_CORETYPE=Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
    "OPENBLAS_CORETYPE=SkylakeX": {"OPENBLAS_CORETYPE": "SkylakeX"},
    # numpy's own SIMD dispatch, down to its baseline (an older CPU's loops).
    "NPY_DISABLE_CPU_FEATURES=" + _NUMPY_SIMD: {"NPY_DISABLE_CPU_FEATURES": _NUMPY_SIMD},
}

_CHILD = r"""
import json, sys
import numpy as np
import torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from tests.agents.test_reference_numbers import replay
out = {{}}
for game in {games!r}:
    out.update({{k: v.tolist() for k, v in replay(game).items()}})
json.dump(out, sys.stdout)
"""


def measure(env: dict[str, str], games: list[str]) -> dict[str, np.ndarray]:
    """The reference runs replayed in a fresh process under ``env`` (added to this one's)."""
    code = _CHILD.format(root=str(ROOT), games=games)
    full = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"the replay under {env} failed:\n{result.stderr}")
    return {k: np.asarray(v) for k, v in json.loads(result.stdout).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=["linear", "neural", "both"], default="both")
    args = parser.parse_args(argv)
    games = ["linear", "neural"] if args.game == "both" else [args.game]
    with np.load(ROOT / "tests" / "data" / "reference_histories.npz") as data:
        reference = dict(data)
    print("max |replay - recorded| per kernel path (0 means bit-identical)\n")
    worst: dict[str, float] = {}
    for name, env in PATHS.items():
        replay = measure(env, games)
        print(f"## {name}")
        for key, value in replay.items():
            deviation = float(np.abs(value - reference[key]).max())
            relative = deviation / float(np.abs(reference[key]).max())
            worst[key] = max(worst.get(key, 0.0), deviation)
            print(f"  {key:<40} {deviation:.3e}   (relative to the history's scale {relative:.1e})")
    print("\n## worst over the paths")
    for key, value in worst.items():
        print(f"  {key:<40} {value:.3e}")


if __name__ == "__main__":
    main()
