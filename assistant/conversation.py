"""The state of one shopping conversation: reference, instructions in force, undo history, rejections, picks.

Rules (also in docs/assistant.md):

* Instructions accumulate on the current reference and are all composed with it
  every turn (composing from the first reference with every instruction beat
  composing from the last results with only the newest one; errors carry).
* A later instruction on an attribute replaces the earlier one ("make it blue"
  ... "actually red" leaves only red); free text is kept in order.
* Picking a shown item makes it the new reference and the instructions restart
  from it: the pick already shows what the earlier instructions asked for.
* A new photo is a new reference, and the instructions restart too.
* "none of these" hides every shown item from later results until start over.
* Every change is one undo step; "start over" is one too.

No Gradio here: the UI keeps one ``Conversation`` per browser session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from assistant.instruction import Instruction
from assistant.messages import DEFAULT_LANGUAGE, examples, text
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, Parsed
from retrieval.catalog_schema import CatalogSchema

MAX_HISTORY = 100


@dataclass(frozen=True)
class Reference:
    """The image the instructions modify: a catalog item or an uploaded photo (by content hash)."""

    kind: str
    key: str
    path: str
    label: str
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def query(self) -> str:
        """What ``search_catalog`` accepts: the catalog id, or the sanitised upload's file."""
        return self.key if self.kind == "catalog" else self.path

    @classmethod
    def catalog(cls, item: ShownItem, schema: CatalogSchema) -> Reference:
        return cls("catalog", item.id, item.path, f"ref #{item.id}", schema.known_values(item.metadata))

    @classmethod
    def upload(cls, sha256: str, path: str) -> Reference:
        return cls("upload", sha256, path, "your photo")

    def shown(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The reference's chip for a user of ``language`` (ref #123, 基準 #123)."""
        if language == DEFAULT_LANGUAGE:
            return self.label
        return text(language, "reference", id=self.key) if self.kind == "catalog" else text(language, "your_photo")


@dataclass(frozen=True)
class ShownItem:
    """A result as the user saw it: its rank (1-based), score, image and catalog metadata."""

    id: str
    rank: int
    score: float
    path: str
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "rank": self.rank, "score": round(float(self.score), 6)}


@dataclass(frozen=True)
class Snapshot:
    """The undoable part of the state."""

    reference: Reference | None = None
    instructions: tuple[Instruction, ...] = ()
    rejected: frozenset[str] = frozenset()


@dataclass
class PickEvent:
    """A pick with the state that produced it, captured before the pick moves the reference."""

    item: ShownItem
    reference: Reference | None
    instructions: list[Instruction]
    said: list[str]
    composed_text: str | None
    mode: str | None
    where: str | None
    shown: list[ShownItem]
    turns: int
    language: str = DEFAULT_LANGUAGE


def with_instruction(snapshot: Snapshot, instruction: Instruction, schema: CatalogSchema) -> Snapshot:
    """``snapshot`` plus one instruction: same attribute replaces, free text appends once; an attribute that does
    not apply to the category in force is ignored, and a new category drops the instructions that do not apply."""
    kept = list(snapshot.instructions)
    if instruction.attribute is not None and instruction.attribute != schema.category:
        category = next((str(i.value) for i in reversed(kept) if i.attribute == schema.category and not i.relative),
                        None)
        if category is None and snapshot.reference is not None and schema.category:
            category = snapshot.reference.attributes.get(schema.category)
        if not schema.applies(instruction.attribute, category):
            return snapshot
    if instruction.attribute is None:
        if any(i.attribute is None and i.text == instruction.text for i in kept):
            return snapshot
    else:
        kept = [i for i in kept if i.attribute != instruction.attribute]
        if instruction.attribute == schema.category and not instruction.relative:
            kept = [i for i in kept if i.attribute is None or schema.applies(i.attribute, instruction.value)]
    return replace(snapshot, instructions=(*kept, instruction))


