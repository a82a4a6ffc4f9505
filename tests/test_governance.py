"""What circhat keeps about shoppers, on the real assistant, catalog and server: an uploaded photo is kept
only with consent and never with its EXIF/GPS metadata; raw session ids never reach the disk; the turn log
holds no user text; prune and delete-session (Python, CLI and the "Delete my data" button) remove exactly
what they should; and rewrites under concurrent appends from several processes lose no acknowledged record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import ExifTags, Image, PngImagePlugin
from typer.testing import CliRunner

from assistant.log_retention import delete_session, delete_session_hash, prune
from assistant.triplet_log import TripletLog, hash_session, json_line, scan_log
from assistant.turn_log import TurnLog, turn_log_path
from assistant.turns import Assistant
from assistant.uploads import UploadStore
from retrieval.durable_files import append_line
from tests.fixtures_app import free_port
from ui.assistant_commands import app

ROOT = Path(__file__).resolve().parents[1]
SALT = b"governance-salt"
RAW_ID = "raw-session-id-5bd1c0ffee"
CAMERA = "SpyCam Tracker 3000"
PLACE = "52.5200 N 13.4050 E, Alexanderplatz"
TURN_FIELDS = {"schema", "session", "time", "model", "turn", "results", "action", "mode"}


@pytest.fixture(scope="module")
def searcher(world, backbone, tmp_path_factory):
    """The real LanceDB catalog of the 200-image store-test world with its random-weight backbone."""
    from assistant.searcher import CatalogSearcher
    from retrieval.ingest import ingest
    from retrieval.query_encoder import QueryEncoder
    from retrieval.store import CatalogStore

    db = tmp_path_factory.mktemp("governance-catalog") / "catalog.lancedb"
    ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    return CatalogSearcher(CatalogStore.open(db, identity=backbone.identity), QueryEncoder(backbone, None))


def make_assistant(searcher, folder: Path) -> Assistant:
    return Assistant(searcher, log=TripletLog(folder / "log" / "triplets.jsonl", salt=SALT),
                     uploads=UploadStore(folder / "server-temp"))


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA
    exif[ExifTags.Base.ImageDescription] = PLACE
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5),
                                  ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (13.0, 24.0, 18.0)}
    return exif


def photo_with_metadata(world, folder: Path, fmt: str) -> Path:
    """A shopper's photo of a catalog garment, carrying camera EXIF, GPS and (PNG) a text chunk."""
    image = Image.open(world.image_path(world.items[0])).convert("RGB").resize((96, 96))
    path = folder / f"phone-photo.{fmt.lower()}"
    if fmt == "JPEG":
        image.save(path, "JPEG", exif=exif_with_gps().tobytes(), quality=92)
    else:
        text = PngImagePlugin.PngInfo()
        text.add_text("Location", PLACE)
        image.save(path, "PNG", exif=exif_with_gps().tobytes(), pnginfo=text)
    with Image.open(path) as check:
        assert dict(check.getexif().get_ifd(ExifTags.IFD.GPSInfo)), "the test photo must carry GPS"
    return path


def assert_no_metadata(path: Path) -> None:
    data = path.read_bytes()
    for marker in (CAMERA.encode(), PLACE.encode(), b"Exif", b"eXIf", b"tEXt", b"iTXt", b"zTXt"):
        assert marker not in data, f"{marker!r} found in {path}"
    with Image.open(path) as image:
        image.load()
        assert len(image.getexif()) == 0 and not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert not {k for k in image.info if k not in ("dpi",)}, image.info


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_upload_is_kept_only_with_consent_and_never_with_exif_or_gps(searcher, world, tmp_path, fmt):
    assistant = make_assistant(searcher, tmp_path)
    log = assistant.log
    photo = photo_with_metadata(world, tmp_path, fmt)
    conv = assistant.start(RAW_ID)
    first = assistant.say(conv, "", str(photo))
    assert first.ok and first.shown and conv.reference.kind == "upload"
    sha = conv.reference.key
    assert_no_metadata(Path(conv.reference.path))

    declined = assistant.pick(conv, first.shown[0].id, consent=False)
    assert declined.logged["reference"] == {"kind": "upload", "sha256": sha, "consent": False, "stored": None}
    assert not log.uploads_dir.exists()

    again = assistant.say(conv, "", str(photo))
    kept = assistant.pick(conv, again.shown[0].id, consent=True)
    reference = kept.logged["reference"]
    assert reference["sha256"] == sha and reference["consent"] is True and reference["stored"] == f"uploads/{sha}.png"
    stored = log.path.parent / reference["stored"]
    assert [p.name for p in log.uploads_dir.iterdir()] == [stored.name]
    assert_no_metadata(stored)
    with Image.open(stored) as copy, Image.open(photo) as original:
        assert copy.size == original.size and copy.mode == "RGB"


