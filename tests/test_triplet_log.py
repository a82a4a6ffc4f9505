"""The triplet log: durable one-line appends, several processes at once, a killed writer, readers during
writes, salted session hashes, export (jsonl, parquet) and stats, and the ``circhat triplets`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from assistant.conversation import PickEvent, Reference, ShownItem
from assistant.instruction import Instruction
from assistant.parser import parse_rules
from assistant.triplet_log import TripletLog, export_log, hash_session, load_salt, log_stats, scan_log
from tests.demo_schema import demo_vocabulary
from ui.assistant_commands import app

ROOT = Path(__file__).resolve().parents[1]
WRITER = textwrap.dedent("""
    import sys
    from assistant.triplet_log import TripletLog
    path, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = TripletLog(path, salt=b"s")
    pad = "x" * 3000
    for seq in range(count):
        log.append({"writer": writer, "seq": seq, "pad": pad})
        print(seq, flush=True)
""")


def writer(path: Path, name: str, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def event(item_id: str = "7", rank: int = 2, reference: Reference | None = None, turns: int = 3) -> PickEvent:
    shown = [ShownItem(str(i), i, 0.9 - i / 10, f"/c/{i}.png", {"colour": "red"}) for i in range(1, 5)]
    picked = ShownItem(item_id, rank, 0.8, f"/c/{item_id}.png", {"colour": "blue", "price": 12.5})
    instructions = parse_rules("make it blue, with a bow", demo_vocabulary()).instructions
    return PickEvent(item=picked, reference=reference, instructions=instructions, said=[i.text for i in instructions],
                     composed_text="a photo of * , make it blue , with a bow", mode="composed", where=None,
                     shown=shown, turns=turns)


def test_concurrent_writers_lose_nothing_and_never_interleave(tmp_path):
    path = tmp_path / "log.jsonl"
    procs = [writer(path, f"w{i}", 60) for i in range(4)]
    seen_during_writes = 0
    while any(p.poll() is None for p in procs):
        seen_during_writes = max(seen_during_writes, len(scan_log(path).records))
        assert scan_log(path).bad_lines == 0
        time.sleep(0.01)
    assert all(p.returncode == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert len(lines) == 240
    records = [json.loads(line) for line in lines]
    for i in range(4):
        assert [r["seq"] for r in records if r["writer"] == f"w{i}"] == list(range(60))
    assert seen_during_writes <= 240


def test_acknowledged_appends_survive_a_killed_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    proc = writer(path, "victim", 100_000)
    acked = [int(proc.stdout.readline()) for _ in range(50)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = scan_log(path).records
    assert {r["seq"] for r in records} >= set(acked)
    TripletLog(path, salt=b"s").append({"after": "kill"})
    scan = scan_log(path)
    assert scan.records[-1] == {"after": "kill"} and scan.bad_lines <= 1


def test_a_torn_last_line_cannot_swallow_the_next_record(tmp_path):
    path = tmp_path / "log.jsonl"
    log = TripletLog(path, salt=b"s")
    log.append({"n": 1})
    with open(path, "a") as f:
        f.write('{"n": 2, "half')
    assert [r["n"] for r in scan_log(path).records] == [1]
    log.append({"n": 3})
    scan = scan_log(path)
    assert [r["n"] for r in scan.records] == [1, 3] and scan.bad_lines == 1


def test_record_fields(tmp_path):
    log = TripletLog(tmp_path / "log.jsonl", salt=b"pepper")
    record = log.record(event(reference=Reference("catalog", "42", "/c/42.png", "ref #42")), "sess-1", "model-v1")
    assert record["session"] == hash_session("sess-1", b"pepper") != hash_session("sess-1", b"salt")
    assert "sess-1" not in (tmp_path / "log.jsonl").read_text()
    assert record["reference"] == {"kind": "catalog", "id": "42"}
    assert record["instructions"] == ["make it blue", "with a bow"]
    assert record["parsed"][0] == {"text": "make it blue", "attribute": "colour", "value": "blue", "said": "blue"}
    assert record["picked"] == {"id": "7", "rank": 2, "score": 0.8, "metadata": {"colour": "blue", "price": 12.5}}
    assert [s["rank"] for s in record["shown"]] == [1, 2, 3, 4]
    assert record["model"] == "model-v1" and record["turns"] == 3 and record["time"].endswith("Z")
    assert list(scan_log(tmp_path / "log.jsonl").records) == [record]


def test_upload_reference_is_a_hash_and_a_copy_only_with_consent(tmp_path):
    log = TripletLog(tmp_path / "log.jsonl", salt=b"s")
    upload = Reference.upload("ab" * 32, "/tmp/x.png")
    no = log.record(event(reference=upload), "s", "m", upload_png=b"png-bytes", consent=False)
    assert no["reference"] == {"kind": "upload", "sha256": "ab" * 32, "consent": False, "stored": None}
    assert not log.uploads_dir.exists()
    yes = log.record(event(reference=upload), "s", "m", upload_png=b"png-bytes", consent=True)
    assert (tmp_path / yes["reference"]["stored"]).read_bytes() == b"png-bytes"
    with pytest.raises(ValueError):
        log.store_upload("../../etc/passwd", b"x")


def test_salt_comes_from_env_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCHAT_LOG_SALT", "from-env")
    assert load_salt(tmp_path) == b"from-env"
    monkeypatch.delenv("CIRCHAT_LOG_SALT")
    first = load_salt(tmp_path)
    assert len(first) == 64 and load_salt(tmp_path) == first
    assert (tmp_path / "log_salt").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def filled_log(tmp_path):
    log = TripletLog(tmp_path / "log.jsonl", salt=b"s")
    log.record(event("7", 1, None, 1), "a", "m1")
    log.record(event("8", 3, Reference("catalog", "7", "/c/7.png", "ref #7"), 2), "a", "m1")
    log.record(event("9", 5, Reference.upload("cd" * 32, "/tmp/u.png"), 4), "b", "m2")
    return log.path


def test_export_jsonl_and_parquet(filled_log, tmp_path):
    assert export_log(filled_log, tmp_path / "out.jsonl", "jsonl") == 3
    assert [json.loads(line)["picked"]["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        "7", "8", "9"]
    assert export_log(filled_log, tmp_path / "out.parquet", "parquet") == 3
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["picked_id"] for r in table] == ["7", "8", "9"]
    assert [r["reference_kind"] for r in table] == [None, "catalog", "upload"]
    assert table[1]["reference_id"] == "7" and table[2]["reference_sha256"] == "cd" * 32
    assert table[0]["instructions"] == ["make it blue", "with a bow"] and table[0]["shown_ids"] == ["1", "2", "3", "4"]
    with pytest.raises(ValueError):
        export_log(filled_log, tmp_path / "out.csv", "csv")


def test_stats(filled_log):
    stats = log_stats(filled_log)
    assert stats["picks"] == 3 and stats["sessions"] == 2 and stats["bad_lines"] == 0
    assert stats["picked_rank"] == {"mean": 3.0, "median": 3.0, "min": 1.0, "max": 5.0}
    assert stats["turns_until_pick"]["mean"] == pytest.approx(7 / 3, abs=1e-3)
    assert stats["picked_at_rank_1"] == pytest.approx(1 / 3, abs=1e-3) and stats["picked_in_top_5"] == 1.0
    assert stats["references"] == {"text": 1, "catalog": 1, "upload": 1} and stats["models"] == {"m1": 2, "m2": 1}


def test_triplets_commands(filled_log, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["triplets", "stats", "--log", str(filled_log), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["picks"] == 3
    result = runner.invoke(app, ["triplets", "stats", "--log", str(filled_log)])
    assert "picks: 3 in 2 sessions" in result.output and "picked at rank 1: 33.3%" in result.output
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["triplets", "export", str(out), "--format", "parquet", "--log", str(filled_log)])
    assert result.exit_code == 0 and pq.read_table(out).num_rows == 3
    result = runner.invoke(app, ["triplets", "export", str(out), "--format", "xml", "--log", str(filled_log)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["triplets", "export", str(out), "--log", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no triplet log" in result.output


def test_free_text_instruction_is_logged_verbatim(tmp_path):
    log = TripletLog(tmp_path / "log.jsonl", salt=b"s")
    ev = event()
    ev.instructions = [Instruction.free("something for a wedding")]
    ev.said = ["something for a wedding"]
    record = log.record(ev, "s", "m")
    assert record["instructions"] == ["something for a wedding"] and record["parsed"][0]["attribute"] is None
