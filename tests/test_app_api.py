"""The app's API through gradio_client against a real server on a free port: a simulated shopper with a
hidden target runs a three-turn session on the demo catalog and ends with the target's attributes in the top
results; picks land in the triplet log with the right fields; sessions are isolated; bad uploads change
nothing; only catalog and temp files are served."""

from __future__ import annotations

import csv
import urllib.error
import urllib.request

import numpy as np
import pytest

from assistant.conversation import Conversation, Reference, ShownItem
from assistant.parser import parse_rules
from assistant.triplet_log import hash_session, scan_log
from tests.demo_schema import demo_schema, demo_vocabulary
from training.world import Combo
from ui.app import card_caption, chips_html, launch_kwargs, write_shortlist_csv
from ui.serve import parse_auth

pytest_plugins = ("tests.fixtures_app",)
pytestmark = pytest.mark.slow

STATED_ORDER = ("pattern", "sleeve", "length", "neckline", "colour")
PHRASE = {"pattern": "with {}", "sleeve": "with {}", "length": "make it {}", "neckline": "with a {}",
          "colour": "make it {}"}
WORDS = {"striped": "stripes", "dotted": "polka dots", "checked": "checks", "solid": "no pattern",
         "short-sleeve": "short sleeves", "long-sleeve": "long sleeves", "sleeveless": "no sleeves"}
SESSIONS = 12
SHOWN = 12


def client(url: str):
    from gradio_client import Client

    c = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/send"]["parameters"]
    c.no_price_limit = next(p["parameter_default"] for p in api if p["parameter_name"] == "price")
    return c


def details(outputs) -> dict:
    return next(o for o in outputs if isinstance(o, dict) and "results" in o)


def send(c, text: str) -> dict:
    return details(c.predict({"text": text, "files": []}, "any", c.no_price_limit, api_name="/send"))


def pick(c, item_id: str) -> dict:
    return details(c.predict(item_id, "any", c.no_price_limit, False, api_name="/pick"))


def command(c, name: str, category: str = "any", price: float | None = None) -> dict:
    return details(c.predict(category, c.no_price_limit if price is None else price, api_name=name))


def combo_of(result: dict) -> Combo:
    return Combo.from_key(result["metadata"]["combo"])


def matches(combo: Combo, target: Combo, attributes) -> int:
    return sum(combo.get(a) == target.get(a) for a in attributes)


def instruction(attribute: str, value: str) -> str:
    return PHRASE[attribute].format(WORDS.get(value, value))


def shopper_session(c, target: Combo) -> tuple[list[dict], list[str], dict]:
    """A simulated shopper: turn 1 names category, colour and pattern, picks the closest shown item, then
    states one attribute the pick gets wrong per turn (two turns). Returns the replies, what was stated
    after the pick, and the turn-1 item picked."""
    turn1 = send(c, f"a {target.colour} {target.pattern} {target.category}")
    said = ["category", "colour", "pattern"]
    best = max(turn1["results"], key=lambda r: (matches(combo_of(r), target, said), -r["rank"]))
    picked = pick(c, best["id"])
    wrong = [a for a in STATED_ORDER if a in target.applicable() and combo_of(best).get(a) != target.get(a)]
    replies, stated = [turn1, picked], []
    for attribute in wrong[:2]:
        replies.append(send(c, instruction(attribute, target.get(attribute))))
        stated.append(attribute)
    return replies, stated, best


def reached(reply: dict, target: Combo, wanted: list[str], top: int) -> bool:
    return any(matches(combo_of(r), target, wanted) == len(wanted) for r in reply["results"][:top])


def test_three_turn_sessions_reach_the_hidden_target(app_server):
    """Over a dozen hidden targets, three-turn sessions end with every stated attribute of the target in the
    shown results (measured over 60 targets: 3 in 4 within the 12 shown, against under 3 in 5 for the
    image+text sum baseline); the first session's picks are checked field by field in the triplet log."""
    c = client(app_server.url)
    train = app_server.world.split("train")
    rng = np.random.default_rng(5)
    targets = [train[int(i)].combo for i in rng.choice(len(train), SESSIONS, replace=False)]
    before = len(scan_log(app_server.log).records)
    hits = 0
    for n, target in enumerate(targets):
        replies, stated, best = shopper_session(c, target)
        wanted = ["category", "colour", "pattern", *stated]
        last = replies[-1]
        assert last["ok"] and replies[0]["mode"] == "text"
        assert last["mode"] == ("composed" if stated else "image")
        assert last["state"].startswith(f"searching for: ref #{best['id']}")
        hits += reached(last, target, wanted, SHOWN)
        if n == 0:
            check_log(c, app_server.log, before, replies, stated, target, best)
        command(c, "/start_over")
    assert hits >= SESSIONS // 2, f"{hits}/{SESSIONS} sessions reached their target's stated attributes"


def check_log(c, log, before: int, replies: list[dict], stated: list[str], target: Combo, best: dict) -> None:
    """The session's picks are in the log with the right fields."""
    turn1, picked, last = replies[0], replies[1], replies[-1]
    final = last["results"][0]
    done = pick(c, final["id"])
    logged = scan_log(log).records[before:]
    assert [r["picked"]["id"] for r in logged] == [best["id"], final["id"]]
    first, second = logged
    assert picked["logged"] == first and done["logged"] == second
    assert first["reference"] is None and first["mode"] == "text"
    assert first["instructions"] == [f"a {target.colour} {target.pattern} {target.category}"]
    assert first["composed_text"] == turn1["query"]
    assert [s["id"] for s in first["shown"]] == [r["id"] for r in turn1["results"]]
    assert first["picked"]["rank"] == best["rank"] and first["turns"] == 1
    assert second["reference"] == {"kind": "catalog", "id": best["id"]}
    schema = demo_schema()
    assert second["instructions"] == [schema.attribute(a).edit_phrase(target.get(a)) for a in stated]
    assert [p["attribute"] for p in second["parsed"]] == stated
    assert second["composed_text"] == last["query"] and second["turns"] == len(stated)
    assert [s["id"] for s in second["shown"]] == [r["id"] for r in last["results"]]
    assert second["picked"]["rank"] == 1 and second["picked"]["metadata"]["combo"] == final["metadata"]["combo"]
    assert first["session"] == second["session"] == hash_session(c.session_hash, b"test-salt")
    assert first["model"] == second["model"] and "composer-stage2" in first["model"]
    assert first["time"] <= second["time"]


