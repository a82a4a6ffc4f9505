"""Rule-based instruction parsing: a chat message -> a command and slotted or free-text instructions.

The rules cover the catalog's own vocabulary (``assistant.vocabulary``, compiled
from its ``schema.json``) with the synonyms shoppers use ("navy blue", "polka
dots", "no sleeves", "maxi") and relative edits along ordered attributes
("shorter", "longer sleeves", "bigger"). A value of a known kind that the
catalog does not carry ("grey" in a shop without grey) is reported, not searched
for. Words the rules cannot place are kept as free text in their original order,
so the model still reads them.

Every language of ``assistant.grammar`` is read at once, so a message may mix
them: English negation comes before a value ("no stripes"), Japanese after it
(ストライプなし, 赤じゃなくて青), and Japanese, written without spaces, is matched
character by character (``assistant.tokens``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from assistant import messages
from assistant.grammar import GRAMMARS, NONE_OF_THESE, START_OVER, UNDO
from assistant.instruction import Instruction, slot
from assistant.tokens import join_tokens, language_of, tokenize
from assistant.vocabulary import Meaning, Vocabulary
from retrieval.catalog_schema import CatalogSchema

MAX_CHARS = 400
COMMANDS = (UNDO, START_OVER, NONE_OF_THESE)
NEGATOR_PHRASES = frozenset(tuple(tokenize(n)) for g in GRAMMARS for n in g.negators)
POSTFIX_NEGATOR_PHRASES = frozenset(tuple(tokenize(n)) for g in GRAMMARS for n in g.postfix_negators)
FILLER_PHRASES = frozenset(tuple(tokenize(w)) for g in GRAMMARS for w in g.filler)
SEPARATORS = frozenset(s for g in GRAMMARS for s in g.separators)
COMMAND_PATTERNS = tuple(pattern for g in GRAMMARS for pattern in g.commands)
LONGEST_FUNCTION_PHRASE = max(len(p) for p in NEGATOR_PHRASES | POSTFIX_NEGATOR_PHRASES | FILLER_PHRASES)


@dataclass(frozen=True)
class Unavailable:
    """A value the shopper asked for that the catalog does not carry, and the nearest ones it does."""

    attribute: str
    value: str
    said: str
    closest: tuple[str, ...] = ()
    display: Mapping[str, str] = field(default_factory=dict, compare=False)

    def message(self, language: str = messages.DEFAULT_LANGUAGE, schema: CatalogSchema | None = None) -> str:
        """"No grey items here; closest: black, navy", the values named as a user of ``language`` reads them."""
        closest = list(self.closest)
        if schema is not None:
            closest = messages.value_names(schema, self.attribute, closest, language)
        separator = messages.text(language, "list_separator")
        listed = messages.text(language, "closest", values=separator.join(closest)) if closest else ""
        return messages.text(language, "unavailable", value=self.display.get(language) or self.value, closest=listed)


@dataclass
class Parsed:
    """A message understood: an optional command, then instructions in the order said."""

    command: str | None = None
    instructions: list[Instruction] = field(default_factory=list)
    source: str = "rules"
    note: str | None = None
    unavailable: list[Unavailable] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """User text, normalised and length-capped, control characters removed."""
    text = unicodedata.normalize("NFKC", (text or "")[: max_chars * 4])
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:max_chars]


def _clauses(tokens: list[str]) -> list[list[str]]:
    clauses, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            if current:
                clauses.append(current)
            current = []
        else:
            current.append(token)
    if current:
        clauses.append(current)
    return clauses


@dataclass
class _Match:
    start: int
    end: int
    meaning: Meaning
    negated: bool = False
    said_from: int | None = None


@dataclass
class _Reading:
    """A clause as the matcher read it: vocabulary matches, and the positions of negating and filler words."""

    matches: list[_Match]
    negators: set[int]
    filler: set[int]


def _matches(clause: list[str], vocabulary: Vocabulary, known: Mapping[str, str]) -> _Reading:
    """Vocabulary matches, longest first and left to right, with negation before (no red) or after (赤じゃなくて)."""
    read = _Reading([], set(), set())
    i, pending = 0, False
    longest = max(vocabulary.longest, LONGEST_FUNCTION_PHRASE)
    while i < len(clause):
        for n in range(min(longest, len(clause) - i), 0, -1):
            window = tuple(clause[i:i + n])
            meanings = vocabulary.meanings(window)
            if window in NEGATOR_PHRASES and (n > 1 or not meanings):
                read.negators.update(range(i, i + n))
                pending = True
            elif window in POSTFIX_NEGATOR_PHRASES and not meanings:
                read.negators.update(range(i, i + n))
                last = read.matches[-1] if read.matches else None
                if last is not None and not last.negated and set(range(last.end, i)) <= read.filler:
                    last.negated, last.said_from, last.end = True, last.start, i + n
            elif meanings:
                read.matches.append(_Match(i, i + n, vocabulary.choose(meanings, known), negated=pending))
                pending = False
            elif window in FILLER_PHRASES or window in vocabulary.attribute_phrases:
                read.filler.update(range(i, i + n))
            else:
                continue
            i += n
            break
        else:
            i += 1
    return read


def _attach_generic_words(read: _Reading, vocabulary: Vocabulary) -> list[_Match]:
    """An attribute named just before a relative word takes it (袖を短く, the sleeves a bit longer); an attribute
    named beside one of its values says nothing more (袖を長袖に)."""
    merged: list[_Match] = []
    for m in read.matches:
        before = merged[-1] if merged else None
        generic = before is not None and before.meaning.value is None and not before.negated
        if generic and m.meaning.value is not None and not m.negated \
                and set(range(before.end, m.start)) <= read.filler | read.negators:
            attribute = vocabulary.schema.attribute(before.meaning.attribute)
            if attribute is not None and attribute.relative_word(m.meaning.value) is not None:
                merged[-1] = _Match(before.start, m.end, Meaning(attribute.name, m.meaning.value))
                continue
        merged.append(m)
    named = {m.meaning.attribute for m in merged if m.meaning.value is not None}
    kept = [m for m in merged if m.negated or m.meaning.value is not None or m.meaning.attribute not in named]
    for m in merged:
        if m not in kept:
            read.filler.update(range(m.start, m.end))
    return kept


@dataclass
class _Clause:
    instructions: list[Instruction]
    unavailable: list[Unavailable]
    negated: dict[int, str]


def _parse_clause(clause: list[str], vocabulary: Vocabulary, known: Mapping[str, str]) -> _Clause:
    read = _matches(clause, vocabulary, known)
    matches = _attach_generic_words(read, vocabulary)
    skipped = read.filler | read.negators
    out = _Clause([], [], {})
    cursor = 0

    def free_span(start: int, end: int) -> None:
        words = clause[start:end]
        if any(w not in vocabulary.attribute_words and i + start not in skipped for i, w in enumerate(words)):
            out.instructions.append(Instruction.free(join_tokens(words)))

    for m in matches:
        prefixed = m.negated and m.said_from is None
        said = join_tokens(clause[(cursor if prefixed else m.start):m.end])
        free_span(cursor, _negation_start(cursor, m.start, read.negators) if prefixed else m.start)
        cursor = m.end
        attribute, value = m.meaning.attribute, m.meaning.value
        if not m.meaning.carried:
            if not m.negated:
                out.unavailable.append(Unavailable(attribute, str(value), said,
                                                   tuple(vocabulary.closest(attribute, str(value))),
                                                   vocabulary.display(attribute, str(value))))
            continue
        if m.negated:
            wanted = vocabulary.negated(attribute, value)
            if wanted is None and value is not None:
                kept = Instruction.free(said)
                out.negated[id(kept)] = attribute
                out.instructions.append(kept)
                continue
            value = wanted
        if value is None:
            out.instructions.append(Instruction.free(said))
            continue
        schema_attribute = vocabulary.schema.attribute(attribute)
        if schema_attribute is not None and schema_attribute.relative_word(value) is not None:
            attribute = vocabulary.relative_attribute(attribute, value, known)
        instruction = slot(vocabulary.schema, attribute, value, said=said, known=known)
        if m.negated:
            out.negated[id(instruction)] = attribute
        out.instructions.append(instruction)
    free_span(cursor, len(clause))
    return out


def _negation_start(start: int, end: int, negators: set[int]) -> int:
    return next((i for i in range(start, end) if i in negators), end)


def readable_part(words: str, languages: frozenset[str]) -> tuple[str, list[str]]:
    """Free text split by what a text tower reading ``languages`` can use: (the readable words, or "" when they are
    only filler; each run of words in another language)."""
    tokens = tokenize(words)
    readable: list[str] = []
    unread: list[list[str]] = []
    for i, token in enumerate(tokens):
        if language_of(token) in languages or token in SEPARATORS:
            readable.append(token)
        elif unread and i > 0 and language_of(tokens[i - 1]) == language_of(token):
            unread[-1].append(token)
        else:
            unread.append([token])
    if all((w,) in FILLER_PHRASES or w in SEPARATORS for w in readable):
        readable = []
    return join_tokens(readable), [join_tokens(run) for run in unread]


def match_command(text: str) -> tuple[str | None, str]:
    """A leading command ("undo", "start over", "none of these") and the rest of the message."""
    lowered = text.lower().strip()
    for command, pattern in COMMAND_PATTERNS:
        found = pattern.match(lowered)
        if found:
            return command, text.strip()[found.end():].strip(" ,.;!")
    return None, text


def parse_rules(text: str, vocabulary: Vocabulary, known: Mapping[str, str] | None = None) -> Parsed:
    """Parse a message with the rules; ``known`` holds the current attribute values for relative edits.

    A negated value is dropped when the same message asks for another value of that attribute ("not green —
    orange" gives orange, ストライプじゃなくて水玉 dotted); alone, it stands for what it can ("no stripes" is plain) or
    stays as free text ("not green").
    """
    known = dict(known or {})
    command, rest = match_command(clean_text(text))
    clauses = [_parse_clause(c, vocabulary, known) for c in _clauses(tokenize(rest))]
    slotted = {i.attribute for c in clauses for i in c.instructions
               if i.attribute is not None and id(i) not in c.negated}
    instructions = [i for c in clauses for i in c.instructions if c.negated.get(id(i)) not in slotted]
    unavailable = [u for c in clauses for u in c.unavailable]
    return Parsed(command=command, instructions=instructions, unavailable=unavailable)


class RuleParser:
    """The default parser: the rules, on one catalog's vocabulary."""

    name = "rules"

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary

    def parse(self, text: str, known: Mapping[str, str] | None = None) -> Parsed:
        return parse_rules(text, self.vocabulary, known)
