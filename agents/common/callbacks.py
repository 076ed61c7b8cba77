"""Callbacks of :meth:`agents.Agent.learn`, shaped like stable-baselines3's.

``learner.learn(total_rounds, callback=...)`` takes a :class:`BaseCallback`, a list of them
(a :class:`CallbackList`), a function ``f(learner, info) -> bool | None`` or ``None``. Each
callback is told when training starts, after every round (``on_round``, whose ``False`` stops
the run early) and when it ends. They work for every learner, of every family:

- :class:`ProgressBarCallback`: a tqdm bar with the live proxy and true utility
  (``learn(..., progress_bar=True)`` adds one);
- :class:`CheckpointCallback`: a learner file (:meth:`agents.Agent.save`) every ``save_freq``
  rounds, written atomically (to a temporary file, then renamed), the newest ``keep`` kept;
- :class:`MetricsCallback`: every round's metrics streamed to ``metrics.csv`` and
  ``metrics.jsonl`` (and TensorBoard where installed).

A *run directory* holds both: ``metrics.csv``, ``metrics.jsonl`` and
``checkpoints/round_XXXXXX.fpo`` (:func:`run_callbacks`). :meth:`agents.Agent.resume`
rebuilds a learner from the newest checkpoint of one, on a fresh env, and ``learn`` with the
same callbacks continues it: every random state is restored, so the rounds replayed after
the checkpoint are those the interrupted run played, and the metrics rows it wrote past the
checkpoint are dropped as the resumed run starts (each round is streamed once).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS = "checkpoints"
"""The folder of a run directory that holds its checkpoints."""


class BaseCallback:
    """A callback of ``learn``: override any of the three methods (each does nothing here).

    ``learner`` is the learner being trained (its ``num_rounds``, ``config``, ``env``,
    ``save``, ``predict``, ...); ``info`` is the round's row of the history: the env's ``info``
    (its public keys) and the learner's own records of the round.
    """

    def on_training_start(self, learner: Any, total_rounds: int) -> None:
        """Called as ``learn(total_rounds)`` starts, before its first round (the learner's env is
        reset and ``learner.num_rounds`` counts the rounds played before this call)."""

    def on_round(self, learner: Any, info: dict[str, Any]) -> bool | None:
        """Called after each round, once the learner has learned from it and any ended episode
        was reset (``learner.num_rounds`` includes the round). Return ``False`` to stop
        training after this round (``None`` or ``True``: go on)."""
        return True

    def on_training_end(self, learner: Any) -> None:
        """Called as ``learn`` returns, after its last round (or the one a callback stopped at)."""


class CallbackList(BaseCallback):
    """Several callbacks called in order; ``on_round`` asks every one of them (so each sees
    every round) and stops the run if any returned ``False``."""

    def __init__(self, callbacks: Iterable[BaseCallback]):
        self.callbacks = list(callbacks)

    def __iter__(self) -> Iterator[BaseCallback]:
        """Every callback of the list, nested lists flattened."""
        for callback in self.callbacks:
            if isinstance(callback, CallbackList):
                yield from callback
            else:
                yield callback

    def on_training_start(self, learner, total_rounds):
        """Each callback's ``on_training_start``, in order."""
        for callback in self.callbacks:
            callback.on_training_start(learner, total_rounds)

    def on_round(self, learner, info):
        """Each callback's ``on_round``, in order; ``False`` if any returned ``False``."""
        go_on = True
        for callback in self.callbacks:
            go_on = (callback.on_round(learner, info) is not False) and go_on
        return go_on

    def on_training_end(self, learner):
        """Each callback's ``on_training_end``, in order."""
        for callback in self.callbacks:
            callback.on_training_end(learner)


class FunctionCallback(BaseCallback):
    """A function ``f(learner, info) -> bool | None`` called after each round."""

    def __init__(self, function: Callable[[Any, dict], bool | None]):
        self.function = function

    def on_round(self, learner, info):
        """The function's answer: ``False`` stops training."""
        return self.function(learner, info)


