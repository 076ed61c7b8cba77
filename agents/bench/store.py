"""The results store: every finished run stored once, keyed by a hash of what determines it.

A run is one (game, env arguments, rounds, learner, config, seed) played once; its key also
holds the torch thread count (float results depend on it) and, for learners whose vector
copies share a random stream, the batch of seeds it was played in. The store is a folder::

    <root>/runs/<h[:2]>/<h>.npz     one run: its per-round history and a JSON header
    <root>/index.json               each run's size and sha256, recorded when it was written
    <root>/quarantine/              runs that failed verification, moved aside (never deleted)

Runs are written atomically (a temporary file renamed into place), so a killed sweep leaves
only finished runs and stray temporaries, which opening the store removes. Rerunning a suite
skips every run already stored, but only once that run is verified (:meth:`Store.verify`):
its size and sha256 must match those the sweep recorded as the run's job finished, which
costs a ``stat`` and one pass over the bytes, no decoding. A run with no record (a store
written before the index existed, or one whose sweep was killed before it saved the index)
is verified by a full read instead (:meth:`Store.read_fully`: every zip member's CRC-32,
the members' layout, every array decoded) and then recorded; so is a run whose checksum
differs, which is kept if it still reads in full (bytes outside the CRCs, such as a zip
timestamp, or the same run rewritten by another sweep on this store).

Policy for a run that fails (empty, truncated, garbage, bytes flipped inside a compressed
array): the sweep prints a warning that names the file and why, moves it (with a text run's
artifacts) to ``<root>/quarantine/``, reruns its job and rewrites the report; a long sweep
heals itself and nothing is deleted. A file that decodes but is not this store's run (a
foreign or renamed run), or any other file in ``runs/``, is a :class:`StoreError` that
names it: such a file was put there, so the store refuses to guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "fpo-bench run"
"""The format tag of a run's header; a file in ``runs/`` without it is foreign (:class:`StoreError`)."""
VERSION = 1
"""The run format's version, written into every run's header."""
INDEX_FORMAT = "fpo-bench index"
"""The format tag of ``index.json``; an index without it is not read (every run is then verified in full)."""
_RUN_FILE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{24}\.npz$")


class StoreError(RuntimeError):
    """A file in the results store that is corrupt or not the store's own."""


class CorruptRunError(StoreError):
    """A stored run whose file does not decode (empty, truncated or damaged bytes).

    Attributes:
        path: the run's file.
        why: what went wrong, in words (the decoder's error included).
    """

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} is corrupt: {why}; delete it (or rerun the suite, which moves it to quarantine) to rerun it")
        self.path, self.why = path, why


def run_hash(key: dict[str, Any]) -> str:
    """The store's name for a run: a hash of its key (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_checksum(path: Path) -> tuple[int, str]:
    """``(size in bytes, sha256 hex digest)`` of a file's bytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def warn(message: str) -> None:
    """A warning line on stderr (what the sweep found and what it did about it)."""
    print(f"fpo-bench: warning: {message}", file=sys.stderr, flush=True)


