"""Optional LLM instruction parsing through langchain-core, with the rules as the fallback.

The chat model is named by ``--llm`` / ``CIRCHAT_LLM``: ``package.module:Factory``
(called with the JSON keyword arguments of ``--llm-kwargs`` / ``CIRCHAT_LLM_KWARGS``,
e.g. ``langchain_ollama:ChatOllama`` with ``{"model": "llama3.1"}``), or, when the
``langchain`` package is installed, any ``provider:model`` that its
``init_chat_model`` understands. None is configured by default. The model answers
through ``with_structured_output``; values outside the catalog vocabulary are run
through the rules, and any failure (no answer, bad schema, timeout) falls back
to the rules for that message, saying so in ``Parsed.note``.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from assistant.instruction import Instruction, slot
from assistant.parser import COMMANDS, Parsed, RuleParser, clean_text, parse_rules
from assistant.vocabulary import Vocabulary
from retrieval.catalog_schema import CatalogSchema

ENV_MODEL = "CIRCHAT_LLM"
ENV_KWARGS = "CIRCHAT_LLM_KWARGS"
MAX_EDITS = 6
MAX_FREE_TEXT = 3
Command = Literal["none", "undo", "start_over", "none_of_these"]


class Edit(BaseModel):
    """One attribute change the shopper asked for."""

    attribute: str
    value: str


class MessageParse(BaseModel):
    """A shopper's chat message about the item they are searching for."""

    command: Command = Field("none", description="undo the last change, start the search over, or reject all shown "
                                                 "items")
    edits: list[Edit] = Field(default_factory=list, description="attribute changes, in the order said")
    free_text: list[str] = Field(default_factory=list,
                                 description="requests that fit no attribute, in the shopper's words")


def message_model(schema: CatalogSchema) -> type[MessageParse]:
    """The structured output the model must fill for this catalog: its attributes as the only allowed names."""
    names = tuple(schema.attribute_names) or ("none",)
    relative = sorted({r.word for a in schema.attributes for r in a.relative})
    hint = "one of the allowed values for the attribute" + (
        f", or a one-step change ({', '.join(relative)}) for ordered attributes" if relative else "")
    edit = create_model("Edit", __base__=Edit, __doc__=Edit.__doc__,
                        attribute=(Literal[names], ...), value=(str, Field(description=hint)))
    return create_model("MessageParse", __base__=MessageParse, __doc__=MessageParse.__doc__,
                        edits=(list[edit], Field(default_factory=list, description="attribute changes, in the "
                                                                                      "order said")))


def system_prompt(schema: CatalogSchema) -> str:
    """The instructions the model gets: the catalog vocabulary and the output rules."""
    lines = []
    for attribute in schema.attributes:
        values = ", ".join(attribute.value_names)
        order = " (ordered; " + ", ".join(r.word for r in attribute.relative) + " move one step)" \
            if attribute.ordered and attribute.relative else ""
        lines.append(f"- {attribute.name}: {values}{order}")
    vocabulary = "\n".join(lines) or "- (this catalog has no attributes: use free_text)"
    examples = []
    for attribute in sorted(schema.attributes, key=lambda a: a.name == schema.category):
        for language in schema.languages:
            said = next(((v.synonyms[language][0], v.name) for v in attribute.values if v.synonyms.get(language)),
                        None)
            if said is not None:
                examples.append(f"{said[0]} -> {said[1]}")
    examples = examples[:4 * len(schema.languages)]
    synonyms = f" (e.g. {', '.join(examples)})" if examples else ""
    spoken = ", ".join(schema.languages)
    return (
        f"You turn a shopper's chat message into structured edits for an image search over {schema.describe({})}"
        f" catalog.\nAttributes and their allowed values:\n{vocabulary}\n"
        f"The message may be in any of these languages ({spoken}) or mix them; Japanese has no spaces between words. "
        f"Always answer with the allowed values above, whatever the language of the message. "
        f"Map synonyms to allowed values{synonyms}. Negation says what is wanted instead (\"no stripes\", "
        "ストライプなし -> the pattern's plain value; 赤じゃなくて青 -> only the second value). "
        "Anything else the shopper wants goes to free_text unchanged, in the shopper's words and language. "
        "Commands: 'undo' (undo, 元に戻して), 'start_over' (start over, 最初から), 'none_of_these' (rejects the items "
        "shown: none of these, どれも違う); otherwise 'none'."
    )


