"""Japanese for shoppers and sales staff (issue 17): the rule parser reads Japanese instructions through the words the
catalog schema carries per language (copied from the lexicon's "ja"), Japanese sentence patterns for edits,
negation, relative edits and the commands, with no spaces needed; the LLM parser's answers to Japanese messages
land in the same slots; a shop's older schema.json gains Japanese on re-inference; free text the text tower cannot
read is told apart from the rest.

The acceptance set below was written for this test: 80 instructions a Japanese shopper or sales person would type.
``python -m pytest tests/test_japanese_parser.py -k acceptance -s`` prints how many parse as expected.
"""

from __future__ import annotations

import json

import open_clip
import pytest

from assistant.llm_parser import LLMParser, system_prompt
from assistant.messages import choose_language
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, parse_rules, readable_part
from assistant.tokens import tokenize
from assistant.turns import Assistant
from assistant.uploads import UploadStore
from assistant.vocabulary import Vocabulary
from retrieval.backbone import tokenizer_languages
from retrieval.catalog_schema import CatalogSchema, infer_schema, load_schema, save_schema
from retrieval.lexicon import Lexicon
from retrieval.store import Hit
from tests.demo_schema import demo_schema, demo_vocabulary
from tests.test_conversation import FakeSearcher
from tests.test_parser import FakeChatModel, shop_schema

DRESS = {"category": "dress", "colour": "red", "pattern": "solid", "sleeve": "short-sleeve",
         "length": "knee-length", "neckline": "crew-neck"}
TEE = {"category": "t-shirt", "colour": "red", "pattern": "solid", "sleeve": "long-sleeve", "neckline": "crew-neck"}
SKIRT = {"category": "skirt", "colour": "red", "pattern": "solid", "length": "short"}

