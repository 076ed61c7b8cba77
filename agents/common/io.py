"""The one file format every learner saves to (ARCHITECTURE.md, 5).

A learner file is a zip archive:

- ``learner.json``: the format tag and version, the learner's registered id, the module that
  registered it and that module's file (``source``: what a learner a script registered
  needs, to be registered again), its seed, config and round count, and a JSON skeleton of its state in
  which every array stands as ``{"__array__": key}`` and every torch tensor as
  ``{"__tensor__": key}``;
- ``arrays.npz``: the numpy arrays, read with ``allow_pickle=False``;
- ``tensors.pt``: the torch tensors (only if there are any), read with
  ``torch.load(weights_only=True)``.

Nothing in the file is unpickled as code, and the linear game's learners read and write it
with numpy alone.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "fpo-envs learner"
"""The format tag in ``learner.json``; a file with another is not a learner file (``ValueError``)."""
VERSION = 1
"""The learner format's version; :func:`read` refuses a file of another version."""


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _encode(value: Any, arrays: dict, tensors: dict) -> Any:
    if _is_tensor(value):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, arrays, tensors) for k, v in value.items()}
        # Non-string keys (an optimizer's parameter indices) keep their type as pairs.
        return {"__items__": [[_encode(k, arrays, tensors), _encode(v, arrays, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot save a {type(value).__name__} in a learner file (arrays, tensors, numbers, strings, lists and dicts only)"
    )


def _decode(value: Any, arrays: Any, tensors: dict) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__items__" in value:
            return {_decode(k, arrays, tensors): _decode(v, arrays, tensors) for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, arrays, tensors) for v in value["__tuple__"])
        return {k: _decode(v, arrays, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, tensors) for v in value]
    return value


def write(path: str | Path, meta: dict, state: dict) -> None:
    """Write ``meta`` (JSON values) and ``state`` (nested arrays/tensors/values) to ``path``,
    atomically: the file appears only once complete."""
    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, Any] = {}
    header = {"format": FORMAT, "version": VERSION, **meta, "state": _encode(state, arrays, tensors)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("learner.json", json.dumps(header))
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            archive.writestr("arrays.npz", buffer.getvalue())
            if tensors:
                import torch

                buffer = io.BytesIO()
                torch.save(tensors, buffer)
                archive.writestr("tensors.pt", buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: str | Path) -> tuple[dict, dict]:
    """``(meta, state)`` of a learner file; a file of another kind is a clear ``ValueError``."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, IsADirectoryError) as err:
        raise ValueError(f"{path} is not an fpo-envs learner file (not a zip archive)") from err
    with archive:
        names = set(archive.namelist())
        if "learner.json" not in names:
            raise ValueError(f"{path} is not an fpo-envs learner file (no learner.json)")
        header = json.loads(archive.read("learner.json"))
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not an fpo-envs learner file (format {header.get('format')!r})")
        if header.get("version") != VERSION:
            raise ValueError(f"{path} is version {header.get('version')} of the learner format; this fpo-envs reads {VERSION}")
        with np.load(io.BytesIO(archive.read("arrays.npz")), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        tensors = {}
        if "tensors.pt" in names:
            try:
                import torch
            except ImportError as err:
                raise ImportError(f'{path} holds torch tensors: pip install torch (or "fpo-envs[torch]")') from err
            tensors = torch.load(io.BytesIO(archive.read("tensors.pt")), weights_only=True, map_location="cpu")
    state = _decode(header.pop("state"), arrays, tensors)
    return header, state
