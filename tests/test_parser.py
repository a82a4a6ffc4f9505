"""Instruction parsing: the rules on the demo vocabulary, synonyms, relative edits, commands, free text,
and the optional LLM parser with the rules as its fallback."""

from __future__ import annotations

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import Field

from assistant.instruction import caption_phrase
from assistant.llm_parser import LLMParser, MessageParse, load_chat_model, make_parser
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, RuleParser, clean_text, parse_rules
from training.triplets import NECK_WORD, PATTERN_NOUN, SLEEVE_WORD, TEMPLATES, _comparative
from training.world import VALUES


def slots(text: str, known: dict[str, str] | None = None) -> list[tuple[str | None, str | None]]:
    return [(i.attribute, i.value) for i in parse_rules(text, known).instructions]


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
    unknown = parse_rules("shorter").instructions[0]
    assert (unknown.attribute, unknown.value, unknown.text) == ("length", "shorter", "shorter")
    assert unknown.label == "shorter"


def test_slotted_instructions_reach_the_model_in_training_phrasing():
    texts = [i.text for i in parse_rules("actually red, polka dots, no sleeves, v-neck").instructions]
    assert texts == ["make it red", "with polka dots", "make it sleeveless", "with a v-neck"]


def test_unknown_words_are_kept_as_free_text_in_order():
    parsed = parse_rules("a red dress with a bow, something for a wedding")
    assert [(i.attribute, i.text) for i in parsed.instructions] == [
        ("colour", "make it red"), ("category", "make it a dress"), (None, "with a bow"),
        (None, "something for a wedding")]
    assert parse_rules("not red").instructions[0].attribute is None
    assert parse_rules("please").instructions == []


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
    parsed = parse_rules(text)
    assert parsed.command == command
    assert [(i.attribute, i.value) for i in parsed.instructions] == rest


def test_text_is_cleaned_and_capped():
    assert clean_text("  make\x00 it\u2019s\n\tred  ") == "make it's red"
    assert len(clean_text("x" * 10_000)) == 400


def test_caption_phrase_for_text_only_turns():
    assert caption_phrase({"colour": "red", "pattern": "striped", "category": "dress"}) == "a red striped dress"
    assert caption_phrase({"colour": "orange"}) == "an orange garment"
    assert caption_phrase({"pattern": "solid", "category": "skirt"}) == "a skirt"
    assert caption_phrase({"length": "shorter", "category": "skirt"}) == "a short skirt"


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
    parsed = LLMParser(model).parse("something navy with dots, a bit shorter, bow", {"length": "long"})
    assert parsed.source == "llm" and parsed.note is None
    assert [(i.attribute, i.value) for i in parsed.instructions] == [
        ("colour", "navy"), ("pattern", "dotted"), ("length", "knee-length"), (None, None)]
    assert parsed.instructions[-1].text == "with a bow"
    system = model.calls[0][0][1]
    assert all(v in system for v in VALUES["colour"])


def test_llm_parser_falls_back_to_rules_when_the_model_fails():
    parsed = LLMParser(FakeChatModel(fail=True, calls=[])).parse("make it navy blue")
    assert parsed.source == "rules" and "TimeoutError" in parsed.note
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("colour", "navy")]


def test_llm_is_off_unless_configured(monkeypatch):
    monkeypatch.delenv("CIRCHAT_LLM", raising=False)
    assert isinstance(make_parser(), RuleParser)
    monkeypatch.setenv("CIRCHAT_LLM", "tests.test_parser:FakeChatModel")
    monkeypatch.setenv("CIRCHAT_LLM_KWARGS", '{"answer": {"command": "undo"}}')
    parser = make_parser()
    assert isinstance(parser, LLMParser) and parser.parse("take it back").command == UNDO
    with pytest.raises(ValueError, match="cannot load chat model"):
        load_chat_model("no_such_module:Nothing")
    assert MessageParse().command == "none"
