"""One instruction in force: what the user said, the attribute slot it fills, and the words the model reads.

Slotted instructions are rendered in the phrasing the stage-2 adapters were
trained on ("make it blue", "with short sleeves"), so "actually red" reaches the
model as "make it red". Free text (words the rules could not slot) is passed on
verbatim, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from training.world import ATTRIBUTES, NONE, VALUES

RELATIVE = ("shorter", "longer")
ORDERS: dict[str, tuple[str, ...]] = {"length": VALUES["length"], "sleeve": VALUES["sleeve"]}
CAPTION_ORDER = ("colour", "pattern", "length", "sleeve", "neckline", "category")
PATTERN_NOUN = {"striped": "stripes", "dotted": "polka dots", "checked": "checks"}
NECK_NOUN = {"v-neck": "a v-neck", "crew-neck": "a crew neck"}
UNANCHORED = {("length", "shorter"): "short", ("length", "longer"): "long",
              ("sleeve", "shorter"): "short-sleeve", ("sleeve", "longer"): "long-sleeve"}
SLEEVE_WORD = {"short-sleeve": "short sleeves", "long-sleeve": "long sleeves", "sleeveless": "sleeveless"}


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction; ``attribute`` is None for free text."""

    text: str
    attribute: str | None = None
    value: str | None = None
    said: str = ""

    @property
    def relative(self) -> bool:
        return self.value in RELATIVE

    @property
    def label(self) -> str:
        """The chip shown to the user."""
        if self.attribute is None:
            return f"“{self.text}”"
        if self.relative:
            return f"{self.value} sleeves" if self.attribute == "sleeve" else str(self.value)
        if self.attribute == "sleeve":
            return SLEEVE_WORD[str(self.value)]
        if self.attribute == "pattern" and self.value == "solid":
            return "plain"
        return str(self.value)

    def to_dict(self) -> dict[str, str | None]:
        return {"text": self.text, "attribute": self.attribute, "value": self.value, "said": self.said}

    @classmethod
    def free(cls, text: str, said: str = "") -> Instruction:
        return cls(text=text, said=said or text)


def model_phrase(attribute: str, value: str) -> str:
    """The training-template phrasing of an edit, the wording the composer understands best."""
    if value in RELATIVE:
        return f"{value} sleeves" if attribute == "sleeve" else value
    if attribute == "pattern":
        return "make it plain" if value == "solid" else f"with {PATTERN_NOUN[value]}"
    if attribute == "sleeve":
        return "make it sleeveless" if value == "sleeveless" else f"with {SLEEVE_WORD[value]}"
    if attribute == "neckline":
        return f"with {NECK_NOUN[value]}"
    if attribute == "category":
        return f"make it a {value}"
    return f"make it {value}"


def slot(attribute: str, value: str, said: str = "", known: Mapping[str, str] | None = None) -> Instruction:
    """A slotted instruction; a relative edit ("shorter") becomes absolute when the current value is known."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}")
    if value in RELATIVE:
        value = resolve_relative(attribute, value, (known or {}).get(attribute)) or value
    elif value not in VALUES[attribute]:
        raise ValueError(f"{value!r} is not a {attribute} (one of {', '.join(VALUES[attribute])})")
    return Instruction(text=model_phrase(attribute, value), attribute=attribute, value=value, said=said)


def resolve_relative(attribute: str, direction: str, current: str | None) -> str | None:
    """One step shorter or longer than ``current`` along the attribute's order, if it is known."""
    order = ORDERS.get(attribute)
    if order is None or current not in order:
        return None
    step = -1 if direction == "shorter" else 1
    return order[min(max(order.index(current) + step, 0), len(order) - 1)]


def caption_phrase(values: Mapping[str, str]) -> str:
    """Slot values as catalog-caption words ("a red striped dress"), for turns without a reference."""
    words = []
    for attribute in CAPTION_ORDER:
        value = values.get(attribute)
        value = UNANCHORED.get((attribute, value), value)
        if not value or value == NONE or value in RELATIVE:
            continue
        if attribute == "pattern" and value == "solid" and len(values) > 1:
            continue
        words.append(value)
    if "category" not in values:
        words.append("garment")
    article = "an" if words[0][0] in "aeiou" else "a"
    return f"{article} " + " ".join(words)
