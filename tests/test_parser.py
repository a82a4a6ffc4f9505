"""Instruction parsing: the rules on the demo vocabulary, synonyms, relative edits, commands, free text,
and the optional LLM parser with the rules as its fallback."""

from __future__ import annotations

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import Field

from assistant.llm_parser import LLMParser, MessageParse, load_chat_model, make_parser
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, RuleParser, clean_text, parse_rules
from tests.demo_schema import demo_schema, demo_vocabulary
from training.triplets import NECK_WORD, PATTERN_NOUN, SLEEVE_WORD, TEMPLATES, _comparative
from training.world import VALUES


def slots(text: str, known: dict[str, str] | None = None) -> list[tuple[str | None, str | None]]:
    return [(i.attribute, i.value) for i in parse_rules(text, demo_vocabulary(), known).instructions]


@pytest.mark.parametrize("text, expected", [
    ("a red striped dress", [("colour", "red"), ("pattern", "striped"), ("category", "dress")]),
    ("make it navy blue", [("colour", "navy")]),
    ("dark blue please", [("colour", "navy")]),
    ("burgundy", [("colour", "maroon")]),
    ("with polka dots", [("pattern", "dotted")]),
    ("make it plain", [("pattern", "solid")]),
    ("remove the stripes", [("pattern", "solid")]),
    ("no pattern", [("pattern", "solid")]),
    ("no sleeves", [("sleeve", "sleeveless")]),
    ("cut off the sleeves", [("sleeve", "sleeveless")]),
    ("with short sleeves", [("sleeve", "short-sleeve")]),
    ("long-sleeved", [("sleeve", "long-sleeve")]),
    ("a maxi skirt", [("length", "long"), ("category", "skirt")]),
    ("knee-length", [("length", "knee-length")]),
    ("v neck", [("neckline", "v-neck")]),
    ("round neck", [("neckline", "crew-neck")]),
    ("a tee in plaid", [("category", "t-shirt"), ("pattern", "checked")]),
    ("pants", [("category", "trousers")]),
    ("a long dress with short sleeves and a v-neck",
     [("length", "long"), ("category", "dress"), ("sleeve", "short-sleeve"), ("neckline", "v-neck")]),
    ("no, with stripes", [("pattern", "striped")]),
    ("actually red", [("colour", "red")]),
])
def test_rules_slot_the_vocabulary_and_its_synonyms(text, expected):
    assert slots(text) == expected


def training_phrasings():
    """Every (template, old, new) the synthetic triplets can produce, clean and held-out phrasings alike."""
    for attribute in ("colour", "pattern", "sleeve", "length", "neckline"):
        for old in VALUES[attribute]:
            for new in VALUES[attribute]:
                if old == new:
                    continue
                kind = attribute
                if attribute == "pattern":
                    kind = "pattern-" if new == "solid" else "pattern+"
                elif attribute == "sleeve":
                    kind = "sleeve-" if new == "sleeveless" else "sleeve+"
                for template, _ in TEMPLATES[kind]:
                    if "{c}" in template and old == "sleeveless":
                        continue
                    value = SLEEVE_WORD.get(new, new) if attribute == "sleeve" else new
                    noun = NECK_WORD.get(new) if attribute == "neckline" else PATTERN_NOUN.get(new, new)
                    comparative = _comparative(attribute, old, new) if "{c}" in template else ""
                    text = template.format(v=value, n=noun, o=PATTERN_NOUN.get(old, old), c=comparative)
                    yield text, attribute, old, new, bool(comparative)


def test_every_training_phrasing_lands_in_its_slot():
    """The phrasings the stage-2 triplets use all parse to the edit they encode (relative ones one step)."""
    missed = []
    for text, attribute, old, new, relative in training_phrasings():
        got = slots(text, {"category": "dress", attribute: old})
        order = VALUES[attribute]
        if not relative or abs(order.index(new) - order.index(old)) == 1:
            ok = got == [(attribute, new)]
        else:
            ok = [a for a, _ in got] == [attribute]
        if not ok:
            missed.append((text, old, new, got))
    assert not missed, missed[:10]


