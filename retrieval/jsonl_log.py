"""Reading a JSON-lines log while writers append to it (the pick log, the turn log): no lock, whole lines only.

The writing side is ``retrieval.durable_files.append_line``; what the records
mean belongs to their writer (``assistant.triplet_log``). Reading sits here, in
the lowest layer, so the assistant's figures and the fine-tune's harvest
(``training.finetune``) share one reader without ``training`` importing
``assistant``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LogScan:
    """What a reader found: valid records and the count of lines it could not use."""

    records: list[dict[str, Any]]
    bad_lines: int = 0


def scan_log(path: Path) -> LogScan:
    """Read the log without locking: complete JSON lines only; torn or corrupt lines are counted, not raised."""
    path = Path(path)
    if not path.exists():
        return LogScan([])
    records, bad = [], 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    lines.pop()
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return LogScan(records, bad)


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete, valid record, in order."""
    yield from scan_log(path).records
