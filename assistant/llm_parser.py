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

from pydantic import BaseModel, Field

from assistant.instruction import Instruction, slot
from assistant.parser import COMMANDS, Parsed, clean_text, parse_rules
from training.world import ATTRIBUTES, VALUES

ENV_MODEL = "CIRCHAT_LLM"
ENV_KWARGS = "CIRCHAT_LLM_KWARGS"
MAX_EDITS = 6
MAX_FREE_TEXT = 3


class Edit(BaseModel):
    """One attribute change the shopper asked for."""

    attribute: Literal["category", "colour", "pattern", "sleeve", "length", "neckline"]
    value: str = Field(description="one of the allowed values for the attribute, or 'shorter'/'longer' for "
                                   "length and sleeve")


class MessageParse(BaseModel):
    """A shopper's chat message about the garment they are searching for."""

    command: Literal["none", "undo", "start_over", "none_of_these"] = Field(
        "none", description="undo the last change, start the search over, or reject all shown items")
    edits: list[Edit] = Field(default_factory=list, description="attribute changes, in the order said")
    free_text: list[str] = Field(default_factory=list,
                                 description="requests that fit no attribute, in the shopper's words")


def system_prompt() -> str:
    """The instructions the model gets: the catalog vocabulary and the output rules."""
    vocabulary = "\n".join(f"- {a}: {', '.join(VALUES[a])}" for a in ATTRIBUTES)
    return (
        "You turn a shopper's chat message into structured edits for a garment image search.\n"
        f"Attributes and their allowed values:\n{vocabulary}\n"
        "Use 'shorter' or 'longer' as the value for relative length or sleeve changes.\n"
        "Map synonyms to allowed values (navy blue -> navy, polka dots -> dotted, no sleeves -> sleeveless, "
        "plain -> solid). Anything else the shopper wants goes to free_text unchanged. "
        "Commands: 'undo', 'start_over', 'none_of_these' (rejects the items shown); otherwise 'none'."
    )


def to_parsed(answer: MessageParse | Mapping[str, Any], known: Mapping[str, str]) -> Parsed:
    """The model's answer as a ``Parsed``, every value checked against the vocabulary.

    Whatever the message told the model, its answer can only become a command from ``COMMANDS`` and a
    bounded list of edits and cleaned, length-capped free text: never filters, another session, or the log.
    """
    answer = answer if isinstance(answer, MessageParse) else MessageParse.model_validate(answer)
    instructions: list[Instruction] = []
    for edit in answer.edits[:MAX_EDITS]:
        value = edit.value.strip().lower()
        if value in VALUES[edit.attribute] or value in ("shorter", "longer"):
            instructions.append(slot(edit.attribute, value, said=edit.value, known=known))
        else:
            instructions.extend(parse_rules(edit.value, known).instructions)
    instructions = instructions[:MAX_EDITS]
    instructions.extend(Instruction.free(clean_text(t)) for t in answer.free_text[:MAX_FREE_TEXT] if clean_text(t))
    command = answer.command if answer.command in COMMANDS else None
    return Parsed(command=command, instructions=instructions, source="llm")


class LLMParser:
    """Parses with a langchain-core chat model; the rules answer whenever the model cannot."""

    name = "llm"

    def __init__(self, chat_model: Any):
        self.chat_model = chat_model
        self.structured = chat_model.with_structured_output(MessageParse)

    def parse(self, text: str, known: Mapping[str, str] | None = None) -> Parsed:
        known = dict(known or {})
        message = clean_text(text)
        try:
            answer = self.structured.invoke([("system", system_prompt()), ("human", message)])
            if answer is None:
                raise ValueError("the model returned nothing")
            return to_parsed(answer, known)
        except Exception as err:
            parsed = parse_rules(message, known)
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


def make_parser(spec: str | None = None, kwargs_json: str | None = None):
    """The configured parser: an ``LLMParser`` when a model is named (flag or env), else the rules."""
    from assistant.parser import RuleParser

    spec = spec or os.environ.get(ENV_MODEL)
    if not spec:
        return RuleParser()
    kwargs = json.loads(kwargs_json or os.environ.get(ENV_KWARGS) or "{}")
    return LLMParser(load_chat_model(spec, kwargs))