class Store:
    """A folder of finished runs (module docstring).

    Args:
        root: the store's folder (created if missing).
        check: remove stray temporaries and refuse foreign files in ``runs/``; only the
            sweep's own process does this (workers must not remove each other's temporaries),
            and only it reads and writes the index.
    """

    def __init__(self, root: str | Path, check: bool = True):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.quarantine_dir = self.root / "quarantine"
        self.index_path = self.root / "index.json"
        self.runs.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, dict] | None = None  # read on first use
        self._recorded: dict[str, dict] = {}  # this process's changes, merged into the file on save
        self._dropped: set[str] = set()
        if check:
            self._check_folder()

    def _check_folder(self) -> None:
        for path in self.root.glob(".tmp-index-*"):
            path.unlink(missing_ok=True)  # an index write that was killed; the index file is intact
        for path in self.runs.rglob("*"):
            if path.is_dir():
                continue
            relative = path.relative_to(self.runs).as_posix()
            if path.name.startswith(".tmp-"):
                path.unlink(missing_ok=True)  # a run whose writer was killed: it reruns
            elif not _RUN_FILE.match(relative):
                raise StoreError(f"{path} is not a run of this results store; move it out of {self.runs}")

    def path(self, h: str) -> Path:
        """The file of run ``h`` (whether or not it exists)."""
        return self.runs / h[:2] / f"{h}.npz"

    def has(self, h: str) -> bool:
        """Whether run ``h`` has a file (present, not yet verified)."""
        return self.path(h).exists()

    def write(self, key: dict, history: dict[str, np.ndarray], summary: dict[str, float]) -> str:
        """Store one run; returns its hash. (The sweep's process records its checksum,
        :meth:`record`, since workers in other processes do not share the index.)"""
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

    # -- verification ------------------------------------------------------------------

    @property
    def index(self) -> dict[str, dict]:
        """``{hash: {"size": bytes, "sha256": hex}}`` of the runs recorded at write time."""
        if self._index is None:
            self._index = self._read_index()
        return self._index

    def _read_index(self, quiet: bool = False) -> dict[str, dict]:
        if not self.index_path.exists():
            return {}
        try:
            data = json.loads(self.index_path.read_text())
            runs = data["runs"] if data.get("format") == INDEX_FORMAT else None
            if not isinstance(runs, dict):
                raise ValueError(f"not an {INDEX_FORMAT} file")
            return {h: e for h, e in runs.items() if isinstance(e, dict) and {"size", "sha256"} <= e.keys()}
        except (OSError, ValueError, KeyError, AttributeError) as err:
            if not quiet:
                warn(
                    f"{self.index_path} does not read ({err!r}); every run will be verified by a full read and the index rebuilt"
                )
            return {}

    def record(self, h: str) -> None:
        """Record the run's size and checksum now (right after it was written or verified)."""
        size, sha = file_checksum(self.path(h))
        self.index[h] = self._recorded[h] = {"size": size, "sha256": sha}
        self._dropped.discard(h)

    def checksum(self, h: str) -> str:
        """The run's sha256: the recorded one, else computed from its bytes."""
        entry = self.index.get(h)
        return entry["sha256"] if entry else file_checksum(self.path(h))[1]

    def verify(self, h: str) -> str | None:
        """``None`` if the stored run ``h`` is intact, else why not (in words).

        Cheap when the run was recorded: its size and sha256 against the record. A run with
        no record, or whose bytes changed, gets a full read (:meth:`read_fully`) and is
        recorded if that passes. A file that decodes but is not this store's run raises
        :class:`StoreError`: that is not damage, and rerunning would hide the mix-up.
        """
        path = self.path(h)
        size = path.stat().st_size
        recorded = self.index.get(h)
        if size == 0:
            return "empty (0 bytes)" + (f"; {recorded['size']} bytes were written" if recorded else "")
        if recorded and size == recorded["size"] and file_checksum(path)[1] == recorded["sha256"]:
            return None
        try:
            self.read_fully(h)
        except CorruptRunError as err:
            if not recorded:
                return f"corrupt ({err.why})"
            if size < recorded["size"]:
                return f"truncated: {size} of the {recorded['size']} bytes written ({err.why})"
            if size > recorded["size"]:
                return f"{size} bytes long where {recorded['size']} were written ({err.why})"
            return f"corrupt: its bytes changed since they were written, sha256 differs ({err.why})"
        self.record(h)
        return None

    def read_fully(self, h: str) -> None:
        """Read the whole run: the zip's structure (every member's CRC-32, and members that
        tile the file up to its central directory, so a damaged length field cannot hide
        one), then the header and every array decoded. Raises :class:`CorruptRunError` if
        any of it fails, :class:`StoreError` if it decodes but is not this store's run."""
        _check_zip(self.path(h))
        data, _ = self._open(h)
        with data:
            try:
                for name in data.files:
                    data[name]
            except Exception as err:  # any failure to decode a file this store wrote is damage
                raise CorruptRunError(self.path(h), f"an array does not decode: {err!r}") from err

    def quarantine(self, h: str, also: tuple[Path, ...] = ()) -> Path:
        """Move the run's file to ``<root>/quarantine/<h>.npz`` (``<h>.2.npz``, ... if taken)
        and each folder in ``also`` (a text run's ``artifacts/<h>``) beside it as
        ``<h>-artifacts``; drop its record. Returns where the file went."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = _free(self.quarantine_dir / f"{h}.npz")
        os.replace(self.path(h), target)
        for extra in also:
            if extra.exists():
                shutil.move(str(extra), str(_free(self.quarantine_dir / f"{target.stem}-{extra.parent.name}")))
        self.index.pop(h, None)
        self._recorded.pop(h, None)
        self._dropped.add(h)
        return target

    def save_index(self) -> None:
        """Write this process's records into ``index.json`` (atomically, merged with what
        another sweep on the same store may have written meanwhile)."""
        if not self._recorded and not self._dropped:
            return
        runs = {**self._read_index(quiet=True), **self._recorded}
        for h in self._dropped:
            runs.pop(h, None)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-index-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"format": INDEX_FORMAT, "version": 1, "runs": runs}, fh, sort_keys=True, indent=0)
            os.replace(tmp, self.index_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._index = runs
        self._recorded, self._dropped = {}, set()

    # -- reading -----------------------------------------------------------------------

    def _open(self, h: str) -> Any:
        path = self.path(h)
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as err:  # empty, truncated or garbage bytes fail in many ways (zipfile, numpy)
            raise CorruptRunError(path, f"does not read as a zip archive: {err!r}") from err
        try:
            header = json.loads(str(data["__header__"]))
        except KeyError as err:
            data.close()
            raise StoreError(f"{path} has no fpo-bench header (a foreign file); move it out of {self.runs}") from err
        except Exception as err:
            data.close()
            raise CorruptRunError(path, f"its header does not decode: {err!r}") from err
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            data.close()
            raise StoreError(f"{path} is not an fpo-bench run (a foreign file); move it out of {self.runs}")
        if header.get("hash") != h or run_hash(header.get("key", {})) != h:
            data.close()
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
            except Exception as err:
                raise CorruptRunError(self.path(h), f"an array does not decode: {err!r}") from err
        return header, history


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local header (APPNOTE 4.3.7), 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _check_zip(path: Path) -> None:
    """Raise :class:`CorruptRunError` unless ``path`` is a whole zip archive: every member's
    CRC-32 checks, and the members lie end to end from byte 0 to the central directory."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
            try:
                bad = archive.testzip()
            except Exception as err:  # damaged deflate data (zlib), a damaged member header (zipfile)
                raise CorruptRunError(path, f"a member does not decompress: {err!r}") from err
            if bad is not None:
                raise CorruptRunError(path, f"member {bad!r} fails its CRC-32 check")
            members = sorted(archive.infolist(), key=lambda info: info.header_offset)
            if any(info.flag_bits & 0x08 for info in members):
                return  # sizes in data descriptors (not how numpy writes to a file): the CRCs must do
            end = 0
            for info in members:
                fh.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
                if info.header_offset != end or fields[0] != _LOCAL_SIGNATURE:
                    raise CorruptRunError(path, f"member {info.filename!r} is not where the previous one ends (byte {end})")
                end = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10] + info.compress_size
            if end != archive.start_dir:
                raise CorruptRunError(path, f"bytes {end}-{archive.start_dir} belong to no member (a damaged directory)")
    except CorruptRunError:
        raise
    except Exception as err:  # zipfile fails in many ways on damaged bytes (BadZipFile, struct, zlib, NotImplemented)
        raise CorruptRunError(path, f"does not read as a zip archive: {err!r}") from err


def _free(path: Path) -> Path:
    """``path``, or ``stem.2.suffix``, ``stem.3.suffix``, ... whichever does not exist yet."""
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate
