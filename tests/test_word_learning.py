"""Words learned from picks: what the statistics accept and refuse, and where learned words live."""

from __future__ import annotations

import json

import pytest

from assistant.parser import parse_rules
from assistant.vocabulary import Vocabulary
from assistant.word_learning import Change, changes, learn_into, learn_words
from retrieval.catalog_schema import LearnedWord, infer_schema, load_schema, save_schema

COLOURS = ("red", "blue", "green", "black", "white", "pink")
LENGTHS = ("short", "knee-length", "long")


def schema():
    rows = [{"colour": c, "length": n} for c in COLOURS for n in LENGTHS]
    return infer_schema(["colour", "length"], rows)


def item(colour: str, length: str = "short") -> str:
    return f"{colour}/{length}"


def values_of(item_id: str) -> dict[str, str] | None:
    colour, _, length = item_id.partition("/")
    return {"colour": colour, "length": length} if colour in COLOURS and length in LENGTHS else None


def pick(phrases: list[str], start: str | None, picked: str) -> dict:
    reference = {"kind": "catalog", "id": start} if start else {"kind": "upload", "sha256": "0" * 64}
    return {"reference": reference, "picked": {"id": picked},
            "parsed": [{"attribute": None, "value": None, "said": p, "text": p} for p in phrases]}


def background(n: int = 30) -> list[dict]:
    """Picks for an unrelated phrase that change colours and lengths evenly: the base rates."""
    return [pick(["hmm"], item(COLOURS[i % 6], LENGTHS[i % 3]), item(COLOURS[(i + 1) % 6], LENGTHS[(i + 1) % 3]))
            for i in range(n)]


def test_a_phrase_that_keeps_going_with_one_value_is_learned_and_the_rules_then_slot_it():
    log = [pick(["En Rouge"], item(c), item("red")) for c in COLOURS[1:]] + background()
    words = learn_words(log, Vocabulary(schema()), values_of)
    assert [(w.phrase, w.attribute, w.value, w.agreeing, w.picks) for w in words] == [
        ("en rouge", "colour", "red", 5, 5)]
    learned = schema().with_learned(words)
    parsed = parse_rules("en rouge", Vocabulary(learned))
    assert [(i.attribute, i.value, i.text) for i in parsed.instructions] == [("colour", "red", "make it red")]
    assert [(i.attribute, i.text) for i in parse_rules("en rouge", Vocabulary(schema())).instructions] == [
        (None, "en rouge")]


def test_a_phrase_said_beside_a_learned_word_is_not_credited_with_its_change():
    """Every pick of "bof" also said "en rouge" and showed red: "en rouge" explains red away, "bof" learns nothing."""
    log = [pick(["en rouge"], item(c), item("red")) for c in COLOURS[1:]]
    log += [pick(["en rouge", "bof"], item(c, "long"), item("red", "long")) for c in COLOURS[1:]] + background()
    assert [w.phrase for w in learn_words(log, Vocabulary(schema()), values_of)] == ["en rouge"]


def test_a_japanese_phrase_is_learned_and_matched_inside_a_longer_message():
    log = [pick(["ワインレッドで"], item(c), item("red")) for c in COLOURS[1:]] + background()
    words = learn_words(log, Vocabulary(schema()), values_of)
    assert [(w.phrase, w.value) for w in words] == [("ワインレッドで", "red")]
    parsed = parse_rules("これをワインレッドで", Vocabulary(schema().with_learned(words)))
    assert ("colour", "red") in [(i.attribute, i.value) for i in parsed.instructions]


def test_too_few_picks_too_mixed_picks_and_values_every_pick_shows_are_not_learned():
    few = [pick(["en rouge"], item(c), item("red")) for c in COLOURS[1:4]]
    mixed = [pick(["en bleu"], item("red"), item(c)) for c in ("blue", "blue", "blue", "green", "black", "pink")]
    common = [pick(["sans doute"], item(c, "long"), item(c, "short")) for c in COLOURS]
    common += [pick(["hmm"], item(c, "long"), item(c, "short")) for c in COLOURS for _ in range(3)]
    assert learn_words(few + mixed + common + background(), Vocabulary(schema()), values_of) == []


def test_relative_words_are_learned_from_catalog_references_only():
    log = [pick(["raccourcir"], item(c, "long"), item(c, "knee-length")) for c in COLOURS]
    log += [pick(["raccourcir"], item(c, "knee-length"), item(c, "short")) for c in COLOURS]
    log += [pick(["raccourcir"], None, item(c, "short")) for c in COLOURS]
    words = learn_words(log + background(), Vocabulary(schema()), values_of)
    assert [(w.phrase, w.attribute, w.value, w.agreeing, w.picks) for w in words] == [
        ("raccourcir", "length", "shorter", 12, 12)]
    parsed = parse_rules("raccourcir", Vocabulary(schema().with_learned(words)), {"length": "long"})
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("length", "knee-length")]
    assert changes(schema(), None, {"length": "short"}) == [Change("length", "short")]
    assert changes(schema(), {"length": "knee-length"}, {"length": "short"}) == [
        Change("length", "short"), Change("length", "shorter", relative=True)]


def test_phrases_the_vocabulary_knows_long_sentences_and_slotted_instructions_teach_nothing():
    log = [pick(["make it red"], item(c), item("red")) for c in COLOURS[1:]]
    log += [pick(["je voudrais la même en beaucoup plus rouge"], item(c), item("red")) for c in COLOURS[1:]]
    log += [{**pick([], item(c), item("red")), "parsed": [{"attribute": "colour", "value": "red", "said": "rojo"}]}
            for c in COLOURS[1:]]
    assert learn_words(log + background(), Vocabulary(schema()), values_of) == []


def test_learned_words_follow_the_catalog_and_stay_out_of_the_shops_schema_file(tmp_path):
    base = schema()
    learned = learn_into(base, [pick(["en rouge"], item(c), item("red")) for c in COLOURS[1:]] + background(),
                         values_of)
    assert [w.phrase for w in learned.learned] == ["en rouge"]
    relearned = learned.with_learned([LearnedWord(phrase="EN ROUGE", attribute="colour", value="pink")])
    assert [(w.phrase, w.value) for w in relearned.learned] == [("EN ROUGE", "pink")], "a phrase has one meaning"
    gone = infer_schema(["colour"], [{"colour": c} for c in COLOURS[1:]]).with_learned(learned.learned)
    assert gone.learned == [], "a word for a value the catalog no longer carries is dropped"
    save_schema(learned, tmp_path / "schema.json")
    assert "learned" not in json.loads((tmp_path / "schema.json").read_text())
    assert load_schema(tmp_path / "schema.json") == base


@pytest.mark.parametrize("bad", [{"picked": {}}, {"reference": "x", "picked": {"id": "nope/none"}}, {}])
def test_unusable_records_are_skipped(bad):
    log = [pick(["en rouge"], item(c), item("red")) for c in COLOURS[1:]] + background() + [bad]
    assert [w.phrase for w in learn_words(log, Vocabulary(schema()), values_of)] == ["en rouge"]
