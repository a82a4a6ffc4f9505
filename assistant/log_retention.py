"""Retention: prune old records and delete one session's records from the pick and turn logs.

A rewrite must neither lose a concurrent append nor leave a half-written log
after a crash. So it takes the ``flock`` the appenders take (on the file now at
the path), reads it, writes the kept lines to a temp file that it also locks,
fsyncs it, renames it over the log and fsyncs the folder, and only then
releases both locks. An appender that was waiting on the old file finds, once
it holds the lock, that its fd is no longer the file at the path and reopens
(``retrieval.durable_files.lock_current``); one that opens the new file waits
until the rename is durable. Consented upload copies that no remaining pick
names are removed while the pick log's lock is held (``TripletLog.record``
re-checks its copy after appending, so a copy stored just before is kept).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from assistant.triplet_log import hash_session
from assistant.turn_log import turn_log_path
from retrieval.durable_files import fsync_dir, lock_current, read_all, replace_locked

STALE_TEMP_S = 3600
MIN_HASH_CHARS = 16
UPLOAD_SUFFIX = ".png"

Keep = Callable[[bytes, dict[str, Any] | None], bool]


@dataclass
class Rewrite:
    """What a rewrite of one log did: lines kept and removed, and unreadable lines it had to keep."""

    path: str
    kept: int = 0
    removed: int = 0
    unreadable_kept: int = 0
    undated_kept: int = 0


@dataclass
class Retention:
    """What a prune or a session delete did to the pick log, the turn log and the upload copies."""

    picks: Rewrite
    turns: Rewrite
    uploads_removed: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: Any) -> datetime | None:
    """A record's ``time`` as an aware UTC datetime, or None if it has none or it is malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lines(data: bytes) -> list[bytes]:
    """Complete lines; a torn tail from a killed writer becomes a line, as the next append would make it."""
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail:
        lines.append(tail)
    return [line for line in lines if line.strip()]


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def rewrite_log(path: Path, keep: Keep, dry_run: bool = False, then: Callable[[list[dict]], Any] | None = None
                ) -> Rewrite:
    """Keep the lines ``keep(raw, record_or_None)`` accepts; ``then(kept records)`` runs while the lock is held."""
    path = Path(path)
    result = Rewrite(str(path))
    fd = lock_current(path, create=False)
    if fd is None:
        if then is not None:
            then([])
        return result
    new_fd = None
    try:
        kept_lines, kept_records = [], []
        for line in _lines(read_all(fd)):
            record = _decode(line)
            if keep(line, record):
                kept_lines.append(line)
                if record is None:
                    result.unreadable_kept += 1
                else:
                    kept_records.append(record)
                    result.undated_kept += parse_time(record.get("time")) is None
            else:
                result.removed += 1
        result.kept = len(kept_lines)
        if result.removed and not dry_run:
            body = b"".join(line + b"\n" for line in kept_lines)
            new_fd = replace_locked(path, body, os.fstat(fd).st_mode)
        if then is not None:
            then(kept_records)
    finally:
        if new_fd is not None:
            os.close(new_fd)
        os.close(fd)
    return result


def _remove_unreferenced_uploads(uploads: Path, log_dir: Path, records: list[dict], dry_run: bool) -> list[str]:
    """Delete consented copies no remaining pick names, and temp files a crashed write left behind."""
    if not uploads.is_dir():
        return []
    named = {str(stored) for r in records if (stored := (r.get("reference") or {}).get("stored"))}
    removed = []
    for entry in sorted(uploads.iterdir()):
        if not entry.is_file():
            continue
        if entry.name.endswith(".tmp"):
            if _age_s(entry) > STALE_TEMP_S:
                removed.append(str(entry.relative_to(log_dir)))
                if not dry_run:
                    entry.unlink(missing_ok=True)
            continue
        relative = str(entry.relative_to(log_dir))
        if entry.suffix == UPLOAD_SUFFIX and relative not in named:
            removed.append(relative)
            if not dry_run:
                entry.unlink(missing_ok=True)
    if removed and not dry_run:
        fsync_dir(uploads)
    return removed


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_stale_temps(log: Path, dry_run: bool) -> None:
    """Temp files a rewrite killed before its rename left beside ``log``."""
    if dry_run or not log.parent.is_dir():
        return
    for entry in log.parent.glob(f".{log.name}.*.tmp"):
        if _age_s(entry) > STALE_TEMP_S:
            entry.unlink(missing_ok=True)


def _apply(pick_log: Path, turn_log: Path | None, keep: Keep, dry_run: bool) -> Retention:
    pick_log = Path(pick_log)
    turn_log = Path(turn_log) if turn_log is not None else turn_log_path(pick_log)
    uploads_removed: list[str] = []

    def clean_uploads(records: list[dict]) -> None:
        uploads_removed.extend(_remove_unreferenced_uploads(pick_log.parent / "uploads", pick_log.parent, records,
                                                            dry_run))
        for log in (pick_log, turn_log):
            _remove_stale_temps(log, dry_run)

    picks = rewrite_log(pick_log, keep, dry_run, then=clean_uploads)
    turns = rewrite_log(turn_log, keep, dry_run)
    return Retention(picks, turns, uploads_removed, dry_run)


def prune(pick_log: Path, older_than_days: float, turn_log: Path | None = None, dry_run: bool = False,
          now: datetime | None = None) -> Retention:
    """Drop pick and turn records older than ``older_than_days``, then upload copies no pick names any more.

    Records without a readable time are kept and counted (``undated_kept``,
    ``unreadable_kept``): deleting what cannot be dated would be a guess.
    """
    if not older_than_days >= 0:
        raise ValueError(f"--older-than must be a number of days >= 0, not {older_than_days!r}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=float(older_than_days))

    def keep(_raw: bytes, record: dict[str, Any] | None) -> bool:
        when = parse_time(record.get("time")) if record is not None else None
        return when is None or when >= cutoff

    return _apply(pick_log, turn_log, keep, dry_run)


def delete_session_hash(pick_log: Path, session_hash: str, turn_log: Path | None = None,
                        dry_run: bool = False) -> Retention:
    """Remove every record of one (hashed) session, and the upload copies only its picks named.

    A line that is not valid JSON but contains the hash is removed too: a
    damaged record of that session is still that session's data.
    """
    if len(session_hash) < MIN_HASH_CHARS or not all(c in "0123456789abcdef" for c in session_hash):
        raise ValueError(f"a session hash is at least {MIN_HASH_CHARS} lowercase hex digits")
    needle = session_hash.encode()

    def keep(raw: bytes, record: dict[str, Any] | None) -> bool:
        if record is None:
            return needle not in raw
        return record.get("session") != session_hash

    return _apply(pick_log, turn_log, keep, dry_run)


def delete_session(pick_log: Path, session_id: str, salt: bytes, turn_log: Path | None = None,
                   dry_run: bool = False) -> Retention:
    """``delete_session_hash`` for a raw session id, hashed with the log's salt (the raw id is never stored)."""
    if not session_id:
        raise ValueError("empty session id")
    return delete_session_hash(pick_log, hash_session(session_id, salt), turn_log, dry_run)
