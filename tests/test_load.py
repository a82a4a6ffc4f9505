"""Many sessions at once against the real app (the small version of `python -m benchmarks.load`, which runs the
demo world with its composer): no errors, no state crossing sessions, every acknowledged pick logged exactly
once; the leak check catches a shared session; a full queue answers "busy, try again" at once and every
accepted turn still finishes. The server is the real Gradio app on the 200-image store world with its saved
random backbone, so the test needs no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import burst, call, make_sessions, run_load
from tests.server_harness import connect, free_port
from ui.serve import load_encoder, make_assistant, serve

pytestmark = pytest.mark.slow

SESSIONS = 6
TURNS = 4


@pytest.fixture(scope="module")
def light_db(world, backbone, tmp_path_factory) -> Path:
    from retrieval.ingest import ingest

    db = tmp_path_factory.mktemp("load-catalog") / "db"
    ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    return db


def start(db: Path, log: Path, **queue):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIRCHAT_LOG_SALT", "load-salt")
        store, encoder = load_encoder(db, "catalog", None, None, None, "cpu")
        assistant = make_assistant(store, encoder, log)
    return serve(assistant, port=free_port(), block=False, quiet=True, **queue)


@pytest.fixture(scope="module")
def load_server(light_db, tmp_path_factory):
    """The app as ``circhat serve`` builds it (``ui.serve.serve``), with its own triplet log."""
    served = start(light_db, tmp_path_factory.mktemp("load-log") / "triplets.jsonl")
    yield served
    served.close()


def test_concurrent_sessions_are_isolated_and_every_pick_is_logged_once(load_server):
    salt = load_server.assistant.log.salt
    result = run_load(load_server.url, SESSIONS, TURNS, salt, load_server.assistant.schema,
                      load_server.assistant.log.path, seed=1)
    assert result["errors"] == 0, result["error_examples"]
    assert result["leaks"] == 0, result["leak_examples"]
    assert result["turns_done"] == SESSIONS * TURNS and result["distinct_session_hashes"] == SESSIONS
    assert set(result["latency_by_kind"]) == {"text", "pick", "undo"}
    log = result["log"]
    assert log["acknowledged"] == SESSIONS and log["found_once"] == SESSIONS
    assert (log["missing"], log["duplicated"], log["foreign"], log["bad_lines"]) == (0, 0, 0, 0)
    print(f"\n{SESSIONS}x{TURNS} load: {result['latency']}, {result['turns_per_second']} turns/s")


def test_the_leak_check_catches_two_shoppers_on_one_session(load_server):
    """Two simulated shoppers sharing one Gradio session (the failure a leak would be): the second one's
    very first turn is flagged, while a shopper on its own session passes every check."""
    salt = load_server.assistant.log.salt
    first, second, alone = make_sessions(3, salt, seed=2, schema=load_server.assistant.schema)
    shared = connect(load_server.url)
    first.run(shared, 2)
    second.run(shared, 1)
    alone.run(connect(load_server.url), 2)
    assert [t.leak for t in first.turns] == [None, None] and not any(t.error for t in first.turns)
    assert second.turns[0].leak is not None and "expected" in second.turns[0].leak
    assert [t.leak for t in alone.turns] == [None, None]
    kind, argument = alone.action(2)
    outputs = call(connect(load_server.url), kind, argument, alone.category)
    alone.expect(kind, argument)
    assert alone.check(kind, argument, outputs) is not None


@pytest.fixture
def tiny_queue_server(light_db, tmp_path):
    """The app with one worker and room for two waiting turns, so a burst overflows the queue."""
    served = start(light_db, tmp_path / "triplets.jsonl", concurrency=1, max_size=2)
    yield served
    served.close()


def test_a_full_queue_answers_busy_at_once_and_accepted_turns_finish(tiny_queue_server):
    outcome = burst(tiny_queue_server.url, 40, timeout=120)
    assert outcome["hung"] == 0 and outcome["other_errors"] == 0, outcome["errors"]
    assert outcome["ok"] + outcome["busy"] == 40 and outcome["ok"] >= 3 and outcome["busy"] >= 1
    assert outcome["busy_messages"] == ["Queue is full! Please try again."]
    assert outcome["first_busy_seconds"] <= outcome["last_ok_seconds"]
    print(f"\nburst of 40 against max_size=2: {outcome}")