# (kind, message, what is known about the current item, expected command, expected (attribute, value) slots)
ACCEPTANCE = [
    ("colour", "青にして", DRESS, None, [("colour", "blue")]),
    ("colour", "赤で", DRESS, None, [("colour", "red")]),
    ("colour", "ネイビーがいい", DRESS, None, [("colour", "navy")]),
    ("colour", "紺色にしてください", DRESS, None, [("colour", "navy")]),
    ("colour", "黒いのがほしい", DRESS, None, [("colour", "black")]),
    ("colour", "ブルーでお願いします", DRESS, None, [("colour", "blue")]),
    ("colour", "ピンクっぽい感じで", DRESS, None, [("colour", "pink")]),
    ("colour", "緑色のワンピース", DRESS, None, [("colour", "green"), ("category", "dress")]),
    ("colour", "ベージュ", DRESS, None, [("colour", "beige")]),
    ("colour", "ワインレッドにして", DRESS, None, [("colour", "maroon")]),
    ("colour", "オレンジ色がいいです", DRESS, None, [("colour", "orange")]),
    ("colour", "黄色いスカート", DRESS, None, [("colour", "yellow"), ("category", "skirt")]),
    ("colour", "もう少し濃い青", DRESS, None, [("colour", "navy")]),
    ("colour", "紫に変えて", DRESS, None, [("colour", "purple")]),
    ("colour", "ターコイズで", DRESS, None, [("colour", "teal")]),
    ("pattern", "無地にして", DRESS, None, [("pattern", "solid")]),
    ("pattern", "ストライプで", DRESS, None, [("pattern", "striped")]),
    ("pattern", "ボーダー柄がいい", DRESS, None, [("pattern", "striped")]),
    ("pattern", "水玉模様にして", DRESS, None, [("pattern", "dotted")]),
    ("pattern", "ドット柄", DRESS, None, [("pattern", "dotted")]),
    ("pattern", "チェックにしてください", DRESS, None, [("pattern", "checked")]),
    ("pattern", "ギンガムチェックで", DRESS, None, [("pattern", "checked")]),
    ("pattern", "柄なしで", DRESS, None, [("pattern", "solid")]),
    ("pattern", "しましまのTシャツ", DRESS, None, [("pattern", "striped"), ("category", "t-shirt")]),
    ("sleeve", "半袖にして", TEE, None, [("sleeve", "short-sleeve")]),
    ("sleeve", "長袖がいい", DRESS, None, [("sleeve", "long-sleeve")]),
    ("sleeve", "ノースリーブで", DRESS, None, [("sleeve", "sleeveless")]),
    ("sleeve", "袖なしで", DRESS, None, [("sleeve", "sleeveless")]),
    ("sleeve", "長そでにして", DRESS, None, [("sleeve", "long-sleeve")]),
    ("length", "ミニ丈にして", DRESS, None, [("length", "short")]),
    ("length", "ひざ丈で", SKIRT, None, [("length", "knee-length")]),
    ("length", "膝丈のスカート", DRESS, None, [("length", "knee-length"), ("category", "skirt")]),
    ("length", "ロングにして", DRESS, None, [("length", "long")]),
    ("length", "マキシ丈のワンピース", DRESS, None, [("length", "long"), ("category", "dress")]),
    ("length", "ミディ丈", SKIRT, None, [("length", "knee-length")]),
    ("two edits", "青にして、袖を短く", DRESS, None, [("colour", "blue"), ("sleeve", "sleeveless")]),
    ("two edits", "赤いストライプのワンピース", DRESS, None,
     [("colour", "red"), ("pattern", "striped"), ("category", "dress")]),
    ("two edits", "黒の長袖", DRESS, None, [("colour", "black"), ("sleeve", "long-sleeve")]),
    ("two edits", "水玉でミニ丈", DRESS, None, [("pattern", "dotted"), ("length", "short")]),
    ("two edits", "ネイビーのチェック柄にして", DRESS, None, [("colour", "navy"), ("pattern", "checked")]),
    ("two edits", "半袖でVネック", DRESS, None, [("sleeve", "short-sleeve"), ("neckline", "v-neck")]),
    ("two edits", "ピンクにして丈は長め", DRESS, None, [("colour", "pink"), ("length", "long")]),
    ("negation", "ストライプじゃなくて水玉", DRESS, None, [("pattern", "dotted")]),
    ("negation", "赤じゃなくて青", DRESS, None, [("colour", "blue")]),
    ("negation", "ストライプはいらない", DRESS, None, [("pattern", "solid")]),
    ("negation", "柄はなしで", DRESS, None, [("pattern", "solid")]),
    ("negation", "長袖じゃなくて半袖", DRESS, None, [("sleeve", "short-sleeve")]),
    ("negation", "チェック以外で", DRESS, None, [("pattern", "solid")]),
    ("negation", "黒ではなく紺", DRESS, None, [("colour", "navy")]),
    ("negation", "ドット抜きで", DRESS, None, [("pattern", "solid")]),
    ("relative", "もっと短く", DRESS, None, [("length", "short")]),
    ("relative", "袖を短く", DRESS, None, [("sleeve", "sleeveless")]),
    ("relative", "袖を長く", DRESS, None, [("sleeve", "long-sleeve")]),
    ("relative", "もう少し長く", DRESS, None, [("length", "long")]),
    ("relative", "丈を短めに", DRESS, None, [("length", "short")]),
    ("relative", "短めにして", TEE, None, [("sleeve", "short-sleeve")]),
    ("relative", "もっと長く", SKIRT, None, [("length", "knee-length")]),
    ("relative", "袖をもうちょっと長くして", DRESS, None, [("sleeve", "long-sleeve")]),
    ("command", "元に戻して", DRESS, UNDO, []),
    ("command", "戻して", DRESS, UNDO, []),
    ("command", "取り消し", DRESS, UNDO, []),
    ("command", "ひとつ前に戻してください", DRESS, UNDO, []),
    ("command", "最初から", DRESS, START_OVER, []),
    ("command", "最初からやり直して", DRESS, START_OVER, []),
    ("command", "リセットして", DRESS, START_OVER, []),
    ("command", "どれも違う", DRESS, NONE_OF_THESE, []),
    ("command", "どれも違います", DRESS, NONE_OF_THESE, []),
    ("command", "他のを見せて", DRESS, NONE_OF_THESE, []),
    ("command", "どれも違う、赤にして", DRESS, NONE_OF_THESE, [("colour", "red")]),
    ("command", "最初から、青いスカート", DRESS, START_OVER, [("colour", "blue"), ("category", "skirt")]),
    ("actually", "やっぱり赤", DRESS, None, [("colour", "red")]),
    ("actually", "やっぱりストライプで", DRESS, None, [("pattern", "striped")]),
    ("mixed", "make it 青", DRESS, None, [("colour", "blue")]),
    ("mixed", "ストライプ with long sleeves", DRESS, None, [("pattern", "striped"), ("sleeve", "long-sleeve")]),
    ("mixed", "青 dress", DRESS, None, [("colour", "blue"), ("category", "dress")]),
    ("mixed", "no ストライプ", DRESS, None, [("pattern", "solid")]),
    ("mixed", "赤にして, shorter", DRESS, None, [("colour", "red"), ("length", "short")]),
    ("mixed", "none of these, 青で", DRESS, NONE_OF_THESE, [("colour", "blue")]),
    ("neckline", "Vネックにして", DRESS, None, [("neckline", "v-neck")]),
    ("neckline", "丸首で", DRESS, None, [("neckline", "crew-neck")]),
]
REQUIRED_SHARE = 0.95