def as_callback(callback: Any) -> CallbackList:
    """What ``learn(callback=...)`` takes, as one :class:`CallbackList`: ``None`` (none), a
    :class:`BaseCallback`, a function ``f(learner, info)``, or a list of these."""
    if callback is None:
        return CallbackList([])
    if isinstance(callback, CallbackList):
        return callback
    if isinstance(callback, BaseCallback):
        return CallbackList([callback])
    if isinstance(callback, (list, tuple)):
        return CallbackList(cb for item in callback if item is not None for cb in as_callback(item).callbacks)
    if callable(callback):
        return CallbackList([FunctionCallback(callback)])
    raise TypeError(
        "callback must be an agents.common.callbacks.BaseCallback, a function f(learner, info), a list of them "
        f"or None; got {callback!r:.80}"
    )


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over the rounds of ``learn`` with the live (mean) proxy and true utility
    (needs tqdm)."""

    def __init__(self):
        self.bar = None

    def on_training_start(self, learner, total_rounds):
        """Open a bar of ``total_rounds`` rounds, named by the learner's id."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_rounds, desc=learner.id, unit="round")

    def on_round(self, learner, info):
        """Advance the bar one round and show the round's mean proxy and true utility."""
        self.bar.update()
        self.bar.set_postfix(proxy=f"{np.mean(info['proxy_reward']):.3f}", true=f"{np.mean(info['true_utility']):.3f}")
        return True

    def on_training_end(self, learner):
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# Checkpoints -------------------------------------------------------------------------------
def checkpoint_path(folder: str | Path, num_rounds: int) -> Path:
    """Where the checkpoint after ``num_rounds`` rounds goes: ``folder/round_XXXXXX.fpo``."""
    return Path(folder) / f"round_{num_rounds:06d}.fpo"


def checkpoints(folder: str | Path) -> list[Path]:
    """The complete checkpoints in ``folder``, oldest first (a file being written has a
    temporary name until it is complete, so it is never among them)."""
    return sorted(Path(folder).glob("round_*.fpo"))


def save_checkpoint(learner: Any, folder: str | Path, keep: int | None = 2) -> Path:
    """Save ``learner`` to :func:`checkpoint_path` atomically (:meth:`agents.Agent.save`
    writes a temporary file and renames it: a checkpoint exists only once complete), then
    delete all but the newest ``keep`` checkpoints of ``folder`` (``None``: keep all)."""
    target = checkpoint_path(folder, learner.num_rounds)
    learner.save(target)
    if keep is not None:
        for old in checkpoints(folder)[:-keep]:
            old.unlink()
    return target


class CheckpointCallback(BaseCallback):
    """Save the learner every ``save_freq`` rounds to ``save_path/round_XXXXXX.fpo``.

    It saves after round ``n`` when ``n`` is a multiple of ``save_freq``, for a learner that
    can be saved exactly after any round (:attr:`agents.Agent.checkpointable`); PPO, which can
    only between its rollouts, at the end of the first rollout that passes a multiple. A
    checkpoint holds everything the learner needs to continue exactly (its learned state,
    every random state, its env's state); load it with :meth:`agents.Agent.load`, or resume a
    run directory with :meth:`agents.Agent.resume`.

    Args:
        save_freq: rounds between checkpoints (>= 1).
        save_path: the folder (``run_dir / "checkpoints"`` for :meth:`agents.Agent.resume`).
        keep: how many of the newest checkpoints to keep, older ones deleted after each save
            (>= 1; ``None``: all).
    """

    def __init__(self, save_freq: int, save_path: str | Path, keep: int | None = 2):
        if isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer)) or save_freq < 1:
            raise ValueError(f"save_freq must be a whole number of rounds >= 1, got {save_freq!r}")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1):
            raise ValueError(f"keep must be a whole number >= 1 or None (keep all), got {keep!r}")
        self.save_freq, self.save_path, self.keep = int(save_freq), Path(save_path), keep
        self._last = 0

    def on_training_start(self, learner, total_rounds):
        """Count the next ``save_freq`` multiple from the rounds the learner has played."""
        self._last = learner.num_rounds

    def on_round(self, learner, info):
        """Save a checkpoint once a multiple of ``save_freq`` is passed and the learner can be saved."""
        n = learner.num_rounds
        if n // self.save_freq > self._last // self.save_freq and learner.checkpointable:
            save_checkpoint(learner, self.save_path, self.keep)
            self._last = n
        return True


# Metrics -----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON value: arrays as (nested) lists, numpy scalars as Python numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