def to_parsed(answer: MessageParse | Mapping[str, Any], known: Mapping[str, str], vocabulary: Vocabulary) -> Parsed:
    """The model's answer as a ``Parsed``, every value checked against the catalog's vocabulary.

    Whatever the message told the model, its answer can only become a command from ``COMMANDS`` and a
    bounded list of edits and cleaned, length-capped free text: never filters, another session, or the log.
    """
    schema = vocabulary.schema
    answer = answer if isinstance(answer, MessageParse) else message_model(schema).model_validate(answer)
    instructions: list[Instruction] = []
    unavailable = []
    for edit in answer.edits[:MAX_EDITS]:
        attribute = schema.attribute(edit.attribute)
        value = edit.value.strip()
        if attribute is not None and (attribute.value(value) is not None or attribute.relative_word(value.lower())):
            word = value.lower() if attribute.relative_word(value.lower()) else value
            instructions.append(slot(schema, attribute.name, word, said=edit.value, known=known))
        else:
            parsed = parse_rules(edit.value, vocabulary, known)
            instructions.extend(parsed.instructions)
            unavailable.extend(parsed.unavailable)
    instructions = instructions[:MAX_EDITS]
    instructions.extend(Instruction.free(clean_text(t)) for t in answer.free_text[:MAX_FREE_TEXT] if clean_text(t))
    command = answer.command if answer.command in COMMANDS else None
    return Parsed(command=command, instructions=instructions, source="llm", unavailable=unavailable)


class LLMParser:
    """Parses with a langchain-core chat model; the rules answer whenever the model cannot."""

    name = "llm"

    def __init__(self, chat_model: Any, vocabulary: Vocabulary):
        self.chat_model = chat_model
        self.vocabulary = vocabulary
        self.structured = chat_model.with_structured_output(message_model(vocabulary.schema))

    def parse(self, text: str, known: Mapping[str, str] | None = None) -> Parsed:
        known = dict(known or {})
        message = clean_text(text)
        try:
            answer = self.structured.invoke([("system", system_prompt(self.vocabulary.schema)), ("human", message)])
            if answer is None:
                raise ValueError("the model returned nothing")
            return to_parsed(answer, known, self.vocabulary)
        except Exception as err:
            parsed = parse_rules(message, self.vocabulary, known)
            parsed.note = f"LLM parser failed ({type(err).__name__}: {err}); used the rules"
            return parsed


def load_chat_model(spec: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """A chat model from ``module:Factory`` (or ``provider:model`` through ``langchain.init_chat_model``)."""
    kwargs = dict(kwargs or {})
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute) if attribute else None
    except (ImportError, AttributeError):
        factory = None
    if factory is not None:
        return factory(**kwargs)
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ValueError(f"cannot load chat model {spec!r}: not an importable module:Factory, and the "
                         f"`langchain` package (for provider:model names) is not installed") from None
    return init_chat_model(spec, **kwargs)


def make_parser(vocabulary: Vocabulary, spec: str | None = None, kwargs_json: str | None = None
                ) -> RuleParser | LLMParser:
    """The configured parser for a catalog: an ``LLMParser`` when a model is named (flag or env), else the rules."""
    spec = spec or os.environ.get(ENV_MODEL)
    if not spec:
        return RuleParser(vocabulary)
    kwargs = json.loads(kwargs_json or os.environ.get(ENV_KWARGS) or "{}")
    return LLMParser(load_chat_model(spec, kwargs), vocabulary)