def test_relative_edits_resolve_against_what_is_known():
    dress = {"category": "dress", "length": "knee-length", "sleeve": "short-sleeve"}
    assert slots("shorter", dress) == [("length", "short")]
    assert slots("make it longer", dress) == [("length", "long")]
    assert slots("shorter sleeves", dress) == [("sleeve", "sleeveless")]
    assert slots("make the sleeves longer", dress) == [("sleeve", "long-sleeve")]
    assert slots("shorter", {"category": "t-shirt", "sleeve": "long-sleeve"}) == [("sleeve", "short-sleeve")]
    unknown = parse_rules("shorter", demo_vocabulary()).instructions[0]
    assert (unknown.attribute, unknown.value, unknown.text) == ("length", "shorter", "shorter")
    assert unknown.label == "shorter"


def test_slotted_instructions_reach_the_model_in_training_phrasing():
    parsed = parse_rules("actually red, polka dots, no sleeves, v-neck", demo_vocabulary())
    texts = [i.text for i in parsed.instructions]
    assert texts == ["make it red", "with polka dots", "make it sleeveless", "with a v-neck"]


def test_unknown_words_are_kept_as_free_text_in_order():
    parsed = parse_rules("a red dress with a bow, something for a wedding", demo_vocabulary())
    assert [(i.attribute, i.text) for i in parsed.instructions] == [
        ("colour", "make it red"), ("category", "make it a dress"), (None, "with a bow"),
        (None, "something for a wedding")]
    assert parse_rules("not red", demo_vocabulary()).instructions[0].attribute is None
    assert parse_rules("please", demo_vocabulary()).instructions == []


@pytest.mark.parametrize("text, command, rest", [
    ("undo", UNDO, []), ("Undo that.", UNDO, []), ("go back", UNDO, []),
    ("start over", START_OVER, []), ("Reset", START_OVER, []), ("new search: a blue skirt", START_OVER,
                                                                 [("colour", "blue"), ("category", "skirt")]),
    ("none of these", NONE_OF_THESE, []), ("None of these, make it red", NONE_OF_THESE, [("colour", "red")]),
    ("I don't like these", NONE_OF_THESE, []), ("show me something else", NONE_OF_THESE, []),
    ("make it blue", None, [("colour", "blue")]),
    ("backless", None, [(None, None)]),
])
def test_commands(text, command, rest):
    parsed = parse_rules(text, demo_vocabulary())
    assert parsed.command == command
    assert [(i.attribute, i.value) for i in parsed.instructions] == rest


def test_text_is_cleaned_and_capped():
    assert clean_text("  make\x00 it\u2019s\n\tred  ") == "make it's red"
    assert len(clean_text("x" * 10_000)) == 400


def test_caption_phrase_for_text_only_turns():
    describe = demo_schema().describe
    assert describe({"colour": "red", "pattern": "striped", "category": "dress"}) == "a red striped dress"
    assert describe({"colour": "orange"}) == "an orange garment"
    assert describe({"pattern": "solid", "category": "skirt"}) == "a skirt"
    assert describe({"length": "shorter", "category": "skirt"}) == "a short skirt"


class FakeChatModel(BaseChatModel):
    """A chat model whose structured output is fixed (or raises), standing in for a real LLM."""

    answer: dict | None = None
    fail: bool = False
    calls: list = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])

    def with_structured_output(self, schema, **kwargs):
        def run(messages):
            self.calls.append(messages)
            if self.fail:
                raise TimeoutError("model did not answer")
            return schema.model_validate(self.answer)

        return RunnableLambda(run)


def test_llm_parser_uses_the_model_and_checks_its_values():
    model = FakeChatModel(answer={"command": "none", "edits": [
        {"attribute": "colour", "value": "navy"}, {"attribute": "pattern", "value": "polka dots"},
        {"attribute": "length", "value": "shorter"}], "free_text": ["with a bow"]}, calls=[])
    parsed = LLMParser(model, demo_vocabulary()).parse("something navy with dots, a bit shorter, bow",
                                                       {"length": "long"})
    assert parsed.source == "llm" and parsed.note is None
    assert [(i.attribute, i.value) for i in parsed.instructions] == [
        ("colour", "navy"), ("pattern", "dotted"), ("length", "knee-length"), (None, None)]
    assert parsed.instructions[-1].text == "with a bow"
    system = model.calls[0][0][1]
    assert all(v in system for v in VALUES["colour"])


def test_llm_parser_falls_back_to_rules_when_the_model_fails():
    parsed = LLMParser(FakeChatModel(fail=True, calls=[]), demo_vocabulary()).parse("make it navy blue")
    assert parsed.source == "rules" and "TimeoutError" in parsed.note
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("colour", "navy")]