def all_bytes_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_raw_session_id_and_user_text_stay_off_the_turn_log(searcher, world, tmp_path):
    assistant = make_assistant(searcher, tmp_path)
    conv = assistant.start(RAW_ID)
    secret = "a red dress for my divorce party"
    assert assistant.say(conv, secret).ok
    picked = assistant.say(conv, "", str(photo_with_metadata(world, tmp_path, "JPEG")))
    assistant.pick(conv, picked.shown[2].id, consent=True)
    assistant.command(conv, "none_of_these")
    assistant.refresh(conv)
    files = all_bytes_under(tmp_path / "log")
    assert {p.name for p in files} >= {"triplets.jsonl", "turns.jsonl"}
    for path, data in files.items():
        assert RAW_ID.encode() not in data, f"raw session id stored in {path}"
    hashed = hash_session(RAW_ID, SALT)
    turns = scan_log(assistant.turn_log.path).records
    assert [t["action"] for t in turns] == ["message", "message", "pick", "none_of_these", "refresh"]
    assert [t["turn"] for t in turns] == [1, 2, 0, 1, 1] and all(t["results"] == 12 for t in turns)
    assert all(set(t) == TURN_FIELDS and t["session"] == hashed for t in turns)
    assert all(t["model"] == searcher.model_version for t in turns)
    turn_text = assistant.turn_log.path.read_text()
    assert "divorce" not in turn_text and "dress" not in turn_text
    assert scan_log(assistant.log.path).records[0]["session"] == hashed


def iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seeded_logs(folder: Path, now: datetime) -> tuple[TripletLog, TurnLog]:
    """Picks and turns of sessions a (old), b (recent) and c (recent), with upload copies: one only an old pick
    names, one a recent pick names, one no pick names, stale temp files, plus unreadable and undated lines."""
    log = TripletLog(folder / "triplets.jsonl", salt=SALT)
    turns = TurnLog(turn_log_path(log.path), salt=SALT)
    old, recent = iso(now - timedelta(days=40)), iso(now - timedelta(days=2))
    copies = {name: log.store_upload(name * 64, f"png-{name}".encode()) for name in "abc"}
    rows = [("a", old, copies["a"]), ("a", old, None), ("b", recent, copies["b"]), ("c", recent, copies["b"])]
    for session, when, stored in rows:
        reference = {"kind": "upload", "sha256": "x" * 64, "consent": stored is not None, "stored": stored}
        log.append({"session": hash_session(session, SALT), "time": when, "reference": reference,
                    "instructions": ["make it blue"], "picked": {"id": "1", "rank": 1}, "turns": 1, "model": "m"})
        append_line(turns.path, json_line({"session": hash_session(session, SALT), "time": when, "model": "m",
                                           "turn": 1, "results": 12}), durable=False)
    log.append({"session": hash_session("d", SALT), "model": "m"})
    with open(log.path, "a") as f:
        f.write('{"session": "' + hash_session("a", SALT) + '", "time": "torn\n')
        f.write("garbage line\n")
    for stale in (log.uploads_dir / ".stale.png.1234.tmp", log.path.with_name(".triplets.jsonl.dead.tmp")):
        stale.write_bytes(b"half")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
    return log, turns


def test_prune_removes_old_records_and_copies_no_pick_names(tmp_path):
    now = datetime.now(UTC)
    log, turns = seeded_logs(tmp_path, now)
    before = (log.path.read_bytes(), turns.path.read_bytes(), sorted(os.listdir(log.uploads_dir)))
    dry = prune(log.path, 30, dry_run=True, now=now)
    assert (dry.picks.removed, dry.turns.removed) == (2, 2) and dry.dry_run
    assert (log.path.read_bytes(), turns.path.read_bytes(), sorted(os.listdir(log.uploads_dir))) == before

    done = prune(log.path, 30, now=now)
    assert (done.picks.removed, done.picks.kept, done.picks.unreadable_kept, done.picks.undated_kept) == (2, 5, 2, 1)
    assert (done.turns.removed, done.turns.kept) == (2, 2)
    assert sorted(done.uploads_removed) == ["uploads/.stale.png.1234.tmp", f"uploads/{'a' * 64}.png",
                                            f"uploads/{'c' * 64}.png"]
    assert sorted(os.listdir(log.uploads_dir)) == [f"{'b' * 64}.png"]
    sessions = [r["session"] for r in scan_log(log.path).records]
    assert sessions == [hash_session(s, SALT) for s in "bcd"]
    assert scan_log(log.path).bad_lines == 2
    assert oct(log.path.stat().st_mode & 0o777) == "0o640"
    assert not [p for p in log.path.parent.iterdir() if p.name.endswith(".tmp")]
    again = prune(log.path, 30, now=now)
    assert again.picks.removed == again.turns.removed == 0 and again.uploads_removed == []


