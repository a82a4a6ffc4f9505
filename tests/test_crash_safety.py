"""SIGKILL at random moments, for real: a `circhat serve` subprocess killed during a storm of picks from client
threads (every pick a client saw acknowledged is in the log after restart, once, and the log parses), and a
`circhat ingest` subprocess killed five times (the table opens after every kill, a rerun equals a clean ingest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from assistant.triplet_log import scan_log
from retrieval.ingest import ingest
from retrieval.store import CatalogStore
from tests.server_harness import ROOT, ServerProcess, connect, reply_details
from tests.test_ingest import assert_same_rows

pytestmark = pytest.mark.slow

SERVER_KILLS = 3
STORM_THREADS = 4
INGEST_KILLS = 5
SALT = "crash-salt"


@pytest.fixture(scope="module")
def light_catalog(world, backbone, tmp_path_factory) -> Path:
    """The 200-image store world ingested with the saved random backbone (loads in a subprocess in seconds)."""
    db = tmp_path_factory.mktemp("crash-catalog") / "db"
    ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    return db


def timed_call(client, api_name: str, *args, timeout: float = 30.0) -> dict:
    """One API call that cannot hang the test when the server dies under it."""
    return reply_details(client.submit(*args, api_name=api_name).result(timeout=timeout))


def pick_storm(url: str, worker: int, seed: int, stop: threading.Event, acked: list[dict]) -> None:
    """A shopper picking as fast as it can: search once, then pick one of the shown items, again and again."""
    rng = np.random.default_rng([seed, worker])
    category = ("dress", "t-shirt", "skirt", "trousers")[worker % 4]
    client = None
    try:
        client = connect(url)
        price = client.no_price_limit
        reply = timed_call(client, "/send", {"text": f"a {category}", "files": []}, category, price)
        while not stop.is_set() and reply["results"]:
            item = reply["results"][int(rng.integers(0, min(4, len(reply["results"]))))]
            reply = timed_call(client, "/pick", item["id"], category, price, False)
            if reply["ok"] and reply.get("logged"):
                acked.append(reply["logged"])
    except Exception:  # the server was killed under this client: its session ends here
        return
    finally:
        if client is not None:
            client.close()


def storm_round(server: ServerProcess, seed: int, acked: list[dict], kill_after: int, delay: float) -> int:
    """Run the storm and SIGKILL the server ``delay`` seconds after ``kill_after`` picks were acknowledged;
    returns how many picks this round acknowledged."""
    stop = threading.Event()
    mine: list[dict] = []
    threads = [threading.Thread(target=pick_storm, args=(server.url, w, seed, stop, mine), daemon=True)
               for w in range(STORM_THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    while len(mine) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a client hung after the server died"
    acked.extend(mine)
    return len(mine)


def test_server_killed_during_pick_storm_loses_no_acknowledged_pick(light_catalog, tmp_path):
    """Each round restarts the server on the same log (the crashed one's last append possibly cut short)."""
    rng = np.random.default_rng(17)
    log = tmp_path / "triplets" / "triplets.jsonl"
    acked: list[dict] = []
    per_round = []
    for round_ in range(SERVER_KILLS):
        server = ServerProcess.start(light_catalog, log=log, env={"CIRCHAT_LOG_SALT": SALT})
        try:
            per_round.append(storm_round(server, round_, acked, int(rng.integers(4, 16)),
                                         float(rng.uniform(0, 0.25))))
        finally:
            server.kill()
            server.stop()
        assert server.process.returncode == -signal.SIGKILL
        assert scan_log(log).bad_lines == 0
    assert all(n > 0 for n in per_round), per_round
    scan = scan_log(log)
    counts = [sum(r == a for r in scan.records) for a in acked]
    assert counts == [1] * len(acked), f"{counts.count(0)} acknowledged picks missing, {counts.count(2)} twice"
    assert len(scan.records) >= len(acked)
    print(f"\nserver: {SERVER_KILLS} SIGKILLs, acknowledged picks per round {per_round}, {len(acked)} acknowledged, "
          f"{len(scan.records)} in the log (the rest were written but their reply never reached a client)")


def table_rows(db: Path) -> pa.Table:
    return lancedb.connect(str(db)).open_table("catalog").to_arrow().sort_by("id")


def count_rows(db: Path) -> int:
    try:
        return lancedb.connect(str(db)).open_table("catalog").count_rows()
    except Exception:  # the table is not there yet
        return 0


def test_ingest_killed_five_times_then_rerun_equals_clean_ingest(world, backbone, tmp_path):
    clean = tmp_path / "clean"
    ingest(world.root, backbone, clean, metadata=world.catalog_csv, progress=False)
    db = tmp_path / "db"
    command = [sys.executable, "-m", "ui.cli", "ingest", str(world.root), "--metadata", str(world.catalog_csv),
               "--model", backbone.spec.model, "--db", str(db), "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    rng = np.random.default_rng(23)
    seen = []
    for _ in range(INGEST_KILLS):
        target = count_rows(db) + int(rng.integers(8, 36))
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while process.poll() is None and count_rows(db) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.05)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        process.stderr.close()
        store = CatalogStore.open(db)
        rows = table_rows(db)
        ids = rows["id"].to_pylist()
        assert len(store) == rows.num_rows == len(set(ids)) and rows.num_rows < len(world.items)
        assert all(len(h) == 64 for h in rows["content_hash"].to_pylist())
        if rows.num_rows:
            first = np.asarray(rows["embedding"][0].as_py(), dtype=np.float32)
            assert store.search(first, k=1, exact=True)[0].id == ids[0]
        seen.append(rows.num_rows)
    assert seen == sorted(seen) and seen[-1] > 0
    report = ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    assert report.added == len(world.items) - seen[-1] and report.unchanged == seen[-1]
    assert_same_rows(table_rows(clean), table_rows(db))
    print(f"\ningest: {INGEST_KILLS} SIGKILLs at {seen} rows of {len(world.items)}; rerun added {report.added}")
