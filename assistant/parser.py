"""Rule-based instruction parsing: a chat message -> a command and slotted or free-text instructions.

The rules cover the demo world's vocabulary (``training.world.VALUES``) with the
synonyms shoppers use ("navy blue", "polka dots", "no sleeves", "maxi") and
relative edits ("shorter", "longer sleeves"). Words the rules cannot place are
kept as free text in their original order, so the model still reads them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from assistant.instruction import Instruction, slot
from training.world import VALUES

MAX_CHARS = 400
UNDO, START_OVER, NONE_OF_THESE = "undo", "start_over", "none_of_these"
COMMANDS = (UNDO, START_OVER, NONE_OF_THESE)

SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "red": ("red", "scarlet", "crimson", "cherry", "cherry red", "bright red"),
        "maroon": ("maroon", "burgundy", "wine", "wine red", "dark red", "oxblood", "claret", "bordeaux"),
        "orange": ("orange", "tangerine", "burnt orange"),
        "yellow": ("yellow", "mustard", "lemon", "gold", "golden"),
        "green": ("green", "emerald", "lime", "olive", "forest green", "bottle green"),
        "teal": ("teal", "turquoise", "aqua", "petrol", "cyan"),
        "blue": ("blue", "light blue", "sky blue", "royal blue", "cobalt", "azure", "baby blue"),
        "navy": ("navy", "navy blue", "dark blue", "midnight blue"),
        "purple": ("purple", "violet", "lilac", "lavender", "plum", "mauve"),
        "pink": ("pink", "rose", "fuchsia", "magenta", "hot pink", "blush"),
        "beige": ("beige", "cream", "tan", "camel", "khaki", "sand", "nude", "stone"),
        "black": ("black", "jet black"),
    },
    "pattern": {
        "solid": ("solid", "plain", "solid colour", "solid color", "single colour", "single color", "block colour",
                  "one colour", "one color", "unpatterned", "plain colour", "plain color", "no pattern", "no print"),
        "striped": ("striped", "stripes", "stripe", "stripy", "stripey", "pinstripe", "pinstriped", "pin stripes",
                    "stripe pattern"),
        "dotted": ("dotted", "dots", "dot", "polka dots", "polka dot", "polka dotted", "polka", "spotted", "spots",
                   "spotty", "dotty"),
        "checked": ("checked", "checks", "check", "checkered", "chequered", "checkerboard", "plaid", "tartan",
                    "gingham"),
    },
    "sleeve": {
        "sleeveless": ("sleeveless", "no sleeves", "without sleeves", "tank", "strapless", "sleeve less"),
        "short-sleeve": ("short sleeves", "short sleeve", "short sleeved", "sleeves short", "half sleeves",
                         "cap sleeves", "short arms"),
        "long-sleeve": ("long sleeves", "long sleeve", "long sleeved", "sleeves long", "full sleeves",
                        "full length sleeves", "long arms"),
        "shorter": ("shorter sleeves", "shorter sleeve", "sleeves shorter"),
        "longer": ("longer sleeves", "longer sleeve", "sleeves longer"),
    },
    "length": {
        "short": ("short", "mini", "cropped", "above the knee"),
        "knee-length": ("knee length", "knee", "midi", "medium length", "mid length", "knee high", "to the knee"),
        "long": ("long", "maxi", "full length", "floor length", "ankle length", "to the floor"),
        "shorter": ("shorter",),
        "longer": ("longer",),
    },
    "neckline": {
        "v-neck": ("v neck", "vneck", "v necked", "v neckline", "v shaped neck", "deep v"),
        "crew-neck": ("crew neck", "crewneck", "round neck", "round neckline", "crew", "crew necked"),
    },
    "category": {
        "t-shirt": ("t shirt", "t shirts", "tshirt", "tshirts", "tee", "tees", "tee shirt", "shirt", "shirts", "top",
                    "tops"),
        "dress": ("dress", "dresses", "gown", "frock"),
        "skirt": ("skirt", "skirts"),
        "trousers": ("trousers", "trouser", "pants", "slacks", "chinos"),
    },
}
GENERIC = {"pattern": ("pattern", "patterns", "print", "prints", "patterned", "printed"),
           "sleeve": ("sleeves", "sleeve", "arms")}
NEGATORS = ("no", "not", "without", "remove", "lose", "drop", "minus", "non", "get rid of", "cut off", "take off",
            "take away", "don't want", "dont want", "do not want", "less")
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
    "thank", "than", "style", "one's", "length", "neckline", "neck", "cut", "shape",
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


@dataclass
class Parsed:
    """A message understood: an optional command, then instructions in the order said."""

    command: str | None = None
    instructions: list[Instruction] = field(default_factory=list)
    source: str = "rules"
    note: str | None = None


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """User text, normalised and length-capped, control characters removed."""
    text = unicodedata.normalize("NFKC", (text or "")[: max_chars * 4])
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:max_chars]


def _variants(phrase: str) -> set[str]:
    spaced = phrase.replace("-", " ")
    return {spaced, spaced.replace(" ", "-"), spaced.replace(" ", "")}


def _phrase_table() -> dict[tuple[str, ...], tuple[str, str | None]]:
    table: dict[tuple[str, ...], tuple[str, str | None]] = {}
    for attribute, values in SYNONYMS.items():
        for value, phrases in values.items():
            canonical = (value,) if value in VALUES[attribute] else ()
            for phrase in (*phrases, *canonical):
                for variant in _variants(phrase):
                    table.setdefault(tuple(variant.split()), (attribute, value))
    for attribute, words in GENERIC.items():
        for word in words:
            table.setdefault((word,), (attribute, None))
    return table


PHRASES = _phrase_table()
NEGATOR_PHRASES = frozenset(tuple(n.split()) for n in NEGATORS)
LONGEST = max(len(p) for p in PHRASES)


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
    attribute: str
    value: str | None
    negated: bool = False


def _matches(clause: list[str]) -> tuple[list[_Match], set[int]]:
    """Vocabulary matches (longest first, left to right) and the positions of negating words."""
    matches, negators, i, pending = [], set(), 0, False
    while i < len(clause):
        for n in range(min(LONGEST, len(clause) - i), 0, -1):
            window = tuple(clause[i:i + n])
            if window in NEGATOR_PHRASES and (n > 1 or window not in PHRASES):
                negators.update(range(i, i + n))
                pending = True
                i += n
                break
            if window in PHRASES:
                attribute, value = PHRASES[window]
                matches.append(_Match(i, i + n, attribute, value, negated=pending))
                pending = False
                i += n
                break
        else:
            i += 1
    return matches, negators


def _negated(attribute: str, value: str | None) -> str | None:
    """What "no X" asks for, if it names a value: no pattern -> solid, no sleeves -> sleeveless."""
    if attribute == "pattern" and value != "solid":
        return "solid"
    if attribute == "sleeve" and value not in ("sleeveless", "shorter", "longer"):
        return "sleeveless"
    if attribute == "length" and value in ("short", "long"):
        return "longer" if value == "short" else "shorter"
    options = VALUES.get(attribute, ())
    if value in options and len(options) == 2:
        return next(v for v in options if v != value)
    return None


def _relative_attribute(attribute: str, value: str | None, known: Mapping[str, str]) -> str:
    """Bare "shorter"/"longer" means the length, except on a t-shirt, which has only sleeves to change."""
    if attribute == "length" and value in ("shorter", "longer") and known.get("category") == "t-shirt":
        return "sleeve"
    return attribute


def _parse_clause(clause: list[str], known: Mapping[str, str]) -> list[Instruction]:
    matches, negators = _matches(clause)
    out: list[Instruction] = []
    cursor = 0

    def free_span(start: int, end: int) -> None:
        words = clause[start:end]
        if any(w not in FILLER and i + start not in negators for i, w in enumerate(words)):
            out.append(Instruction.free(" ".join(words)))

    for m in matches:
        said = " ".join(clause[cursor:m.end]) if m.negated else " ".join(clause[m.start:m.end])
        free_span(cursor, m.start if not m.negated else _negation_start(clause, cursor, m.start, negators))
        cursor = m.end
        value = _negated(m.attribute, m.value) if m.negated else m.value
        if value is None:
            out.append(Instruction.free(said))
            continue
        attribute = _relative_attribute(m.attribute, value, known)
        out.append(slot(attribute, value, said=said, known=known))
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


def parse_rules(text: str, known: Mapping[str, str] | None = None) -> Parsed:
    """Parse a message with the rules; ``known`` holds the current attribute values for relative edits."""
    known = dict(known or {})
    command, rest = match_command(clean_text(text))
    instructions: list[Instruction] = []
    for clause in _clauses(tokenize(rest)):
        instructions.extend(_parse_clause(clause, known))
    return Parsed(command=command, instructions=instructions)


class RuleParser:
    """The default parser: rules only."""

    name = "rules"

    def parse(self, text: str, known: Mapping[str, str] | None = None) -> Parsed:
        return parse_rules(text, known)