def test_delete_session_removes_only_that_sessions_records_and_copies(tmp_path):
    now = datetime.now(UTC)
    log, turns = seeded_logs(tmp_path, now)
    done = delete_session(log.path, "a", SALT)
    assert (done.picks.removed, done.turns.removed) == (3, 2)
    assert f"uploads/{'a' * 64}.png" in done.uploads_removed
    assert (log.uploads_dir / f"{'b' * 64}.png").exists()
    assert hash_session("a", SALT) not in log.path.read_text() + turns.path.read_text()
    assert [r["session"] for r in scan_log(log.path).records] == [hash_session(s, SALT) for s in "bcd"]
    shared = delete_session_hash(log.path, hash_session("b", SALT))
    assert shared.picks.removed == 1 and (log.uploads_dir / f"{'b' * 64}.png").exists()
    assert delete_session_hash(log.path, hash_session("c", SALT)).uploads_removed == [f"uploads/{'b' * 64}.png"]
    with pytest.raises(ValueError):
        delete_session_hash(log.path, "../../not-a-hash")


def test_retention_commands(tmp_path, monkeypatch):
    now = datetime.now(UTC)
    log, _ = seeded_logs(tmp_path, now)
    runner = CliRunner()
    result = runner.invoke(app, ["triplets", "prune", "--older-than", "30", "--log", str(log.path), "--dry-run"])
    assert result.exit_code == 0 and "would remove 2 picks" in result.output, result.output
    result = runner.invoke(app, ["triplets", "prune", "--older-than", "-1", "--log", str(log.path)])
    assert result.exit_code == 2 and "days >= 0" in result.output
    result = runner.invoke(app, ["triplets", "prune", "--older-than", "30", "--log", str(log.path), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["picks"]["removed"] == 2
    monkeypatch.setenv("CIRCHAT_LOG_SALT", SALT.decode())
    result = runner.invoke(app, ["triplets", "delete-session", "b", "--log", str(log.path)])
    assert result.exit_code == 0 and "removed 1 picks" in result.output and "1 turn records" in result.output
    result = runner.invoke(app, ["triplets", "delete-session", hash_session("c", SALT), "--hashed",
                                 "--log", str(log.path)])
    assert result.exit_code == 0 and "removed 1 picks" in result.output
    result = runner.invoke(app, ["triplets", "delete-session", "nobody", "--log", str(log.path)])
    assert result.exit_code == 0 and "no records of that session" in result.output
    result = runner.invoke(app, ["triplets", "delete-session", "NOT HEX", "--hashed", "--log", str(log.path)])
    assert result.exit_code == 2
    assert [r["session"] for r in scan_log(log.path).records] == [hash_session("d", SALT)]
    assert sorted(os.listdir(log.uploads_dir)) == []


WRITER = textwrap.dedent("""
    import sys
    from assistant.triplet_log import TripletLog, hash_session, json_line, utc_now
    from retrieval.durable_files import append_line
    path, turns, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = TripletLog(path, salt=b"s")
    session = hash_session(name, b"s")
    for seq in range(count):
        record = {"session": session, "time": utc_now(), "writer": name, "seq": seq}
        log.append(record)
        append_line(turns, json_line(record), durable=False)
        print(seq, flush=True)
""")
WRITERS = ("w0", "w1", "w2", "victim")
PER_WRITER = 150


def test_concurrent_appends_survive_repeated_prunes_and_deletes(tmp_path):
    """Four processes append to both logs while this one keeps pruning (always something to drop, so every
    prune rewrites) and deleting the victim's session: every acknowledged append of the others survives,
    once and in order, and no line is torn."""
    log = tmp_path / "triplets.jsonl"
    turns = turn_log_path(log)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {name: subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(turns), name, str(PER_WRITER)],
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) for name in WRITERS}
    ancient = {"session": hash_session("old", b"s"), "time": "2001-01-01T00:00:00.000Z", "writer": "old"}
    rewrites = deletes = rounds = 0
    while any(p.poll() is None for p in procs.values()) or rounds < 5:
        rounds += 1
        TripletLog(log, salt=b"s").append(ancient)
        append_line(turns, json_line(ancient), durable=False)
        done = prune(log, 1.0)
        rewrites += done.picks.removed > 0 and done.turns.removed > 0
        if rounds % 3 == 0:
            deletes += delete_session(log, "victim", b"s").picks.removed > 0
    acked = {name: [int(line) for line in proc.communicate()[0].split()] for name, proc in procs.items()}
    assert all(p.returncode == 0 for p in procs.values())
    delete_session(log, "victim", b"s")
    assert rewrites >= 5 and deletes >= 1, (rewrites, deletes)
    for path in (log, turns):
        scan = scan_log(path)
        assert scan.bad_lines == 0
        assert not [r for r in scan.records if r["writer"] in ("old", "victim")]
        for name in WRITERS[:3]:
            assert acked[name] == list(range(PER_WRITER))
            assert [r["seq"] for r in scan.records if r["writer"] == name] == acked[name], (path.name, name)