def parsed_as(message: str, known: dict[str, str]) -> tuple[str | None, list[tuple[str | None, str | None]]]:
    parsed = parse_rules(message, demo_vocabulary(), known)
    return parsed.command, [(i.attribute, i.value) for i in parsed.instructions]


def test_acceptance_set_of_japanese_instructions():
    """At least 95% of the set parse to the expected command and slots (the issue's bar); each kind is covered."""
    assert len(ACCEPTANCE) >= 60
    kinds = {kind for kind, *_ in ACCEPTANCE}
    assert {"colour", "pattern", "sleeve", "length", "two edits", "negation", "relative", "command",
            "mixed"} <= kinds
    missed = [(message, (command, slots), parsed_as(message, known)) for _, message, known, command, slots in ACCEPTANCE
              if parsed_as(message, known) != (command, slots)]
    share = 1 - len(missed) / len(ACCEPTANCE)
    print(f"\n{len(ACCEPTANCE) - len(missed)}/{len(ACCEPTANCE)} Japanese instructions parse as expected "
          f"({share:.1%}); missed: {missed}")
    assert share >= REQUIRED_SHARE, missed


def test_spacing_does_not_decide_a_match():
    for spaced in ("青 に して", "ノースリーブ で", "赤い ストライプ の ワンピース"):
        assert parsed_as(spaced, DRESS) == parsed_as(spaced.replace(" ", ""), DRESS)
    assert tokenize("Vネック、make it blue") == ["v", "ネ", "ッ", "ク", "、", "make", "it", "blue"]


def test_japanese_reaches_the_model_as_the_schemas_english_edit_phrases():
    parsed = parse_rules("青にして、ストライプで、袖なし", demo_vocabulary(), DRESS)
    assert [i.text for i in parsed.instructions] == ["make it blue", "with stripes", "make it sleeveless"]
    assert [i.said for i in parsed.instructions] == ["青", "ストライプ", "袖なし"]


def test_japanese_words_come_from_the_schema_not_from_the_parser():
    """One mechanism: take the Japanese out of the schema and the parser no longer places Japanese values."""
    data = json.loads(demo_schema().to_json())
    for attribute in data["attributes"]:
        attribute["display"].pop("ja", None)
        attribute["generic"].pop("ja", None)
        for value in attribute["values"]:
            value["synonyms"].pop("ja", None)
            value["display"].pop("ja", None)
        for relative in attribute["relative"]:
            relative["phrases"].pop("ja", None)
    english_only = Vocabulary(CatalogSchema.model_validate(data), lexicon=Lexicon(concepts={}))
    assert [(i.attribute, i.value) for i in parse_rules("青にして", english_only).instructions] == [(None, None)]
    assert "ja" in demo_schema().languages
    assert demo_schema().attribute("colour").value("navy").synonyms["ja"][:3] == ["紺", "紺色", "ネイビー"]