@dataclass
class Conversation:
    """One session's state machine; every method is a user action."""

    session_id: str
    schema: CatalogSchema = field(default_factory=CatalogSchema, repr=False)
    state: Snapshot = field(default_factory=Snapshot)
    history: list[Snapshot] = field(default_factory=list)
    shown: list[ShownItem] = field(default_factory=list)
    last_query: str | None = None
    last_mode: str | None = None
    last_where: str | None = None
    turns: int = 0
    picks: list[ShownItem] = field(default_factory=list)
    shortlist: dict[str, ShownItem] = field(default_factory=dict)
    language: str = DEFAULT_LANGUAGE

    @property
    def reference(self) -> Reference | None:
        return self.state.reference

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return self.state.instructions

    @property
    def rejected(self) -> frozenset[str]:
        return self.state.rejected

    @property
    def searchable(self) -> bool:
        return self.reference is not None or bool(self.instructions)

    def known(self) -> dict[str, str]:
        """Current attribute values: the reference's, overridden by absolute instructions in force."""
        values = dict(self.reference.attributes) if self.reference else {}
        for i in self.instructions:
            if i.attribute is not None and not i.relative:
                values[i.attribute] = str(i.value)
        return values

    def _push(self, new: Snapshot) -> bool:
        if new == self.state:
            return False
        self.history = [*self.history, self.state][-MAX_HISTORY:]
        self.state = new
        return True

    def apply(self, parsed: Parsed, upload: Reference | None = None) -> bool:
        """Apply a parsed message (and an optional new photo) as one undo step; True if anything changed."""
        changed = False
        if parsed.command == UNDO:
            changed = self.undo()
        new = self.state
        if parsed.command == START_OVER:
            new = Snapshot()
            self.turns = 0
        elif parsed.command == NONE_OF_THESE:
            new = replace(new, rejected=new.rejected | {s.id for s in self.shown})
        if upload is not None:
            new = Snapshot(reference=upload, rejected=new.rejected)
        for instruction in parsed.instructions:
            new = with_instruction(new, instruction, self.schema)
        changed = self._push(new) or changed
        if upload is not None or parsed.instructions or parsed.command == NONE_OF_THESE:
            self.turns += 1
        return changed

    def undo(self) -> bool:
        """Go back one step; False when there is nothing to undo."""
        if not self.history:
            return False
        self.state = self.history[-1]
        self.history = self.history[:-1]
        return True

    def start_over(self) -> bool:
        self.turns = 0
        return self._push(Snapshot())

    def reject_shown(self) -> int:
        """Hide every shown item from later results; returns how many were newly rejected."""
        new = {s.id for s in self.shown} - self.rejected
        if new:
            self._push(replace(self.state, rejected=self.rejected | new))
            self.turns += 1
        return len(new)

    def record_results(self, query: str | None, mode: str | None, where: str | None,
                       hits: Sequence[ShownItem]) -> None:
        """Remember what the user is looking at, for picks, rejections and the log."""
        self.last_query, self.last_mode, self.last_where = query, mode, where
        self.shown = list(hits)

    def find_shown(self, item_id: str) -> ShownItem | None:
        return next((s for s in self.shown if s.id == item_id), None)

    def pick(self, item: ShownItem) -> PickEvent:
        """Make ``item`` the reference (instructions restart) and return what the triplet log records."""
        event = PickEvent(item=item, reference=self.reference, instructions=list(self.instructions),
                          said=self.query()[1], composed_text=self.last_query, mode=self.last_mode,
                          where=self.last_where, shown=list(self.shown), turns=self.turns, language=self.language)
        self._push(Snapshot(reference=Reference.catalog(item, self.schema), rejected=self.rejected))
        self.picks.append(item)
        self.turns = 0
        return event

    def query(self) -> tuple[str | None, list[str]]:
        """(reference for ``search_catalog``, instructions it composes), per the rules above."""
        if self.reference is not None:
            return self.reference.query, [i.text for i in self.instructions]
        slots = {i.attribute: str(i.value) for i in self.instructions if i.attribute is not None}
        free = [i.text for i in self.instructions if i.attribute is None]
        return None, ([self.schema.describe(slots)] if slots else []) + free

    def chips(self, language: str | None = None) -> list[str]:
        """The parsed state as short labels in the user's language: reference first, then instructions in order."""
        language = language or self.language
        head = [self.reference.shown(language)] if self.reference else []
        return head + [self.chip(i, language) for i in self.instructions]

    def chip(self, instruction: Instruction, language: str) -> str:
        """One instruction's label: the value's display name in ``language`` (半袖), free text quoted."""
        if language == DEFAULT_LANGUAGE:
            return instruction.label
        if instruction.attribute is None:
            return text(language, "quote", text=instruction.text)
        found = self.schema.attribute(instruction.attribute)
        return found.label(str(instruction.value), language) if found is not None else instruction.label

    def describe(self, language: str | None = None) -> str:
        """The visible state line: ``searching for: ref #123 + blue + short sleeves`` (検索条件：基準 #123 + 青…)."""
        language = language or self.language
        if not self.searchable:
            return text(language, "searching_nothing", example=self.example(language))
        line = text(language, "searching_for") + " + ".join(self.chips(language))
        if self.rejected:
            line += text(language, "hiding_state", n=len(self.rejected))
        return line

    def example(self, language: str | None = None) -> str:
        """What to describe when nothing is asked yet: the catalog's noun in English (a garment), an example
        description in a language the captions are not in (ベージュの無地のワンピース)."""
        language = language or self.language
        if language == DEFAULT_LANGUAGE:
            return self.schema.describe({})
        return examples(self.schema, language)[0]

    def add_to_shortlist(self, item: ShownItem) -> bool:
        if item.id in self.shortlist:
            return False
        self.shortlist[item.id] = item
        return True

    def remove_from_shortlist(self, item_id: str) -> bool:
        return self.shortlist.pop(item_id, None) is not None

