"""The triplet log: one JSON line per pick, durable before the UI confirms, safe with concurrent writers.

Each append (``retrieval.durable_files.append_line``) takes an exclusive
``flock`` on the log file, repairs a torn last line a killed writer may have
left (so it cannot swallow the new record), writes the whole record as one
line, then ``os.fsync``. Retention
(``assistant.log_retention``) rewrites the file by temp + fsync + rename under
the same lock, so after taking the lock an appender checks that its fd is still
the file at the path and reopens if not. Readers (``retrieval.jsonl_log``) take no lock
and skip a line that is not yet complete, so the log can be read, exported and
summarised while the app writes to it. Session ids are stored only as salted
hashes; an uploaded reference is stored as its content hash, and a copy of the
(sanitised) image is kept only when the user consented.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import secrets
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.conversation import PickEvent
from retrieval.data_home import default_data_dir
from retrieval.durable_files import append_line, write_atomically
from retrieval.jsonl_log import read_log, scan_log

SCHEMA_VERSION = 1
ENV_SALT = "CIRCHAT_LOG_SALT"
SALT_FILE = "log_salt"


def default_log_path() -> Path:
    """Where the pick log lives unless told otherwise: ``$CIRCHAT_HOME/triplets/triplets.jsonl``."""
    return default_data_dir() / "triplets" / "triplets.jsonl"


def load_salt(config_dir: Path | None = None) -> bytes:
    """The session-id salt: ``$CIRCHAT_LOG_SALT``, else a random one kept (mode 600) in the config folder."""
    env = os.environ.get(ENV_SALT)
    if env:
        return env.encode()
    path = (config_dir or default_data_dir()) / SALT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
    return path.read_text().strip().encode()


def hash_session(session_id: str, salt: bytes) -> str:
    """A salted, keyed hash: the same session maps to the same value, and the raw id is never stored."""
    return hmac.new(salt, session_id.encode(), hashlib.sha256).hexdigest()[:32]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(record: Mapping[str, Any]) -> bytes:
    """One record as one compact JSON line."""
    line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n").encode()
    if b"\n" in line[:-1]:
        raise ValueError("a record must serialise to a single line")
    return line


@dataclass
class TripletLog:
    """An append-only JSON-lines file of picks, with a folder for consented upload copies beside it."""

    path: Path
    salt: bytes = field(repr=False, default=b"")

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.salt:
            self.salt = load_salt()

    @property
    def uploads_dir(self) -> Path:
        return self.path.parent / "uploads"

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably; returns only once it is on disk."""
        append_line(self.path, json_line(record), durable=True)

    def store_upload(self, sha256: str, png: bytes) -> str:
        """Keep a consented copy of an uploaded reference (already sanitised); returns its path relative to the log."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        target = self.uploads_dir / f"{sha256}.png"
        if not target.exists():
            write_atomically(target, png)
        return str(target.relative_to(self.path.parent))

    def record(self, event: PickEvent, session_id: str, model_version: str,
               upload_png: bytes | None = None, consent: bool = False) -> dict[str, Any]:
        """Build the log record for a pick (storing the upload copy first, when consented) and append it.

        The copy is checked again after the append: a retention run that got the
        lock in between saw no record naming it and removed it as unreferenced.
        """
        reference: dict[str, Any] | None = None
        stored: str | None = None
        ref = event.reference
        if ref is not None and ref.kind == "catalog":
            reference = {"kind": "catalog", "id": ref.key}
        elif ref is not None:
            stored = self.store_upload(ref.key, upload_png) if consent and upload_png is not None else None
            reference = {"kind": "upload", "sha256": ref.key, "consent": bool(consent), "stored": stored}
        record = {
            "schema": SCHEMA_VERSION,
            "session": hash_session(session_id, self.salt),
            "time": utc_now(),
            "reference": reference,
            "instructions": list(event.said),
            "parsed": [i.to_dict() for i in event.instructions],
            "composed_text": event.composed_text,
            "mode": event.mode,
            "where": event.where,
            "picked": {**event.item.to_dict(), "metadata": _plain(event.item.metadata)},
            "shown": [s.to_dict() for s in event.shown],
            "turns": event.turns,
            "model": model_version,
            "language": event.language,
        }
        self.append(record)
        if stored is not None:
            self.store_upload(ref.key, upload_png)
        return record

    def read(self) -> Iterator[dict[str, Any]]:
        """Every complete, valid record, in order (a line still being written is skipped)."""
        yield from read_log(self.path)


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool) or v is None}


def flat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per pick, the shape training and dataframes want."""
    rows = []
    for r in records:
        ref = r.get("reference") or {}
        picked = r.get("picked") or {}
        shown = r.get("shown") or []
        rows.append({
            "session": r.get("session"), "time": r.get("time"), "model": r.get("model"),
            "reference_kind": ref.get("kind"), "reference_id": ref.get("id"),
            "reference_sha256": ref.get("sha256"), "reference_stored": ref.get("stored"),
            "instructions": list(r.get("instructions") or []), "composed_text": r.get("composed_text"),
            "mode": r.get("mode"), "where": r.get("where"),
            "picked_id": picked.get("id"), "picked_rank": picked.get("rank"), "picked_score": picked.get("score"),
            "shown_ids": [s.get("id") for s in shown], "shown_scores": [float(s.get("score", 0.0)) for s in shown],
            "turns": r.get("turns"),
        })
    return rows