def test_values_the_catalog_lacks_are_said_in_japanese():
    parsed = parse_rules("グレーにして", demo_vocabulary(), DRESS)
    assert parsed.instructions == []
    (missing,) = parsed.unavailable
    assert missing.value == "grey"
    message = missing.message("ja", demo_schema())
    assert message.startswith("グレーの商品はありません。近いもの：") and ("黒" in message or "紺" in message), message
    assert missing.message().startswith("No grey items here; closest: ")


def test_a_shops_own_catalog_in_japanese():
    vocabulary = Vocabulary(shop_schema())

    def shop(message, known=None):
        return [(i.attribute, i.value) for i in parse_rules(message, vocabulary, known).instructions]

    assert shop("黒いバッグでショルダー") == [("color", "Black"), ("type", "Bag"), ("strap", "Long")]
    assert shop("ワンサイズ大きく", {"type": "Bag", "size": "M"}) == [("size", "L")]
    assert shop("小さめにして", {"type": "Bag", "size": "M"}) == [("size", "S")]
    assert shop("Sサイズ") == [("size", "S")] and shop("ハイヒールの靴") == [("heel_height", "High"), ("type", "Shoe")]
    assert shop("ストラップなしで") == [("strap", "None")] and shop("ボルドー") == [("color", "Burgundy")]
    assert shop("ヒールを高く", {"type": "Shoe", "heel_height": "Flat"}) == [("heel_height", "Low")]


def test_an_older_shop_schema_gains_japanese_on_reinference_and_keeps_its_edits(tmp_path):
    """A schema.json written before the lexicon had Japanese gains it on the next ingest; a language the shop
    emptied on purpose stays empty; the shop's own words stay."""
    inferred = infer_schema(["type", "color", "size"], [{"type": "Bag", "color": c, "size": s}
                                                        for c in ("Black", "Navy") for s in ("S", "M")])
    data = json.loads(inferred.to_json())
    for attribute in data["attributes"]:
        attribute["display"].pop("ja", None)
        for value in attribute["values"]:
            value["synonyms"].pop("ja", None)
            value["display"].pop("ja", None)
        for relative in attribute["relative"]:
            relative["phrases"].pop("ja", None)
            relative["display"].pop("ja", None)
    data["languages"] = ["en"]
    color = next(a for a in data["attributes"] if a["name"] == "color")
    black = next(v for v in color["values"] if v["name"] == "Black")
    black["synonyms"]["ja"] = []
    black["synonyms"]["en"].append("onyx")
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    old = load_schema(path)
    assert not Vocabulary(old).meanings(tuple(tokenize("紺")))

    again = infer_schema(["type", "color", "size"], [{"type": "Bag", "color": c, "size": s}
                                                     for c in ("Black", "Navy") for s in ("S", "M")], previous=old)
    save_schema(again, path)
    reloaded = load_schema(path)
    navy, black = reloaded.attribute("color").value("Navy"), reloaded.attribute("color").value("Black")
    assert "紺" in navy.synonyms["ja"] and navy.shown("ja") == "紺"
    assert black.synonyms["ja"] == [] and "onyx" in black.synonyms["en"]
    assert reloaded.attribute("color").shown("ja") == "色" and "ja" in reloaded.languages
    assert [r.shown("ja") for r in reloaded.attribute("size").relative] == ["小さく", "大きく"]
    assert [(i.attribute, i.value) for i in parse_rules("紺にして", Vocabulary(reloaded)).instructions] == [
        ("color", "Navy")]


def test_llm_parser_reads_japanese_into_the_same_slots():
    model = FakeChatModel(answer={"command": "none", "edits": [
        {"attribute": "colour", "value": "紺"}, {"attribute": "sleeve", "value": "半袖"},
        {"attribute": "length", "value": "短く"}], "free_text": ["リボン付き"]}, calls=[])
    parsed = LLMParser(model, demo_vocabulary()).parse("紺で半袖、もう少し短く、リボン付き", DRESS)
    assert parsed.source == "llm" and parsed.note is None
    assert [(i.attribute, i.value) for i in parsed.instructions] == [
        ("colour", "navy"), ("sleeve", "short-sleeve"), ("length", "short"), (None, None)]
    assert parsed.instructions[-1].text == "リボン付き"
    system = model.calls[0][0][1]
    assert "ja" in system and "ノースリーブ -> sleeveless" in system and "元に戻して" in system
    command = LLMParser(FakeChatModel(answer={"command": "undo"}, calls=[]), demo_vocabulary()).parse("元に戻して")
    assert command.command == UNDO


