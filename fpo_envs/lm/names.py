"""The text game's metric names across versions: the metrics it once reported under the
vector games' names (:data:`RENAMED_INFO_KEYS`), and how to read a record stored under them
(:func:`with_current_names`), for the learners' streamed metrics, the benchmark's store and
its reports."""

from __future__ import annotations

RENAMED_INFO_KEYS = {"signal_norm": "quality_gap", "noise_norm": "response_tokens"}
"""The text game's metrics that were once reported under the vector games' names (old name:
name now): the quality gap ``U(x, y) - U(x, y')`` and the response's length in tokens."""


def with_current_names(record: dict) -> dict:
    """``record`` (a round's metrics, a history or a run summary of the text game, as stored
    before :data:`RENAMED_INFO_KEYS`) with every old name replaced by today's, also inside a
    longer key (``final_signal_norm`` becomes ``final_quality_gap``). Where the record holds a
    metric under both names (a round's row held ``noise_norm`` beside ``response_tokens``), the
    current one is kept. A record under today's names is returned as it is (a new dict)."""
    out = {}
    for key, value in record.items():
        new = key
        for old, current in RENAMED_INFO_KEYS.items():
            new = new.replace(old, current)
        if new == key or new not in record:
            out[new] = value
    return out