def export_log(path: Path, out: Path, fmt: str) -> int:
    """Write the valid records as JSON lines (as logged) or as a flat Parquet table; returns the row count."""
    records = scan_log(path).records
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        write_atomically(out, body.encode())
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([
            ("session", pa.string()), ("time", pa.string()), ("model", pa.string()),
            ("reference_kind", pa.string()), ("reference_id", pa.string()), ("reference_sha256", pa.string()),
            ("reference_stored", pa.string()), ("instructions", pa.list_(pa.string())),
            ("composed_text", pa.string()), ("mode", pa.string()), ("where", pa.string()),
            ("picked_id", pa.string()), ("picked_rank", pa.int32()), ("picked_score", pa.float64()),
            ("shown_ids", pa.list_(pa.string())), ("shown_scores", pa.list_(pa.float64())), ("turns", pa.int32()),
        ])
        table = pa.Table.from_pylist(flat_rows(records), schema=schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        write_atomically(out, buffer.getvalue())
    else:
        raise ValueError(f"format must be jsonl or parquet, not {fmt!r}")
    return len(records)


def log_stats(path: Path) -> dict[str, Any]:
    """Sessions, picks, turns until a pick and the rank of the picked item: is the assistant getting better?"""
    scan = scan_log(path)
    records = scan.records
    ranks = [r["picked"]["rank"] for r in records if (r.get("picked") or {}).get("rank") is not None]
    turns = [r["turns"] for r in records if isinstance(r.get("turns"), int)]
    kinds: dict[str, int] = {}
    models: dict[str, int] = {}
    for r in records:
        kind = (r.get("reference") or {}).get("kind", "text")
        kinds[kind] = kinds.get(kind, 0) + 1
        models[str(r.get("model"))] = models.get(str(r.get("model")), 0) + 1

    def summary(values: list[int]) -> dict[str, float] | None:
        if not values:
            return None
        return {"mean": round(statistics.fmean(values), 3), "median": float(statistics.median(values)),
                "min": float(min(values)), "max": float(max(values))}

    return {
        "log": str(path),
        "picks": len(records),
        "sessions": len({r.get("session") for r in records}),
        "bad_lines": scan.bad_lines,
        "references": kinds,
        "models": models,
        "turns_until_pick": summary(turns),
        "picked_rank": summary(ranks),
        "picked_at_rank_1": round(sum(r == 1 for r in ranks) / len(ranks), 3) if ranks else None,
        "picked_in_top_5": round(sum(r <= 5 for r in ranks) / len(ranks), 3) if ranks else None,
        "first": records[0].get("time") if records else None,
        "last": records[-1].get("time") if records else None,
    }
