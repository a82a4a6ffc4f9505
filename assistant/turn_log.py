"""The turn log: one line per search turn, so the shop can see sessions that never picked anything.

The pick log only holds picks; a pick *rate* needs the sessions that searched
and left. Each search turn appends ``{session (salted hash), time, model, turn,
results, action, mode}`` to ``turns.jsonl`` beside the pick log: no user text,
no images, nothing a customer could be recognised by.

It is statistics, not customer data, so an append takes the ``flock`` (and the
same current-file check, because retention rewrites this file too) but does
not ``fsync``: a written line already survives a killed process (it is in the
kernel's page cache); only a power cut or kernel crash can drop the last few
lines, which under-counts a few turns, and no one was promised anything on
the strength of it. An fsync on every search turn would put a disk flush in the
latency of every reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.triplet_log import SCHEMA_VERSION, hash_session, json_line, load_salt, utc_now
from retrieval.durable_files import append_line

TURN_LOG_NAME = "turns.jsonl"


def turn_log_path(pick_log: Path) -> Path:
    """Where the turn log of a pick log lives: beside it."""
    return Path(pick_log).parent / TURN_LOG_NAME


@dataclass
class TurnLog:
    """An append-only JSON-lines file of search turns (hashed session, time, model, counts)."""

    path: Path
    salt: bytes = field(repr=False, default=b"")

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.salt:
            self.salt = load_salt()

    def record(self, session_id: str, model_version: str, turn: int, results: int, action: str,
               mode: str | None) -> dict[str, Any]:
        """Append one search turn; ``turn`` counts turns since the session's start, last pick or start over."""
        record = {
            "schema": SCHEMA_VERSION,
            "session": hash_session(session_id, self.salt),
            "time": utc_now(),
            "model": model_version,
            "turn": int(turn),
            "results": int(results),
            "action": action,
            "mode": mode,
        }
        append_line(self.path, json_line(record), durable=False)
        return record
