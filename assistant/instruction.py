"""One instruction in force: what the user said, the attribute slot it fills, and the words the model reads.

Slotted instructions are rendered in the catalog schema's phrasing for the edit
("make it blue", "with short sleeves"), so "actually red" reaches the model as
"make it red". Free text (words the rules could not slot) is passed on
verbatim, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from retrieval.catalog_schema import CatalogSchema


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction; ``attribute`` is None for free text, ``relative`` for one step along an order.

    ``message`` is the whole message it came from as the user typed it (in any language), for the pick log.
    """

    text: str
    attribute: str | None = None
    value: str | None = None
    said: str = ""
    chip: str = ""
    relative: bool = False
    message: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """The chip shown to the user."""
        if self.attribute is None:
            return f"“{self.text}”"
        return self.chip or str(self.value)

    def to_dict(self) -> dict[str, str | None]:
        """The logged form: the words the model read, the canonical slot and value, and what the user said."""
        fields = {"text": self.text, "attribute": self.attribute, "value": self.value, "said": self.said}
        return {**fields, "message": self.message} if self.message else fields

    @classmethod
    def free(cls, text: str, said: str = "") -> Instruction:
        return cls(text=text, said=said or text)


def slot(schema: CatalogSchema, attribute: str, value: str, said: str = "",
         known: Mapping[str, str] | None = None) -> Instruction:
    """A slotted instruction; a relative edit ("shorter") becomes absolute when the current value is known."""
    found = schema.attribute(attribute)
    if found is None:
        raise ValueError(f"unknown attribute {attribute!r} (one of {', '.join(schema.attribute_names)})")
    relative = found.relative_word(value) is not None
    if relative:
        absolute = found.step((known or {}).get(attribute), value)
        if absolute is not None:
            value, relative = absolute, False
    else:
        carried = found.value(value)
        if carried is None:
            raise ValueError(f"{value!r} is not a {attribute} of this catalog (one of {', '.join(found.value_names)})")
        value = carried.name
    return Instruction(text=found.edit_phrase(value), attribute=attribute, value=value, said=said,
                       chip=found.label(value), relative=relative)