def test_llm_is_off_unless_configured(monkeypatch):
    monkeypatch.delenv("CIRCHAT_LLM", raising=False)
    assert isinstance(make_parser(demo_vocabulary()), RuleParser)
    monkeypatch.setenv("CIRCHAT_LLM", "tests.test_parser:FakeChatModel")
    monkeypatch.setenv("CIRCHAT_LLM_KWARGS", '{"answer": {"command": "undo"}}')
    parser = make_parser(demo_vocabulary())
    assert isinstance(parser, LLMParser) and parser.parse("take it back").command == UNDO
    with pytest.raises(ValueError, match="cannot load chat model"):
        load_chat_model("no_such_module:Nothing")
    assert MessageParse().command == "none"


@pytest.mark.parametrize("text, expected", [
    ("could it be purple rather than yellow?", [("colour", "purple")]),
    ("not green — orange", [("colour", "orange")]),
    ("orange instead of green", [("colour", "orange")]),
    ("no stripes, make it blue", [("pattern", "solid"), ("colour", "blue")]),
])
def test_negations_keep_only_the_wanted_value(text, expected):
    assert slots(text) == expected


def test_values_the_catalog_does_not_carry_are_reported_with_the_closest_ones():
    parsed = parse_rules("make it grey", demo_vocabulary())
    assert parsed.instructions == []
    (missing,) = parsed.unavailable
    assert (missing.attribute, missing.value) == ("colour", "grey")
    assert missing.message().startswith("No grey items here; closest: ")
    assert set(missing.closest) <= set(demo_schema().attribute("colour").value_names) and missing.closest
    olive = parse_rules("an olive jacket", demo_vocabulary())
    assert {(u.attribute, u.value) for u in olive.unavailable} == {("colour", "olive"), ("category", "jacket")}
    assert parse_rules("not grey", demo_vocabulary()).unavailable == []


def shop_schema():
    """A small shop of bags and shoes, inferred from its own rows."""
    from retrieval.catalog_schema import infer_schema

    rows = [{"type": t, "color": c, "size": s, "strap": st, "heel_height": h}
            for t, st, h in (("Bag", "Long", ""), ("Bag", "None", ""), ("Bag", "Short", ""),
                             ("Shoe", "", "Flat"), ("Shoe", "", "High"), ("Shoe", "", "Low"))
            for c in ("Black", "Olive", "Green", "Burgundy") for s in ("S", "M", "L")]
    return infer_schema(["type", "color", "size", "strap", "heel_height"], rows)


def test_a_shops_own_vocabulary_drives_the_rules():
    from assistant.vocabulary import Vocabulary

    vocabulary = Vocabulary(shop_schema())

    def shop_slots(text, known=None):
        return [(i.attribute, i.value) for i in parse_rules(text, vocabulary, known).instructions]

    assert shop_slots("a black bag with a long strap") == [("color", "Black"), ("type", "Bag"), ("strap", "Long")]
    assert shop_slots("olive") == [("color", "Olive")] and shop_slots("green") == [("color", "Green")]
    assert shop_slots("wine red") == [("color", "Burgundy")]
    assert shop_slots("bigger", {"type": "Bag", "size": "M"}) == [("size", "L")]
    assert shop_slots("a size smaller", {"type": "Bag", "size": "S"}) == [("size", "S")]
    assert shop_slots("higher heels", {"type": "Shoe", "heel_height": "Flat"}) == [("heel_height", "Low")]
    assert shop_slots("stilettos") == [("heel_height", "High")]
    assert shop_slots("no strap") == [("strap", "None")]
    assert shop_slots("shoes") == [("type", "Shoe")]
    grey = parse_rules("in grey", vocabulary)
    assert grey.instructions == [] and grey.unavailable[0].value == "grey"
    assert "sleeves" not in " ".join(" ".join(p) for p in vocabulary.phrases)


def test_llm_output_type_and_prompt_come_from_the_schema():
    from assistant.llm_parser import message_model, system_prompt

    schema = shop_schema()
    model = message_model(schema)
    assert model.model_validate({"edits": [{"attribute": "strap", "value": "Long"}]}).edits[0].attribute == "strap"
    with pytest.raises(ValueError):
        model.model_validate({"edits": [{"attribute": "sleeve", "value": "long"}]})
    prompt = system_prompt(schema)
    assert "- strap: None, Short, Long" in prompt and "sleeve" not in prompt