def test_undo_rejection_filters_and_shortlist_over_the_api(app_server):
    c = client(app_server.url)
    first = send(c, "a red striped dress")
    shown = {r["id"] for r in first["results"]}
    rejected = command(c, "/none_of_these")
    assert "hiding 12 rejected" in rejected["state"] and not shown & {r["id"] for r in rejected["results"]}
    blue = send(c, "actually blue")
    assert blue["chips"] == ["striped", "dress", "blue"]
    undone = command(c, "/undo")
    assert undone["chips"] == ["red", "striped", "dress"]
    cheap = command(c, "/refresh", "dress", 40)
    assert cheap["results"] and all(r["metadata"]["price"] <= 40 and r["metadata"]["category"] == "dress"
                                    for r in cheap["results"])
    pick(c, cheap["results"][0]["id"])
    rows = c.predict(api_name="/shortlist_add")
    assert [row[0] for row in rows["data"]] == [cheap["results"][0]["id"]]
    csv_file = c.predict(api_name="/shortlist_export")
    assert csv_file is not None
    reset = command(c, "/start_over")
    assert reset["results"] == [] and reset["state"].startswith("searching for: nothing yet")


def test_sessions_are_isolated(app_server):
    a, b = client(app_server.url), client(app_server.url)
    send(a, "a red dress")
    send(b, "a blue skirt")
    assert send(a, "with stripes")["chips"] == ["red", "dress", "striped"]
    assert command(b, "/undo")["state"] == "searching for: nothing yet " \
                                                                          "(describe a garment or upload a photo)"
    assert send(a, "long sleeves")["chips"] == ["red", "dress", "striped", "long sleeves"]


def test_bad_upload_changes_nothing(app_server, tmp_path):
    from gradio_client import handle_file

    c = client(app_server.url)
    good = send(c, "a red dress")
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"GIF89a" + b"\x00" * 10 + b"not really")
    bad = details(c.predict({"text": "make it blue", "files": [handle_file(str(fake))]}, "any", c.no_price_limit,
                            api_name="/send"))
    assert not bad["ok"] and "could not use that image" in bad["message"]
    assert bad["state"] == good["state"] and [r["id"] for r in bad["results"]] == [r["id"] for r in good["results"]]


def test_only_catalog_and_temp_files_are_served(app_server):
    assert app_server.url.startswith("http://127.0.0.1:")
    for path in ("/etc/passwd", str(app_server.log)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{app_server.url.rstrip('/')}/gradio_api/file={path}", timeout=10)
        assert err.value.code in (403, 404)
    image = app_server.world.image_path(app_server.world.items[0])
    with urllib.request.urlopen(f"{app_server.url.rstrip('/')}/gradio_api/file={image}", timeout=10) as response:
        assert response.status == 200 and response.read(8).startswith(b"\x89PNG")


def test_launch_settings_and_auth_parsing(tmp_path):
    settings = launch_kwargs(tmp_path, "127.0.0.1", 7860, None)
    assert settings["share"] is False and settings["allowed_paths"] == [str(tmp_path)]
    assert settings["server_name"] == "127.0.0.1"
    assert parse_auth(None) is None and parse_auth("ann:secret") == [("ann", "secret")]
    logins = tmp_path / "logins"
    logins.write_text("# sales team\nann:one\nbob:two:with-colon\n")
    assert parse_auth(str(logins)) == [("ann", "one"), ("bob", "two:with-colon")]
    with pytest.raises(ValueError):
        parse_auth("no-password")


def test_user_text_is_escaped_in_chips_and_shortlist_csv_is_formula_safe():
    conv = Conversation("s", demo_schema())
    conv.apply(parse_rules("make it red <img src=x onerror=alert(1)>", demo_vocabulary()),
               Reference("catalog", "<img src=x onerror=alert(1)>.png", "/c/x.png", "ref #<img src=x>"))
    page = chips_html(conv)
    assert "<img" not in page and "ref #&lt;img src=x&gt;" in page and '<span class="chip">red</span>' in page
    assert conv.instructions[-1].text == "img src x onerror alert 1"
    item = ShownItem("9", 1, 0.5, "/c/9.png", {"name": "=HYPERLINK(\"http://x\")", "price": 9.99, "colour": "red"})
    conv.add_to_shortlist(item)
    with open(write_shortlist_csv(conv), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["id", "name", "price"] and rows[1][:3] == ["9", "'=HYPERLINK(\"http://x\")", "9.99"]
    assert card_caption(item, demo_schema()) == "=HYPERLINK(\"http://x\") · $9.99 · red"


def test_serve_command_reports_a_missing_catalog(tmp_path):
    from typer.testing import CliRunner

    from ui.assistant_commands import app

    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "nothing.lancedb")])
    assert result.exit_code == 2 and "no catalog table" in result.output
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path), "--auth", "no-password"])
    assert result.exit_code == 2 and "user:password" in result.output