class MetricsCallback(BaseCallback):
    """Stream every round's metrics to ``run_dir/metrics.csv`` and ``run_dir/metrics.jsonl``
    (and TensorBoard scalars under ``run_dir/tensorboard`` where installed).

    A row is ``{"round": index, ...}`` with the round's 0-based index and, by default, every
    entry of the round's ``info`` (the env's and the learner's own records); on a vector env a
    value is a list, one item per copy (a JSON list in the CSV cell). Both files are
    append-only; as training starts, the rows past the learner's ``num_rounds`` (played after
    the checkpoint an interrupted run resumed from) are dropped, so a resumed run writes each
    round once.

    Args:
        run_dir: the folder (made if missing).
        row: ``row(info) -> dict``, the entries of a round's row after ``round`` (default: all of ``info``).
        tensorboard: also write TensorBoard scalars: ``None`` where it is installed, ``True``
            (an ``ImportError`` where it is not) or ``False``.
        upgrade: a function applied to each row kept from an earlier stream as training
            starts (rows written under a game's earlier metric names, for instance).
    """

    def __init__(
        self,
        run_dir: str | Path,
        row: Callable[[dict], dict] | None = None,
        tensorboard: bool | None = None,
        upgrade: Callable[[dict], dict] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.csv_path, self.jsonl_path = self.run_dir / "metrics.csv", self.run_dir / "metrics.jsonl"
        self.row, self.tensorboard, self.upgrade = row, tensorboard, upgrade
        self._fields: list[str] | None = None
        self.tb = None

    def on_training_start(self, learner, total_rounds):
        """Make ``run_dir``, keep the streams' first ``num_rounds`` rows (upgraded), and open
        TensorBoard where it is used."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._keep_rows(learner.num_rounds)
        self.tb = None
        if self.tensorboard is not False:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if self.tensorboard:
                    raise ImportError("MetricsCallback(tensorboard=True) needs TensorBoard: pip install tensorboard") from None
            else:
                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _keep_rows(self, rows: int) -> None:
        """Keep the first ``rows`` rows of each stream (upgraded), drop the rest."""
        upgrade = self.upgrade or dict
        if self.jsonl_path.exists():
            lines = self.jsonl_path.read_text().splitlines()[:rows]
            self.jsonl_path.write_text("".join(json.dumps(upgrade(json.loads(line))) + "\n" for line in lines))
        self._fields = None
        if self.csv_path.exists():
            # Parsed, not split by lines: a response may hold newlines inside a quoted field.
            with open(self.csv_path, newline="") as fh:
                reader = csv.DictReader(fh)
                records = [upgrade(record) for record in reader][:rows]
                fields = list(upgrade(dict.fromkeys(reader.fieldnames or ())))
            self._write_csv(fields if records else [], records)

    def _write_csv(self, fields: list[str], records: list[dict]) -> None:
        with open(self.csv_path, "w", newline="") as fh:
            if fields:
                writer = csv.DictWriter(fh, fieldnames=fields, restval="")
                writer.writeheader()
                writer.writerows(records)
        self._fields = fields or None

    def on_round(self, learner, info):
        """Append the round's row to both files (widening the CSV header for new columns) and
        its numeric entries to TensorBoard."""
        row = {"round": learner.num_rounds - 1, **(info if self.row is None else self.row(info))}
        row = {k: _plain(v) for k, v in row.items()}
        cells = {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}
        if self._fields is not None and not set(cells) <= set(self._fields):
            # New columns (a stream begun by an earlier version): widen the header, rows kept.
            with open(self.csv_path, newline="") as fh:
                records = list(csv.DictReader(fh))
            self._write_csv(self._fields + [k for k in cells if k not in self._fields], records)
        with open(self.csv_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields or list(cells), restval="")
            if self._fields is None:
                writer.writeheader()
                self._fields = list(cells)
            writer.writerow(cells)
        with open(self.jsonl_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, row["round"])
            self.tb.flush()
        return True

    def on_training_end(self, learner):
        """Close the TensorBoard writer."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def run_callbacks(run_dir: str | Path, checkpoint_every: int, keep: int | None = 2, **metrics: Any) -> CallbackList:
    """The callbacks of a run directory :meth:`agents.Agent.resume` continues: its metrics
    streamed (:class:`MetricsCallback`, ``**metrics`` its options) and a checkpoint every
    ``checkpoint_every`` rounds under ``run_dir/checkpoints`` (:class:`CheckpointCallback`,
    none if 0). The metrics row of a round is written before its checkpoint."""
    callbacks: list[BaseCallback] = [MetricsCallback(run_dir, **metrics)]
    if checkpoint_every:
        callbacks.append(CheckpointCallback(checkpoint_every, Path(run_dir) / CHECKPOINTS, keep))
    return CallbackList(callbacks)


__all__ = [
    "CHECKPOINTS",
    "BaseCallback",
    "CallbackList",
    "CheckpointCallback",
    "FunctionCallback",
    "MetricsCallback",
    "ProgressBarCallback",
    "as_callback",
    "checkpoint_path",
    "checkpoints",
    "run_callbacks",
    "save_checkpoint",
]
