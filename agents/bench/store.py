"""The results store: every finished run stored once, keyed by a hash of what determines it.

A run is one (game, env arguments, rounds, learner, config, seed) played once; its key also
holds the torch thread count (float results depend on it) and, for learners whose vector
copies share a random stream, the batch of seeds it was played in. The store is a folder::

    <root>/runs/<h[:2]>/<h>.npz     one run: its per-round history and a JSON header

written atomically (a temporary file renamed into place), so a killed sweep leaves only
finished runs and stray temporaries, which opening the store removes. Rerunning a suite
skips every run already stored. A file the store did not write, or one that does not read
back, is a :class:`StoreError` that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "fpo-bench run"
VERSION = 1
_RUN_FILE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{24}\.npz$")


class StoreError(RuntimeError):
    """A file in the results store that is corrupt or not the store's own."""


def run_hash(key: dict[str, Any]) -> str:
    """The store's name for a run: a hash of its key (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Store:
    """A folder of finished runs (module docstring)."""

    def __init__(self, root: str | Path, check: bool = True):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        if check:  # the sweep's own process only: workers must not remove each other's temporaries
            self._check_folder()

    def _check_folder(self) -> None:
        for path in self.runs.rglob("*"):
            if path.is_dir():
                continue
            relative = path.relative_to(self.runs).as_posix()
            if path.name.startswith(".tmp-"):
                path.unlink(missing_ok=True)  # a run whose writer was killed: it reruns
            elif not _RUN_FILE.match(relative):
                raise StoreError(f"{path} is not a run of this results store; move it out of {self.runs}")

    def path(self, h: str) -> Path:
        return self.runs / h[:2] / f"{h}.npz"

    def has(self, h: str) -> bool:
        return self.path(h).exists()

    def write(self, key: dict, history: dict[str, np.ndarray], summary: dict[str, float]) -> str:
        """Store one run; returns its hash."""
        h = run_hash(key)
        header = {"format": FORMAT, "version": VERSION, "hash": h, "key": key, "summary": summary}
        target = self.path(h)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, __header__=np.asarray(json.dumps(header)), **history)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return h

    def _open(self, h: str) -> Any:
        path = self.path(h)
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(str(data["__header__"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
            raise StoreError(f"{path} does not read as a stored run ({err!r}); delete it to rerun that run") from err
        if header.get("format") != FORMAT or header.get("hash") != h or run_hash(header.get("key", {})) != h:
            raise StoreError(f"{path} is not this store's run {h} (foreign or renamed file); delete it to rerun that run")
        return data, header

    def header(self, h: str) -> dict:
        """The run's key and summary, without its history."""
        data, header = self._open(h)
        data.close()
        return header

    def read(self, h: str, keys: tuple[str, ...] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        """``(header, history)`` of a stored run (only ``keys`` of the history, if given)."""
        data, header = self._open(h)
        with data:
            names = [k for k in data.files if k != "__header__" and (keys is None or k in keys)]
            try:
                history = {k: data[k] for k in names}
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                raise StoreError(f"{self.path(h)} is corrupt ({err!r}); delete it to rerun that run") from err
        return header, history
