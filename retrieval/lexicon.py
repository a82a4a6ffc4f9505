"""The shipped lexicon of common product-attribute words (``lexicon.json``), which schema inference draws on.

It knows that "burgundy" is a colour near maroon, that S < M < L and that
"no pattern" means solid; a catalog's ``schema.json`` copies what applies to its
own values, so the shop sees and edits the words it gets. Words of a concept that
the catalog does not carry (grey, when it has none) let the assistant say so
instead of running them as free text.

>>> lexicon = load_lexicon()
>>> lexicon.concepts["colour"].find("Burgundy")
'maroon'
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pydantic import BaseModel, Field

LEXICON_FILE = Path(__file__).with_name("lexicon.json")
Words = dict[str, list[str]]


class RelativeWord(BaseModel):
    """A one-step edit along an ordered attribute ("shorter"), and the phrases that say it."""

    word: str
    step: int = Field(description="-1 towards the first value of the order, +1 towards the last")
    phrases: Words = Field(default_factory=dict)
    label: str | None = None
    edit: str | None = None
    display: dict[str, str] = Field(default_factory=dict)

    def shown(self, language: str = "en") -> str:
        """The chip a user of ``language`` sees for this edit ("shorter sleeves", 袖を短く)."""
        return self.display.get(language) or self.label or self.word


class LexiconValue(BaseModel):
    """One known value of a concept: its synonyms per language and how it is said and shown."""

    synonyms: Words = Field(default_factory=dict)
    display: dict[str, str] = Field(default_factory=dict)
    label: str | None = None
    edit: str | None = None
    caption: str | None = None
    noun: str | None = None
    rgb: tuple[int, int, int] | None = None
    domain: str | None = None


class Concept(BaseModel):
    """A kind of attribute shops have (colour, size, material...)."""

    columns: list[str] = Field(default_factory=list)
    display: dict[str, str] = Field(default_factory=dict)
    generic: Words = Field(default_factory=dict)
    absent: str | None = None
    ordered: list[str] = Field(default_factory=list)
    relative: list[RelativeWord] = Field(default_factory=list)
    caption_rank: int = 90
    edit: str = "make it {value}"
    visual: bool = True
    domain_nouns: bool = False
    values: dict[str, LexiconValue] = Field(default_factory=dict)

    def find(self, word: str) -> str | None:
        """The lexicon value ``word`` names (its own name or a synonym, any case), if any."""
        key = normal(word)
        for name in self.values:
            if normal(name) == key:
                return name
        for name, value in self.values.items():
            if any(normal(s) == key for words in value.synonyms.values() for s in words):
                return name
        return None


class Lexicon(BaseModel):
    """Every concept the lexicon knows, by name."""

    concepts: dict[str, Concept]


def normal(word: str) -> str:
    """The comparison form of a word: lower case, hyphens and underscores as spaces, single spaces."""
    return " ".join(word.lower().replace("-", " ").replace("_", " ").split())


@functools.cache
def load_lexicon(path: Path = LEXICON_FILE) -> Lexicon:
    """The shipped lexicon, parsed once."""
    return Lexicon.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
