"""Rule-based instruction parsing: a chat message -> a command and slotted or free-text instructions.

The rules cover the catalog's own vocabulary (``assistant.vocabulary``, compiled
from its ``schema.json``) with the synonyms shoppers use ("navy blue", "polka
dots", "no sleeves", "maxi") and relative edits along ordered attributes
("shorter", "longer sleeves", "bigger"). A value of a known kind that the
catalog does not carry ("grey" in a shop without grey) is reported, not searched
for. Words the rules cannot place are kept as free text in their original order,
so the model still reads them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from assistant.instruction import Instruction, slot
from assistant.vocabulary import Meaning, Vocabulary

MAX_CHARS = 400
UNDO, START_OVER, NONE_OF_THESE = "undo", "start_over", "none_of_these"
COMMANDS = (UNDO, START_OVER, NONE_OF_THESE)

NEGATORS = ("no", "not", "without", "remove", "lose", "drop", "minus", "non", "get rid of", "cut off", "take off",
            "take away", "don't want", "dont want", "do not want", "less", "rather than", "instead of", "other than",
            "but not", "anything but")
FILLER = frozenset((
    "a", "an", "the", "it", "its", "it's", "this", "that", "these", "those", "one", "ones", "thing", "something",
    "make", "makes", "made", "making", "i", "i'd", "i'm", "im", "id", "me", "my", "we", "us", "our", "you", "your",
    "want", "wanted", "wants", "would", "like", "prefer", "preferably", "please", "pls", "could", "can", "may",
    "might", "show", "find", "get", "give", "version", "same", "instead", "actually", "rather", "in", "with", "to",
    "of", "for", "on", "at", "change", "changed", "switch", "turn", "colour", "color", "more", "much", "bit",
    "little", "maybe", "just", "is", "be", "are", "was", "looking", "look", "looks", "need", "some", "also", "now",
    "again", "let's", "lets", "try", "put", "add", "have", "has", "oh", "ok", "okay", "sorry", "wait", "yes", "yeah",
    "hmm", "um", "kind", "sort", "very", "really", "quite", "so", "too", "all", "over", "them", "they", "do", "does",
    "go", "got", "should", "how", "about", "what", "if", "into", "as", "see", "but", "then", "and", "or", "thanks",
    "thank", "than", "style", "one's", "length", "neckline", "neck", "cut", "shape", "even", "slightly",
    "lot", "way",
))
SEPARATORS = frozenset({",", ".", ";", ":", "!", "?", "、", "。", "and", "but", "then", "also", "plus", "&", "+",
                        "or"})
COMMAND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (UNDO, re.compile(r"^(?:undo(?: that| it| the last(?: one| change)?)?|go back|back|revert(?: that)?|"
                      r"take (?:that|it) back)\b(?:$|[,.;:!-]+\s*)")),
    (START_OVER, re.compile(r"^(?:start (?:over|again|afresh|from scratch)|restart|reset|new search|clear(?: all)?|"
                            r"begin again|from scratch|forget (?:it|that|everything))\b(?:$|[,.;:!-]+\s*)")),
    (NONE_OF_THESE, re.compile(r"^(?:none of (?:these|those|them|the above)(?: (?:work|are right|fit))?|none|"
                               r"not (?:these|those|any of (?:these|them))|neither|nothing here|no good|"
                               r"show me (?:others|other ones|something else|different ones|more)|something else|"
                               r"i (?:do not|don'?t) like (?:these|those|any(?: of (?:these|them|those))?))"
                               r"\b(?:$|[,.;:!-]+\s*)")),
)
TOKEN = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[,.;:!?&+、。]|[\u2600-\u27bf\U0001f000-\U0001faff]")


@dataclass(frozen=True)
class Unavailable:
    """A value the shopper asked for that the catalog does not carry, and the nearest ones it does."""

    attribute: str
    value: str
    said: str
    closest: tuple[str, ...] = ()

    def message(self) -> str:
        closest = f"; closest: {', '.join(self.closest)}" if self.closest else ""
        return f"No {self.value} items here{closest}."


@dataclass
class Parsed:
    """A message understood: an optional command, then instructions in the order said."""

    command: str | None = None
    instructions: list[Instruction] = field(default_factory=list)
    source: str = "rules"
    note: str | None = None
    unavailable: list[Unavailable] = field(default_factory=list)


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """User text, normalised and length-capped, control characters removed."""
    text = unicodedata.normalize("NFKC", (text or "")[: max_chars * 4])
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:max_chars]


NEGATOR_PHRASES = frozenset(tuple(n.split()) for n in NEGATORS)
LONGEST_NEGATOR = max(len(n) for n in NEGATOR_PHRASES)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with hyphenated words split into their parts, punctuation kept."""
    tokens = []
    for token in TOKEN.findall(text.lower()):
        tokens.extend(token.split("-") if "-" in token else [token])
    return tokens


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


def _matches(clause: list[str], vocabulary: Vocabulary, known: Mapping[str, str]) -> tuple[list[_Match], set[int]]:
    """Vocabulary matches (longest first, left to right) and the positions of negating words."""
    matches, negators, i, pending = [], set(), 0, False
    longest = max(vocabulary.longest, LONGEST_NEGATOR)
    while i < len(clause):
        for n in range(min(longest, len(clause) - i), 0, -1):
            window = tuple(clause[i:i + n])
            meanings = vocabulary.meanings(window)
            if window in NEGATOR_PHRASES and (n > 1 or not meanings):
                negators.update(range(i, i + n))
                pending = True
                i += n
                break
            if meanings:
                matches.append(_Match(i, i + n, vocabulary.choose(meanings, known), negated=pending))
                pending = False
                i += n
                break
        else:
            i += 1
    return matches, negators


@dataclass
class _Clause:
    instructions: list[Instruction]
    unavailable: list[Unavailable]
    negated: dict[int, str]


def _parse_clause(clause: list[str], vocabulary: Vocabulary, known: Mapping[str, str]) -> _Clause:
    matches, negators = _matches(clause, vocabulary, known)
    out = _Clause([], [], {})
    cursor = 0

    def free_span(start: int, end: int) -> None:
        words = clause[start:end]
        if any(w not in FILLER and w not in vocabulary.attribute_words and i + start not in negators
               for i, w in enumerate(words)):
            out.instructions.append(Instruction.free(" ".join(words)))

    for m in matches:
        said = " ".join(clause[cursor:m.end]) if m.negated else " ".join(clause[m.start:m.end])
        free_span(cursor, m.start if not m.negated else _negation_start(clause, cursor, m.start, negators))
        cursor = m.end
        attribute, value = m.meaning.attribute, m.meaning.value
        if not m.meaning.carried:
            if not m.negated:
                out.unavailable.append(Unavailable(attribute, str(value), said,
                                                   tuple(vocabulary.closest(attribute, str(value)))))
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
        out.instructions.append(slot(vocabulary.schema, attribute, value, said=said, known=known))
    free_span(cursor, len(clause))
    return out


def _negation_start(clause: list[str], start: int, end: int, negators: set[int]) -> int:
    return next((i for i in range(start, end) if i in negators), end)


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

    A negated value with nothing to stand for ("not green") is dropped when the same message asks for another value
    of that attribute ("not green — orange" gives orange); alone, it stays as free text.
    """
    known = dict(known or {})
    command, rest = match_command(clean_text(text))
    clauses = [_parse_clause(c, vocabulary, known) for c in _clauses(tokenize(rest))]
    slotted = {i.attribute for c in clauses for i in c.instructions if i.attribute is not None}
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
