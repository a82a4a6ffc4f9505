"""A catalog schema compiled for parsing: every phrase a shopper may use, and what it means in this catalog.

Built from the catalog's ``CatalogSchema`` (its values, synonyms per language,
relative words, "none of it" values, words learned from its customers' picks)
plus the lexicon words of the same concepts that the catalog does *not* carry,
so "grey" in a shop without grey is recognised as a colour it lacks instead of being run as free text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from assistant.tokens import tokenize, unspaced
from retrieval.catalog_schema import UNSPOKEN, Attribute, CatalogSchema
from retrieval.lexicon import Lexicon, load_lexicon, normal

MAX_CLOSEST = 3
MAX_LISTED = 6


@dataclass(frozen=True)
class Meaning:
    """What a phrase names: an attribute and a value (canonical or relative word; None for the attribute itself).

    ``carried`` is False for a value of the attribute's kind that this catalog lacks.
    """

    attribute: str
    value: str | None
    carried: bool = True


def variants(phrase: str) -> set[tuple[str, ...]]:
    """The token sequences a phrase is typed as: spaced, run together (Japanese is cut into characters either way)."""
    spaced = normal(phrase)
    return {tuple(tokenize(spaced)), tuple(tokenize(spaced.replace(" ", "")))} - {()}


def plurals(word: str) -> set[str]:
    """English plural forms of a noun, so a shop's "Bag" also matches "bags"."""
    if word.endswith(("s", "x", "sh", "ch")):
        return {word + "es"}
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return {word[:-1] + "ies"}
    return {word + "s"}


def lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB as CIELAB (D65), where distance follows what people see as different colours."""
    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, \
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = (f(t) for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


class Vocabulary:
    """The phrase table of one catalog and the rules that read it (negation, relative edits, closest values)."""

    def __init__(self, schema: CatalogSchema, lexicon: Lexicon | None = None):
        self.schema = schema
        self.lexicon = lexicon or load_lexicon()
        self.phrases: dict[tuple[str, ...], list[Meaning]] = defaultdict(list)
        for attribute in schema.attributes:
            self._add_carried(attribute)
        for attribute in schema.attributes:
            self._add_uncarried(attribute)
        self.phrases = dict(self.phrases)
        self.longest = max((len(p) for p in self.phrases), default=1)
        names = [tuple(tokenize(normal(n))) for a in schema.attributes for n in (a.name, *a.display.values())]
        self.attribute_words = frozenset(w for name in names for w in name if not unspaced(w))
        self.attribute_phrases = frozenset(name for name in names if name and all(unspaced(w) for w in name))

    def _add(self, phrase: str, meaning: Meaning) -> None:
        for key in variants(phrase):
            if meaning not in self.phrases[key]:
                self.phrases[key].append(meaning)

    def _add_carried(self, attribute: Attribute) -> None:
        for value in attribute.values:
            names = [] if normal(value.name) in UNSPOKEN else [value.name]
            if attribute.name == self.schema.category:
                names += sorted(plurals(normal(value.name)))
            words = [*names, *value.display.values(), *(w for ws in value.synonyms.values() for w in ws)]
            for word in words:
                self._add(word, Meaning(attribute.name, value.name))
        for relative in attribute.relative if attribute.ordered else ():
            for word in (w for ws in relative.phrases.values() for w in ws):
                self._add(word, Meaning(attribute.name, relative.word))
        for word in (w for ws in attribute.generic.values() for w in ws):
            self._add(word, Meaning(attribute.name, None))
        for learned in (w for w in self.schema.learned if w.means(attribute)):
            value = attribute.value(learned.value)
            self._add(learned.phrase, Meaning(attribute.name, value.name if value else learned.value))

    def _add_uncarried(self, attribute: Attribute) -> None:
        concept = self.lexicon.concepts.get(attribute.concept or "")
        if concept is None:
            return
        carried = {concept.find(v.name) for v in attribute.values}
        for name, entry in concept.values.items():
            if name in carried or normal(name) in UNSPOKEN:
                continue
            for word in (name, *entry.display.values(), *(w for ws in entry.synonyms.values() for w in ws)):
                if not any(v in self.phrases for v in variants(word)):
                    self._add(word, Meaning(attribute.name, name, carried=False))

    def meanings(self, window: tuple[str, ...]) -> list[Meaning]:
        return self.phrases.get(window, [])

    def choose(self, meanings: list[Meaning], known: Mapping[str, str]) -> Meaning:
        """The reading of an ambiguous phrase that fits the current category best (carried values first)."""
        category = known.get(self.schema.category) if self.schema.category else None
        ranked = sorted(meanings, key=lambda m: (not m.carried, not self.schema.applies(m.attribute, category)))
        return ranked[0]

    def negated(self, attribute: str, value: str | None) -> str | None:
        """What "no X" asks for, if it names a value: no pattern -> solid, no long -> shorter, no v-neck -> crew."""
        found = self.schema.attribute(attribute)
        if found is None:
            return None
        if found.relative_word(value or "") is not None:
            return None
        if found.absent and value != found.absent:
            return found.absent
        names = found.value_names
        if found.ordered and value in names and len(names) > 2 and value in (names[0], names[-1]):
            direction = 1 if value == names[0] else -1
            return next((r.word for r in found.relative if r.step == direction), None)
        if value in names and len(names) == 2:
            return next(v for v in names if v != value)
        return None

    def relative_attribute(self, attribute: str, word: str, known: Mapping[str, str]) -> str:
        """A bare relative word ("shorter") on an item it cannot apply to moves to an attribute that can."""
        category = known.get(self.schema.category) if self.schema.category else None
        if category is None or self.schema.applies(attribute, category):
            return attribute
        for other in self.schema.attributes:
            if other.ordered and other.relative_word(word) and self.schema.applies(other.name, category):
                return other.name
        return attribute

    def closest(self, attribute: str, wanted: str) -> list[str]:
        """The names of the carried values nearest a value the catalog lacks: by colour, by position on a scale, else
        all."""
        found = self.schema.attribute(attribute)
        if found is None:
            return []
        concept = self.lexicon.concepts.get(found.concept or "")
        entry = concept.values.get(wanted) if concept else None
        if entry is not None and entry.rgb is not None and any(v.rgb for v in found.values):
            target = lab(entry.rgb)
            ranked = sorted((v for v in found.values if v.rgb),
                            key=lambda v: sum((a - b) ** 2 for a, b in zip(lab(v.rgb), target, strict=True)))
            return [v.name for v in ranked[:MAX_CLOSEST]]
        if concept is not None and concept.ordered and wanted in concept.ordered:
            index = concept.ordered.index
            placed = [v for v in found.values if concept.find(v.name) in concept.ordered]
            ranked = sorted(placed, key=lambda v: abs(index(concept.find(v.name)) - index(wanted)))
            if ranked:
                return [v.name for v in ranked[:2]]
        return [v.name for v in found.values[:MAX_LISTED]]

    def display(self, attribute: str, value: str) -> dict[str, str]:
        """The lexicon's display names of a value this catalog lacks (グレー for grey), for telling the user so."""
        found = self.schema.attribute(attribute)
        concept = self.lexicon.concepts.get(found.concept or "") if found is not None else None
        entry = concept.values.get(value) if concept is not None else None
        return dict(entry.display) if entry is not None else {}