def details(outputs) -> dict:
    return next(o for o in outputs if isinstance(o, dict) and "results" in o)


@pytest.fixture
def served(searcher, tmp_path):
    from ui.serve import serve

    running = serve(make_assistant(searcher, tmp_path), port=free_port(), block=False, quiet=True)
    yield running
    running.close()


def test_delete_my_data_button_and_stats_tab_over_the_api(served, world, tmp_path):
    """Two shoppers over gradio_client (one starts from a photo with EXIF + GPS, whose original Gradio must not
    keep); the Stats endpoint counts both; "Delete my data" removes exactly the first one's records."""
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file

    log = served.assistant.log
    clients = [Client(served.url, verbose=False, analytics_enabled=False, download_files=False) for _ in range(2)]
    api = clients[0].view_api(return_format="dict", print_info=False)["named_endpoints"]
    price = next(p["parameter_default"] for p in api["/send"]["parameters"] if p["parameter_name"] == "price")
    assert "/delete_my_data" in api and "/stats" in api
    photo = handle_file(str(photo_with_metadata(world, tmp_path, "JPEG")))
    for n, c in enumerate(clients):
        message = {"text": "", "files": [photo]} if n == 0 else {"text": "a red dress", "files": []}
        reply = details(c.predict(message, "any", price, api_name="/send"))
        assert reply["ok"] and reply["state"].startswith("searching for: your photo" if n == 0 else "searching")
        for _ in range(2 - n):
            reply = details(c.predict(reply["results"][0]["id"], "any", price, False, api_name="/pick"))
            assert reply["ok"] and reply["logged"]
    mine, other = (hash_session(c.session_hash, SALT) for c in clients)
    assert [r["session"] for r in scan_log(log.path).records] == [mine, mine, other]
    assert scan_log(log.path).records[0]["reference"]["stored"] is None
    for path in Path(get_upload_folder()).rglob("*"):
        assert not path.is_file() or CAMERA.encode() not in path.read_bytes(), f"original upload kept: {path}"

    summary = clients[1].predict(api_name="/stats")[0]
    assert "sessions: 2 (2 with logged search turns); search turns: 5" in summary and "pick rate: 100.0%" in summary

    status = clients[0].predict(api_name="/delete_my_data")
    assert "Deleted** 2 saved pick(s), 3 search record(s)" in status
    assert [r["session"] for r in scan_log(log.path).records] == [other]
    assert {r["session"] for r in scan_log(turn_log_path(log.path)).records} == {other}
    for path, data in all_bytes_under(log.path.parent).items():
        for c in clients:
            assert c.session_hash.encode() not in data, f"raw session id in {path}"
    summary = clients[1].predict(api_name="/stats")[0]
    assert "sessions: 1 (1 with logged search turns); search turns: 2" in summary


@pytest.mark.browser
def test_stats_tab_and_delete_button_in_the_browser(served, tmp_path):
    """In Debian Chromium: a pick shows up in the Stats tab's figures and plots; "Delete my data" removes it."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    timeout = 60_000
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1050})
        page.goto(served.url)
        page.locator("#msg textarea").fill("a red dress")
        page.locator("#msg textarea").press("Enter")
        expect(page.locator("#results .thumbnail-item")).to_have_count(12, timeout=timeout)
        page.locator("#results .thumbnail-item").nth(0).click()
        expect(page.locator("#status")).to_contain_text("1 pick saved", timeout=timeout)

        page.get_by_role("tab", name="Stats").click()
        summary = page.locator("#stats-summary")
        expect(summary).to_contain_text("pick rate: 100.0% (1 of 1 sessions picked something)", timeout=timeout)
        for plot in ("#stats-daily-plot", "#stats-models-plot", "#stats-ranks-plot"):
            expect(page.locator(f"{plot} img")).to_be_visible(timeout=timeout)
        expect(page.locator("#stats-models")).to_contain_text("no-composer")
        page.screenshot(path=tmp_path / "stats-tab.png", full_page=True)

        page.get_by_role("tab", name="Assistant").click()
        page.locator("#delete-my-data").click()
        expect(page.locator("#status")).to_contain_text("Deleted 1 saved pick(s), 2 search record(s)", timeout=timeout)
        assert scan_log(served.assistant.log.path).records == []
        page.get_by_role("tab", name="Stats").click()
        page.locator("#stats-refresh").click()
        expect(summary).to_contain_text("Nothing logged yet", timeout=timeout)
        browser.close()
