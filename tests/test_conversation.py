"""Conversation state rules (replacement, undo, reset, rejection, text-only start, picks) and the turn logic
around them: bad input changes nothing, a pick is confirmed only once it is logged."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pytest
from PIL import Image

from assistant.conversation import Conversation, Reference, ShownItem
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, parse_rules
from assistant.searcher import Results
from assistant.triplet_log import TripletLog
from assistant.turns import Assistant, Filters
from assistant.uploads import UploadStore
from retrieval.catalog_schema import CatalogSchema
from retrieval.store import BadFilter, Hit
from tests.demo_schema import demo_schema, demo_vocabulary


def say(conv: Conversation, text: str) -> bool:
    return conv.apply(parse_rules(text, demo_vocabulary(), conv.known()))


def item(item_id: str, rank: int = 1, **metadata: str) -> ShownItem:
    meta = {"category": "dress", "colour": "red", "pattern": "solid", "sleeve": "short-sleeve",
            "length": "knee-length", "neckline": "v-neck", "name": f"Item #{item_id}"} | metadata
    return ShownItem(item_id, rank, 0.9 - rank / 100, f"/catalog/{item_id}.png", meta)


def test_text_only_first_turn_composes_a_caption_without_reference():
    conv = Conversation("s", demo_schema())
    assert not conv.searchable
    say(conv, "a red striped dress")
    assert conv.reference is None
    assert conv.query() == (None, ["a red striped dress"])
    assert conv.describe() == "searching for: red + striped + dress"


def test_later_instruction_on_the_same_attribute_replaces_the_earlier():
    conv = Conversation("s", demo_schema())
    conv.apply(parse_rules("with stripes", demo_vocabulary()), Reference.upload("ab" * 32, "/tmp/p.png"))
    say(conv, "make it blue")
    say(conv, "with short sleeves")
    say(conv, "actually red")
    assert [i.value for i in conv.instructions] == ["striped", "short-sleeve", "red"]
    assert conv.query() == ("/tmp/p.png", ["with stripes", "with short sleeves", "make it red"])
    assert conv.describe() == "searching for: your photo + striped + short sleeves + red"


def test_text_only_turns_replace_too():
    conv = Conversation("s", demo_schema())
    say(conv, "a red striped dress")
    say(conv, "no, blue")
    say(conv, "make it plain")
    assert conv.query() == (None, ["a blue dress"])


def test_free_text_is_kept_in_order_and_not_duplicated():
    conv = Conversation("s", demo_schema())
    say(conv, "a dress with a bow")
    say(conv, "for a wedding")
    say(conv, "with a bow")
    assert [i.text for i in conv.instructions] == ["make it a dress", "with a bow", "for a wedding"]
    assert conv.query() == (None, ["a dress", "with a bow", "for a wedding"])


def test_changing_category_drops_attributes_that_no_longer_apply():
    conv = Conversation("s", demo_schema())
    say(conv, "a red t-shirt with long sleeves and a v-neck")
    say(conv, "make it trousers")
    assert [(i.attribute, i.value) for i in conv.instructions] == [("colour", "red"), ("category", "trousers")]


def test_undo_steps_back_one_message_at_a_time():
    conv = Conversation("s", demo_schema())
    say(conv, "a red dress")
    say(conv, "make it blue and add stripes")
    say(conv, "long sleeves")
    assert conv.undo() is True
    assert [i.value for i in conv.instructions] == ["dress", "blue", "striped"]
    conv.apply(parse_rules("undo", demo_vocabulary()))
    assert [i.value for i in conv.instructions] == ["red", "dress"]
    assert conv.undo() and not conv.searchable
    assert conv.undo() is False


def test_start_over_clears_everything_and_is_undoable():
    conv = Conversation("s", demo_schema())
    say(conv, "a red dress")
    conv.record_results("q", "text", None, [item("1"), item("2", 2)])
    conv.reject_shown()
    conv.apply(parse_rules("start over", demo_vocabulary()))
    assert not conv.searchable and conv.rejected == frozenset() and conv.turns == 0
    assert conv.describe().startswith("searching for: nothing yet")
    conv.undo()
    assert conv.rejected == {"1", "2"} and [i.value for i in conv.instructions] == ["red", "dress"]


def test_none_of_these_excludes_every_shown_item_until_start_over():
    conv = Conversation("s", demo_schema())
    say(conv, "a red dress")
    conv.record_results("q", "text", None, [item("1"), item("2", 2)])
    conv.apply(parse_rules("none of these", demo_vocabulary()))
    conv.record_results("q", "text", None, [item("3"), item("4", 2)])
    conv.apply(parse_rules("none of these, make it blue", demo_vocabulary()))
    assert conv.rejected == {"1", "2", "3", "4"}
    assert [i.value for i in conv.instructions] == ["dress", "blue"]
    assert "hiding 4 rejected" in conv.describe()


def test_pick_becomes_the_reference_and_instructions_restart():
    conv = Conversation("s", demo_schema())
    conv.apply(parse_rules("with stripes", demo_vocabulary()), Reference.upload("cd" * 32, "/tmp/p.png"))
    say(conv, "make it blue")
    chosen = item("7", 3, colour="blue", pattern="striped", length="long")
    conv.record_results("a photo of * , with stripes , make it blue", "composed", "price <= 50.0",
                        [item("5"), item("6", 2), chosen])
    event = conv.pick(chosen)
    assert event.reference.kind == "upload" and [i.text for i in event.instructions] == ["with stripes",
                                                                                         "make it blue"]
    assert event.said == ["with stripes", "make it blue"]
    assert event.item.rank == 3 and [s.id for s in event.shown] == ["5", "6", "7"] and event.turns == 2
    assert event.where == "price <= 50.0"
    assert conv.reference.key == "7" and conv.instructions == () and conv.turns == 0
    assert conv.query() == ("7", [])
    say(conv, "shorter")
    assert [(i.attribute, i.value) for i in conv.instructions] == [("length", "knee-length")]
    assert conv.describe() == "searching for: ref #7 + knee-length"
    conv.undo()
    conv.undo()
    assert conv.reference.kind == "upload" and len(conv.instructions) == 2


def test_new_photo_is_a_new_reference():
    conv = Conversation("s", demo_schema())
    conv.apply(parse_rules("make it blue", demo_vocabulary()), Reference.upload("ab" * 32, "/tmp/a.png"))
    conv.apply(parse_rules("with stripes", demo_vocabulary()), Reference.upload("cd" * 32, "/tmp/b.png"))
    assert conv.query() == ("/tmp/b.png", ["with stripes"])


@dataclass
class FakeSearcher:
    """An in-memory catalog: returns items in id order, minus the excluded; remembers every call."""

    items: list[Hit]
    model_version: str = "fake-model"
    schema: CatalogSchema = field(default_factory=demo_schema)
    calls: list[dict] = field(default_factory=list)
    fail_with: Exception | None = None

    def search(self, reference, instructions, where, k, exclude, diverse=False):
        self.calls.append({"reference": reference, "instructions": list(instructions), "where": where,
                           "exclude": list(exclude), "diverse": diverse})
        if self.fail_with is not None:
            raise self.fail_with
        hits = [h for h in self.items if h.id not in exclude and h.id != reference][:k]
        return Results(query=f"q{len(self.calls)}", mode="composed" if reference else "text", hits=hits)

    def item(self, item_id):
        return next((h for h in self.items if h.id == item_id), None)

    def values(self, column):
        return sorted({str(h.metadata.get(column)) for h in self.items})

    def max_value(self, column):
        return max(float(h.metadata["price"]) for h in self.items)


@pytest.fixture
def catalog():
    return [Hit(str(i), f"/catalog/{i}.png", 1 - i / 100,
                {"category": "dress", "colour": "red", "length": "long", "price": 10.0 + i, "name": f"Dress #{i}"})
            for i in range(30)]


@pytest.fixture
def assistant(catalog, tmp_path):
    return Assistant(FakeSearcher(catalog), log=TripletLog(tmp_path / "log.jsonl", salt=b"pepper"),
                     uploads=UploadStore(tmp_path / "uploads"), k=5)


def png_file(tmp_path, name="photo.png", colour=(200, 30, 30)):
    path = tmp_path / name
    Image.new("RGB", (40, 60), colour).save(path)
    return path


def test_turns_search_with_filters_and_rejections(assistant):
    conv = assistant.start("session-1")
    reply = assistant.say(conv, "a red dress", filters=Filters({"category": ("dress",)}, {"price": (None, 30)}))
    assert reply.ok and [s.id for s in reply.shown] == ["0", "1", "2", "3", "4"]
    assert assistant.searcher.calls[-1] == {"reference": None, "instructions": ["a red dress"],
                                            "where": "category = 'dress' AND price <= 30.0", "exclude": [],
                                            "diverse": False}
    reply = assistant.command(conv, NONE_OF_THESE)
    assert [s.id for s in reply.shown] == ["5", "6", "7", "8", "9"]
    assert assistant.searcher.calls[-1]["exclude"] == ["0", "1", "2", "3", "4"]
    assert "Hiding 5 rejected" in reply.message


def test_a_search_with_words_the_rules_could_not_place_asks_for_a_spread(assistant):
    conv = assistant.start("s")
    assistant.say(conv, "a red dress")
    assert assistant.searcher.calls[-1]["diverse"] is False
    reply = assistant.say(conv, "with a bow")
    assert assistant.searcher.calls[-1]["diverse"] is True and "a spread" in reply.message
    assistant.command(conv, UNDO)
    assert assistant.searcher.calls[-1]["diverse"] is False


def test_bad_input_changes_nothing(assistant, tmp_path):
    conv = assistant.start("s")
    assistant.say(conv, "a red dress")
    before = (conv.state, list(conv.shown), len(conv.history))
    bomb = tmp_path / "not-an-image.png"
    bomb.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    reply = assistant.say(conv, "make it blue", image=str(bomb))
    assert not reply.ok and "could not use that image" in reply.message
    assert (conv.state, list(conv.shown), len(conv.history)) == before
    assistant.searcher.fail_with = BadFilter("no column colour2")
    reply = assistant.say(conv, "make it blue")
    assert not reply.ok and "no column colour2" in reply.message
    assert (conv.state, list(conv.shown), len(conv.history)) == before
    assert not assistant.say(conv, "   ").ok


def test_undo_with_nothing_to_undo_says_so(assistant):
    conv = assistant.start("s")
    reply = assistant.command(conv, UNDO)
    assert "nothing to undo" in reply.message and reply.shown == []
    assistant.say(conv, "a red dress")
    reply = assistant.command(conv, START_OVER)
    assert reply.message.startswith("Starting over") and reply.shown == [] and not conv.searchable


def test_pick_is_logged_before_it_is_confirmed(assistant, tmp_path):
    conv = assistant.start("raw-session-id")
    photo = png_file(tmp_path)
    assistant.say(conv, "with stripes", image=str(photo))
    reply = assistant.pick(conv, "2", consent=False)
    assert reply.ok and reply.logged is not None
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record == reply.logged
    assert record["session"] != "raw-session-id" and len(record["session"]) == 32
    assert record["reference"]["kind"] == "upload" and record["reference"]["stored"] is None
    assert record["instructions"] == ["with stripes"] and record["picked"]["id"] == "2"
    assert record["picked"]["rank"] == 3 and [s["rank"] for s in record["shown"]] == [1, 2, 3, 4, 5]
    assert record["model"] == "fake-model" and record["composed_text"] == "q1" and record["turns"] == 1
    assert conv.reference.key == "2" and assistant.searcher.calls[-1]["reference"] == "2"
    assert "2" not in [s.id for s in reply.shown]
    assert not list((tmp_path / "uploads-log").glob("*")) if (tmp_path / "uploads-log").exists() else True

    reply = assistant.pick(conv, "999")
    assert not reply.ok and len((tmp_path / "log.jsonl").read_text().splitlines()) == 1


def test_uploaded_reference_is_stored_only_with_consent(assistant, tmp_path):
    conv = assistant.start("s")
    photo = png_file(tmp_path, colour=(10, 10, 200))
    assistant.say(conv, "", image=str(photo))
    record = assistant.pick(conv, "0", consent=True).logged
    stored = tmp_path / record["reference"]["stored"]
    assert stored.is_file() and stored.name == f"{record['reference']['sha256']}.png"
    assert Image.open(io.BytesIO(stored.read_bytes())).size == (40, 60)


def test_a_failed_log_write_loses_nothing_and_confirms_nothing(assistant, tmp_path):
    conv = assistant.start("s")
    assistant.say(conv, "a red dress")
    state = conv.state
    assistant.log.path = tmp_path / "log.jsonl" / "not-a-dir" / "log.jsonl"
    (tmp_path / "log.jsonl").write_text("")
    reply = assistant.pick(conv, "1")
    assert not reply.ok and "could not be saved" in reply.message
    assert conv.state == state and conv.picks == [] and [s.id for s in conv.shown] == ["0", "1", "2", "3", "4"]


def test_shortlist_is_per_conversation_and_survives_start_over(assistant):
    conv = assistant.start("s")
    assistant.say(conv, "a red dress")
    assert conv.add_to_shortlist(conv.shown[0]) and not conv.add_to_shortlist(conv.shown[0])
    assistant.command(conv, START_OVER)
    assert list(conv.shortlist) == ["0"]
    assert assistant.start("t").shortlist == {}
