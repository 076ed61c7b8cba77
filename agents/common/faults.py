"""Crash points for deterministic fault tests, set through environment variables.

A test of resuming needs a process that dies at a known point, whatever the machine's
speed. Two variables, read only here, make the process end itself there with
``os._exit(CRASH_EXIT_CODE)``: no cleanup, no ``finally`` blocks, no flushed index, as a
``SIGKILL`` would leave it (only what was already written, each file whole, survives):

- ``FPO_CRASH_AT_ROUND=R``: :meth:`agents.Agent.learn` ends the process when the learner
  reaches round ``R`` (``num_rounds == R``), after that round's callbacks ran (so a
  checkpoint or metrics row of round ``R`` is written first). A learner that resumes past
  ``R`` plays on; one that resumes before ``R`` stops there again, so unset the variable to
  resume.
- ``FPO_CRASH_AFTER_RUNS=N``: a benchmark sweep (:func:`agents.bench.runner.execute`) ends
  the process once ``N`` runs of this sweep are stored.
- ``FPO_CRASH_ONCE=PATH``: with either of the above, the crash point fires only while the
  file ``PATH`` does not exist, and creates it first: a process restarted after the crash
  (a retried Ray trial) plays on. For tests of retries.

Unset or empty, they do nothing. A value that is not a whole number >= 0 is a
``ValueError`` naming the variable.
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 86
"""The exit status of a process ended by a crash point (distinct from Python's 1 and 2)."""

CRASH_AT_ROUND = "FPO_CRASH_AT_ROUND"
"""The variable naming the round at which :meth:`agents.Agent.learn` ends the process."""
CRASH_AFTER_RUNS = "FPO_CRASH_AFTER_RUNS"
"""The variable naming how many stored runs of a sweep end the process."""
CRASH_ONCE = "FPO_CRASH_ONCE"
"""The variable naming a marker file: a crash point fires only while it is missing, and makes it."""
CRASH_VARIABLES = (CRASH_AT_ROUND, CRASH_AFTER_RUNS, CRASH_ONCE)
"""Every crash-point variable (a backend that starts workers hands them on)."""


def _read(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0 (or unset), got {value!r}")
    return int(value)


def crash(reason: str) -> None:
    """End the process now with :data:`CRASH_EXIT_CODE`, saying why on stderr (unless
    ``FPO_CRASH_ONCE`` names a file that exists: then nothing happens)."""
    once = os.environ.get(CRASH_ONCE, "").strip()
    if once:
        try:
            with open(once, "x"):
                pass
        except FileExistsError:
            return  # crashed once already: play on
    sys.stdout.flush()
    sys.stderr.write(f"fpo-envs: crash point: {reason}; exiting with status {CRASH_EXIT_CODE}\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def at_round(num_rounds: int) -> None:
    """Called by the round loop once a round is complete: the crash point of ``FPO_CRASH_AT_ROUND``."""
    target = _read(CRASH_AT_ROUND)
    if target is not None and num_rounds == target:
        crash(f"{CRASH_AT_ROUND}={target} reached")


def after_runs(stored: int) -> None:
    """Called by a sweep each time runs are stored (``stored``: how many so far): the crash
    point of ``FPO_CRASH_AFTER_RUNS``."""
    target = _read(CRASH_AFTER_RUNS)
    if target is not None and stored >= target:
        crash(f"{CRASH_AFTER_RUNS}={target}: {stored} runs stored")