def test_llm_parser_falls_back_to_the_rules_in_japanese():
    parsed = LLMParser(FakeChatModel(fail=True, calls=[]), demo_vocabulary()).parse("ストライプじゃなくて水玉", DRESS)
    assert parsed.source == "rules" and "TimeoutError" in parsed.note
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("pattern", "dotted")]
    assert "ja" in system_prompt(demo_schema())


def test_free_text_is_split_by_what_the_text_tower_reads():
    parsed = parse_rules("リボン付きで、with a bow", demo_vocabulary())
    assert [(i.attribute, i.text) for i in parsed.instructions] == [(None, "リボン付きで"), (None, "with a bow")]
    english = frozenset({"en"})
    assert readable_part("リボン付きで", english) == ("", ["リボン付きで"])
    assert readable_part("with a リボン", english) == ("", ["リボン"])
    assert readable_part("bow リボン tie", english) == ("bow tie", ["リボン"])
    assert readable_part("リボン付きで", frozenset({"en", "ja"})) == ("リボン付きで", [])


class FakeSentencePiece:
    """A sentencepiece-style tokenizer as open_clip's HFTokenizer wraps one (xlm-roberta, nllb): whole words."""

    unk_token_id = 3

    def __call__(self, text, add_special_tokens=False):
        words = {"赤い": 10, "ストライプ": 11, "の": 12, "長袖": 13, "ワンピース": 14}
        ids, rest = [], text.replace(" ", "")
        while rest:
            word = next((w for w in words if rest.startswith(w)), None)
            ids.append(words[word] if word else 20 + len(ids))
            rest = rest[len(word) if word else 1:]
        return {"input_ids": ids}


class FakeHFTokenizer:
    tokenizer = FakeSentencePiece()


def test_text_tower_languages_are_told_by_the_tokenizer():
    """CLIP's byte-level BPE (the demo tower and the standard English towers) cuts Japanese into byte fragments;
    a sentencepiece vocabulary with Japanese words reads it."""
    assert tokenizer_languages(open_clip.get_tokenizer("circhat-tiny-rn")) == {"en"}
    assert tokenizer_languages(open_clip.get_tokenizer("ViT-B-32")) == {"en"}
    assert tokenizer_languages(FakeHFTokenizer()) == {"en", "ja"}
    assert tokenizer_languages(object()) == {"en", "ja"}


@pytest.mark.parametrize("header, language", [
    ("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", "ja"), ("en-US,en;q=0.9,ja;q=0.8", "en"), ("fr-FR,fr", "en"),
    ("fr;q=0.9,ja;q=0.5", "ja"), ("", "en"), (None, "en"), ("ja;q=0, en", "en"), ("ja;q=bad", "en"),
])
def test_the_browsers_language_is_chosen_from_accept_language(header, language):
    assert choose_language(header) == language


@pytest.mark.parametrize("languages, passed_on", [(frozenset({"en"}), False), (frozenset({"en", "ja"}), True),
                                                  (None, True)])
def test_japanese_free_text_reaches_only_a_tower_that_reads_it(tmp_path, languages, passed_on):
    """An English-only text tower: リボン付き is reported as not understood and left out of the query; a multilingual
    tower (or one whose languages are not known) gets it as free text, as before."""
    searcher = FakeSearcher([Hit(str(i), f"/c/{i}.png", 1.0, {"category": "dress", "colour": "red"})
                             for i in range(8)])
    searcher.text_languages = languages
    assistant = Assistant(searcher, uploads=UploadStore(tmp_path / "uploads"), k=4)
    conv = assistant.start("s")
    conv.language = "ja"
    reply = assistant.say(conv, "赤いワンピース、リボン付きで")
    sent = searcher.calls[-1]["instructions"]
    assert ("リボン付きで" in sent) == passed_on and any("red dress" in s for s in sent)
    assert ("理解できませんでした" in reply.message) != passed_on
    assert ("「リボン付きで」" in reply.chips) == passed_on
