"""The catalog schema: a catalog's own vocabulary, inferred from its metadata and kept as ``schema.json``.

Everything the assistant knows about a catalog's words comes from here, never
from a constant of the demo world: which columns are attributes (and which one is
the category), their canonical values and display names, where each applies,
which values are ordered (mini < midi < maxi, S < M < L) and the words that move
along that order, synonyms per value and language, numeric ranges (price), and
the caption grammar ("a photo of a red striped dress").

``infer_schema`` reads it off the metadata with the shipped lexicon
(``retrieval.lexicon``); a shop edits ``schema.json`` (rename with ``display``,
drop a column into ``ignored``, add synonyms, declare ``ordered``) and
re-ingests: a later inference keeps every edit and only adds what is new.
Ingest stores it in the LanceDB table beside the backbone identity, so serving
needs nothing else.

>>> schema = infer_schema(["colour", "size"], [{"colour": "red", "size": "M"}, {"colour": "navy", "size": "S"}])
>>> schema.attribute("size").value_names
['S', 'M']
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from retrieval.errors import SchemaError
from retrieval.lexicon import Concept, Lexicon, LexiconValue, RelativeWord, Words, load_lexicon, normal

SCHEMA_FILE = "schema.json"
SCHEMA_FORMAT = 1
MAX_VALUES = 50
MAX_VALUE_CHARS = 40
CONCEPT_MATCH = 0.6
NOT_APPLICABLE = frozenset({"", "none", "n/a", "na", "-", "null"})
TEXT_ROLES = ("name", "description", "caption")
UNSPOKEN = frozenset({"none", "yes", "no", "n/a"})


class Value(BaseModel):
    """One canonical value of an attribute, as stored in the catalog, and how people say and see it."""

    name: str
    display: dict[str, str] = Field(default_factory=dict)
    synonyms: Words = Field(default_factory=dict)
    label: str | None = None
    edit: str | None = None
    caption: str | None = None
    rgb: tuple[int, int, int] | None = None
    items: int = 0

    def shown(self, language: str = "en") -> str:
        """The name shown to a user of ``language``."""
        return self.display.get(language) or self.display.get("en") or self.name

    @property
    def word(self) -> str:
        """The value in running text ("navy", "knee-length")."""
        return self.name.lower()

    @property
    def caption_word(self) -> str:
        return self.word if self.caption is None else self.caption


class Attribute(BaseModel):
    """A metadata column that is a slot: its values, where it applies, its order and its words."""

    name: str
    display: dict[str, str] = Field(default_factory=dict)
    values: list[Value] = Field(default_factory=list)
    ordered: bool = False
    relative: list[RelativeWord] = Field(default_factory=list)
    applies_to: list[str] | None = None
    generic: Words = Field(default_factory=dict)
    absent: str | None = None
    concept: str | None = None
    edit: str = "make it {value}"
    caption_rank: int = 90
    filter: bool = True
    visual: bool = True

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.values]

    def value(self, name: str | None) -> Value | None:
        """The value called ``name`` (exactly, else ignoring case), if the catalog carries it."""
        if name is None:
            return None
        exact = next((v for v in self.values if v.name == name), None)
        return exact or next((v for v in self.values if normal(v.name) == normal(name)), None)

    def shown(self, language: str = "en") -> str:
        return self.display.get(language) or self.display.get("en") or self.name.replace("_", " ")

    def relative_word(self, word: str) -> RelativeWord | None:
        return next((r for r in self.relative if r.word == word), None)

    def edit_phrase(self, value: str) -> str:
        """The phrasing the composer reads for setting this attribute ("with stripes", "make it blue")."""
        relative = self.relative_word(value)
        if relative is not None:
            return relative.edit or relative.word
        known = self.value(value)
        if known is not None and known.edit:
            return known.edit
        return self.edit.format(value=(known.caption_word or known.word) if known else value.lower())

    def label(self, value: str, language: str = "en") -> str:
        """The chip a user of ``language`` sees for this attribute set to ``value`` (short sleeves, 半袖)."""
        relative = self.relative_word(value)
        if relative is not None:
            return relative.shown(language)
        known = self.value(value)
        if known is None:
            return value
        if language != "en" and known.display.get(language):
            return known.display[language]
        return known.label or known.shown(language)

    def step(self, current: str | None, word: str) -> str | None:
        """One step along the order from ``current`` in the direction of ``word``, if both are known."""
        relative = self.relative_word(word)
        names = self.value_names
        if not self.ordered or relative is None or current not in names:
            return None
        index = min(max(names.index(current) + relative.step, 0), len(names) - 1)
        return names[index]

    def unanchored(self, word: str) -> str | None:
        """What "shorter" means with no current value to step from: the short end (past "none of it")."""
        relative = self.relative_word(word)
        names = [n for n in self.value_names if n != self.absent]
        if not self.ordered or relative is None or not names:
            return None
        return names[0] if relative.step < 0 else names[-1]


class NumericColumn(BaseModel):
    """A numeric metadata column (price), offered as a range."""

    name: str
    display: dict[str, str] = Field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    unit: str | None = None

    def shown(self, language: str = "en") -> str:
        return self.display.get(language) or self.display.get("en") or self.name.replace("_", " ")


class CaptionGrammar(BaseModel):
    """How attribute values become a caption: their order, the noun without a category, the prefix."""

    prefix: str = "a photo of"
    order: list[str] = Field(default_factory=list)
    noun: str = "item"


class LearnedWord(BaseModel):
    """A phrase this catalog's customers use for a value or a one-step edit, learned from their picks
    (``assistant.word_learning``), with the evidence: in how many picks it was said and how many agreed."""

    phrase: str
    attribute: str
    value: str = Field(description="a value of the attribute, or one of its relative words (shorter)")
    picks: int = 0
    agreeing: int = 0

    def means(self, attribute: Attribute) -> bool:
        """Whether this word still names something of ``attribute`` (its values change with re-ingests)."""
        return attribute.name == self.attribute and (attribute.value(self.value) is not None
                                                     or attribute.relative_word(self.value) is not None)


class CatalogSchema(BaseModel):
    """A catalog's vocabulary; see the module docstring."""

    format: int = SCHEMA_FORMAT
    category: str | None = None
    attributes: list[Attribute] = Field(default_factory=list)
    numeric: list[NumericColumn] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)
    roles: dict[str, str] = Field(default_factory=dict)
    ignored: dict[str, str] = Field(default_factory=dict)
    caption: CaptionGrammar = Field(default_factory=CaptionGrammar)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    learned: list[LearnedWord] = Field(default_factory=list)

    def attribute(self, name: str | None) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def category_values(self) -> list[str]:
        attribute = self.attribute(self.category)
        return attribute.value_names if attribute else []

    def numeric_column(self, name: str) -> NumericColumn | None:
        return next((n for n in self.numeric if n.name == name), None)

    @property
    def price(self) -> NumericColumn | None:
        return self.numeric_column(self.roles.get("price", "price"))

    def applies(self, attribute: str, category: str | None) -> bool:
        """Whether ``attribute`` means anything for items of ``category`` (unknown category: yes)."""
        found = self.attribute(attribute)
        if found is None:
            return False
        return category is None or found.applies_to is None or category in found.applies_to

    def known_values(self, metadata: Mapping[str, object]) -> dict[str, str]:
        """A catalog row's attribute values, leaving out the attributes that do not apply to it."""
        category = metadata.get(self.category) if self.category else None
        category = str(category) if category not in (None, "") else None
        out = {}
        for attribute in self.attributes:
            raw = metadata.get(attribute.name)
            if raw in (None, "") or not self.applies(attribute.name, category):
                continue
            if str(raw).strip().lower() in NOT_APPLICABLE and attribute.value(str(raw)) is None:
                continue
            out[attribute.name] = str(raw)
        return out

    def describe(self, values: Mapping[str, str]) -> str:
        """Values as caption words with an article ("a red striped dress"), for turns without a reference."""
        words = []
        for name in self._caption_order():
            attribute, value = self.attribute(name), values.get(name)
            if attribute is None or not value:
                continue
            if attribute.relative_word(value) is not None:
                value = attribute.unanchored(value)
                if value is None:
                    continue
            known = attribute.value(value)
            word = known.caption_word if known else value.lower()
            if not word and len(values) == 1:
                word = known.word if known else value.lower()
            if word:
                words.append(word)
        category = self.attribute(self.category)
        noun = values.get(self.category) if self.category else None
        known_noun = category.value(noun) if category and noun else None
        words.append(known_noun.caption_word if known_noun else self.caption.noun)
        article = "an" if words[0][:1] in "aeiou" else "a"
        return f"{article} " + " ".join(words)

    def caption_for(self, values: Mapping[str, str]) -> str:
        """The catalog-style caption of an item with these values ("a photo of a red striped dress")."""
        return f"{self.caption.prefix} {self.describe(values)}"

    def _caption_order(self) -> list[str]:
        return [n for n in self.caption.order if n != self.category]

    def example_values(self) -> tuple[dict[str, str], list[tuple[str, str]], list[RelativeWord]]:
        """What hints to the user show: values to describe, (attribute, value) edits and a relative edit."""
        visual = sorted((a for a in self.attributes if a.name not in (self.category, self.roles.get("brand"))
                         and a.values and a.visual), key=lambda a: (a.concept is None, a.caption_rank))
        start = {a.name: a.values[0].name for a in visual[:2]}
        category = self.attribute(self.category)
        if category is not None and category.values:
            start[category.name] = category.values[0].name
        edits = [(a.name, a.values[-1].name) for a in visual[:1] if len(a.values) > 1]
        relative = [r for a in visual if a.ordered for r in a.relative[:1]][:1]
        return start, edits, relative

    def examples(self) -> tuple[str, list[str]]:
        """A description and a few refinements in this catalog's own words, for hints to the user."""
        start, edits, relative = self.example_values()
        said = [self.attribute(a).edit_phrase(v) for a, v in edits] + [r.label or r.word for r in relative]
        return self.describe(start), said or ["make it different"]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_defaults=False) + "\n"

    def with_learned(self, words: Sequence[LearnedWord]) -> CatalogSchema:
        """This schema with ``words`` learned (replacing a phrase learned before), dropping any that no longer name
        an attribute value or relative word of the catalog."""
        fresh = {normal(w.phrase): w for w in words}
        kept = [w for w in self.learned if normal(w.phrase) not in fresh] + list(fresh.values())
        return self.model_copy(update={"learned": [
            w for w in kept if any(w.means(a) for a in self.attributes)]})

    @classmethod
    def from_json(cls, text: str, where: str = "schema.json") -> CatalogSchema:
        """A schema from JSON text, with a clear message when a shop's edit broke it."""
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as err:
            raise SchemaError(f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
            raise SchemaError(f"{where} does not describe a catalog schema: {problems}") from None

    def summary(self) -> list[str]:
        """Lines for the command line: the attributes found and the columns that are not attributes, with why."""
        lines = []
        for attribute in self.attributes:
            role = " (category)" if attribute.name == self.category else ""
            order = " < ".join(attribute.value_names) if attribute.ordered else ", ".join(attribute.value_names)
            where = f"; only for {', '.join(attribute.applies_to)}" if attribute.applies_to is not None else ""
            lines.append(f"  attribute {attribute.name}{role}: {order}{where}")
        for column in self.numeric:
            lines.append(f"  range {column.name}: {column.minimum:g} to {column.maximum:g}"
                         + (f" {column.unit}" if column.unit else ""))
        if self.text:
            lines.append(f"  text for captions: {', '.join(self.text)}")
        for column, why in self.ignored.items():
            lines.append(f"  not an attribute: {column} ({why})")
        if self.learned:
            lines.append(f"  learned from customers' picks: {len(self.learned)} words (`circhat words list`)")
        return lines


def load_schema(path: Path) -> CatalogSchema:
    """``schema.json`` as a schema (``SchemaError`` with the reason if it cannot be used)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SchemaError(f"{path} is not UTF-8 (byte {err.object[err.start]:#04x} at offset {err.start}); "
                          "save it as UTF-8") from None
    return CatalogSchema.from_json(text, str(path))


def save_schema(schema: CatalogSchema, path: Path) -> None:
    """Write ``schema.json`` atomically, so a shop never finds half a file; it holds what the shop writes, while
    words learned from customers stay with the catalog's store (``circhat words``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(schema.model_dump_json(indent=2, exclude={"learned"}) + "\n", encoding="utf-8")
    tmp.replace(path)


CURRENCY_SIGNS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "円": "JPY"}
AMOUNT = re.compile(r"^\s*(?P<pre>[A-Z]{3}|[$€£¥])?\s*(?P<number>[-+]?\d[\d,.']*)\s*(?P<post>[A-Z]{3}|[$€£¥円])?\s*$")
PRICE_WORDS = ("price", "cost", "amount")


def parse_number(value: str | None) -> float | None:
    """A number as shops write it: "12", "1,249.00", "89,90", "12.00 USD", "¥1,200" (None if it is not one)."""
    found = AMOUNT.match(value or "")
    if found is None:
        return None
    digits = found["number"].replace("'", "")
    if re.fullmatch(r"[-+]?\d+,\d{1,2}", digits):
        digits = digits.replace(",", ".")
    try:
        number = float(digits.replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def currency_of(values: Sequence[str]) -> str | None:
    """The one currency the amounts name ("12.00 USD", "$12"), if they name exactly one."""
    found = set()
    for value in values:
        match = AMOUNT.match(value)
        sign = match and (match["pre"] or match["post"])
        if sign:
            found.add(CURRENCY_SIGNS.get(sign, sign))
    return found.pop() if len(found) == 1 else None



def _concept_for(column: str, values: Sequence[str], lexicon: Lexicon, category: bool) -> str | None:
    """The lexicon concept a column is about: by its name, else by how many of its values the concept knows."""
    if category:
        return "category"
    key = normal(column).replace(" ", "_")
    for name, concept in lexicon.concepts.items():
        if name != "category" and key in concept.columns:
            return name
    spoken = [v for v in values if normal(v) not in NOT_APPLICABLE]
    best, best_share = None, 0.0
    for name, concept in lexicon.concepts.items():
        if name == "category" or not spoken:
            continue
        share = sum(concept.find(v) is not None for v in spoken) / len(spoken)
        if share > best_share:
            best, best_share = name, share
    return best if best_share >= CONCEPT_MATCH else None


def _values(names: Sequence[str], counts: Counter, concept: Concept | None) -> list[Value]:
    """Values with the lexicon's words for them; a word another carried value owns is never borrowed."""
    found = {n: concept.find(n) if concept else None for n in names}
    owners: dict[str, list[str]] = defaultdict(list)
    for name, entry in found.items():
        if entry is not None:
            owners[entry].append(name)
    taken = {normal(n) for n in names}
    values = []
    for name in names:
        entry_name = found[name]
        entry: LexiconValue | None = concept.values[entry_name] if concept and entry_name else None
        value = Value(name=name, items=counts[name])
        if entry is not None:
            sharing = owners[entry_name]
            heir = next((n for n in sharing if normal(n) == normal(entry_name)), sharing[0])
            synonyms: Words = {}
            if name == heir:
                for language, words in entry.synonyms.items():
                    synonyms[language] = [w for w in words if normal(w) not in taken - {normal(name)}]
                if normal(entry_name) not in taken:
                    synonyms.setdefault("en", []).insert(0, entry_name)
            caption = entry.caption
            if caption is None and concept is not None and concept.domain_nouns and normal(name) != normal(entry_name):
                caption = entry_name
            value = value.model_copy(update={
                "synonyms": {k: v for k, v in synonyms.items() if v}, "label": entry.label, "edit": entry.edit,
                "caption": caption, "rgb": entry.rgb, "display": dict(entry.display) if name == heir else {}})
        values.append(value)
    return values


def _ordered(values: list[Value], concept: Concept | None) -> list[Value] | None:
    """The values in their natural order, when the lexicon's scale or plain numbers give one."""
    if concept is not None and concept.ordered:
        rank = {normal(n): i for i, n in enumerate(concept.ordered)}
        positions = [rank.get(normal(concept.find(v.name) or "")) for v in values]
        if all(p is not None for p in positions):
            return [v for _, v in sorted(zip(positions, values, strict=True), key=lambda pair: pair[0])]
    numbers = [parse_number(v.name) for v in values]
    if len(values) > 1 and all(n is not None for n in numbers):
        return [v for _, v in sorted(zip(numbers, values, strict=True), key=lambda pair: pair[0])]
    return None


def _applies(column: str, rows: Sequence[Mapping[str, str]], category: str | None) -> tuple[list[str] | None, set]:
    """(categories the column applies to, or None for all; the values that only ever mean "does not apply")."""
    if category is None:
        return None, set()
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        seen[row.get(category, "")].add(row.get(column, ""))
    applies = sorted(c for c, vs in seen.items() if c and not {normal(v) for v in vs} <= NOT_APPLICABLE)
    placeholders = {v for c, vs in seen.items() if c not in applies for v in vs}
    real = {v for c in applies for v in seen[c]}
    only_placeholder = {v for v in placeholders if v not in real}
    return (None if len(applies) == len([c for c in seen if c]) else applies), only_placeholder


def infer_schema(columns: Sequence[str], rows: Sequence[Mapping[str, str]], roles: Mapping[str, str] | None = None,
                 previous: CatalogSchema | None = None, lexicon: Lexicon | None = None,
                 max_values: int = MAX_VALUES, currency: str | None = None) -> CatalogSchema:
    """A catalog's schema from its metadata rows (column -> string); ``previous`` (the shop's schema.json) wins.

    Categorical columns with at most ``max_values`` distinct values become attributes; numbers become ranges;
    long or many-valued text (names, descriptions) feeds captions; the rest is listed in ``ignored`` with why.
    """
    lexicon = lexicon or load_lexicon()
    previous = previous or CatalogSchema()
    roles = {**_roles_by_name(columns), **dict(roles or {}), **previous.roles}
    category = previous.category or roles.get("category") or next(
        (c for c in columns if normal(c).replace(" ", "_") in lexicon.concepts["category"].columns), None)
    schema = CatalogSchema(roles=roles, caption=previous.caption.model_copy(), languages=list(previous.languages))
    forced = set(previous.attribute_names)
    for column in columns:
        values = [str(row.get(column, "") or "").strip() for row in rows]
        present = [v for v in values if v]
        distinct = Counter(present)
        if column in previous.ignored:
            schema.ignored[column] = previous.ignored[column]
        elif not present:
            schema.ignored[column] = "empty for every item"
        elif column in (roles.get(r) for r in TEXT_ROLES) and column not in forced:
            schema.text.append(column)
        elif (column == roles.get("price") or any(w in column for w in PRICE_WORDS) or len(distinct) > max_values) \
                and column not in forced and all(parse_number(v) is not None for v in present):
            numbers = [n for n in (parse_number(v) for v in present) if n is not None]
            old = previous.numeric_column(column)
            money = column == roles.get("price") or any(w in column for w in PRICE_WORDS)
            schema.numeric.append(NumericColumn(
                name=column, display=old.display if old else {}, minimum=min(numbers), maximum=max(numbers),
                unit=(old.unit if old else None) or ((currency or currency_of(present)) if money else None)))
        elif column == roles.get("price"):
            bad = next(v for v in present if parse_number(v) is None)
            schema.ignored[column] = f"not a number in every row (e.g. {bad!r}): not a price range"
        elif column != category and column not in forced and len(distinct) > max_values:
            schema.ignored[column] = (f"{len(distinct):,} distinct values (more than {max_values}): free text, "
                                      "not an attribute")
            if sum(len(v) for v in present) / len(present) > MAX_VALUE_CHARS:
                schema.text.append(column)
        elif column != category and column not in forced and _listing(present):
            schema.ignored[column] = "comma-separated lists (like tags): not an attribute"
        elif column != category and column not in forced and len(distinct) == 1 and len(present) == len(values):
            schema.ignored[column] = f"the same value ({present[0]!r}) for every item"
        elif column != category and column not in forced and max(len(v) for v in distinct) > MAX_VALUE_CHARS:
            schema.ignored[column] = f"values longer than {MAX_VALUE_CHARS} characters: free text, not an attribute"
            schema.text.append(column)
        else:
            schema.attributes.append(_attribute(column, rows, distinct, category, lexicon, previous))
    if category and schema.attribute(category) is None:
        category = None
    schema.category = category
    schema.attributes.sort(key=lambda a: (a.name != category,))
    categories = schema.attribute(category)
    if categories is not None:
        domains = {(lexicon.concepts["category"].values.get(lexicon.concepts["category"].find(v.name) or "")
                    or LexiconValue()).domain for v in categories.values}
        if previous.caption.noun == CaptionGrammar().noun and len(domains) == 1 and None not in domains:
            schema.caption.noun = domains.pop()
    known = [n for n in schema.caption.order if schema.attribute(n)]
    rest = sorted((a for a in schema.attributes
                   if a.name not in known and a.name != category and a.name != roles.get("brand") and a.visual),
                  key=lambda a: a.caption_rank)
    schema.caption.order = known + [a.name for a in rest]
    spoken = {language for a in schema.attributes for v in a.values for language in (*v.synonyms, *v.display)}
    schema.languages = [*schema.languages, *sorted(spoken - set(schema.languages))]
    return schema


def _listing(values: Sequence[str]) -> bool:
    """Whether most values are lists ("bags, tote, sale"), which no single slot value can stand for."""
    return sum(", " in v or ";" in v for v in values) > len(values) / 2


def _roles_by_name(columns: Sequence[str]) -> dict[str, str]:
    names = {"name": ("name", "title", "product_name"), "description": ("description", "body", "body_html"),
             "caption": ("caption",), "price": ("price", "variant_price"), "brand": ("brand", "vendor")}
    return {role: next(c for c in columns if c in options)
            for role, options in names.items() if any(c in options for c in columns)}


def _attribute(column: str, rows: Sequence[Mapping[str, str]], distinct: Counter, category: str | None,
               lexicon: Lexicon, previous: CatalogSchema) -> Attribute:
    applies, placeholders = _applies(column, rows, category) if column != category else (None, set())
    names = [v for v in distinct if v not in placeholders]
    concept_name = _concept_for(column, names, lexicon, column == category)
    concept = lexicon.concepts.get(concept_name) if concept_name else None
    values = _values(sorted(names, key=normal), distinct, concept)
    ordered = _ordered(values, concept)
    absent = None
    if concept is not None and concept.absent:
        absent = next((v.name for v in values if concept.find(v.name) == concept.absent), None)
    display = {"en": column.replace("_", " "), **(concept.display if concept else {})}
    attribute = Attribute(
        name=column, display=display, values=ordered or values, ordered=ordered is not None,
        relative=list(concept.relative) if concept and ordered else [], applies_to=applies,
        generic=dict(concept.generic) if concept else {}, absent=absent, concept=concept_name,
        edit=concept.edit if concept else "make it {value}", caption_rank=concept.caption_rank if concept else 90,
        visual=concept.visual if concept else True)
    old = previous.attribute(column)
    kept = attribute if old is None else _keep_edits(old, attribute)
    if kept.ordered and not kept.relative and concept is not None and concept.relative:
        kept = kept.model_copy(update={"relative": list(concept.relative)})
    return kept


def _keep_edits(old: Attribute, new: Attribute) -> Attribute:
    """The shop's attribute with today's values: its edits stay, values new in the data are added, gone ones go.

    A language the shop's file does not mention at all (the lexicon gained Japanese after the file was written)
    is added from the lexicon; a language it lists, even as an empty list, is the shop's and stays as it is.
    """
    by_name = {v.name: v for v in new.values}
    kept = [v.model_copy(update={"items": by_name[v.name].items, "display": _with_new_languages(v.display, by_name[
        v.name].display), "synonyms": _with_new_languages(v.synonyms, by_name[v.name].synonyms)})
        for v in old.values if v.name in by_name]
    added = [v for v in new.values if v.name not in set(old.value_names)]
    values = kept + added if old.values else new.values
    names = {normal(v.name) for v in values}
    values = [v.model_copy(update={"synonyms": {lang: [w for w in words if normal(w) not in names - {normal(v.name)}]
                                                for lang, words in v.synonyms.items()}}) for v in values]
    fresh = {r.word: r for r in new.relative}
    relative = [r.model_copy(update={"phrases": _with_new_languages(r.phrases, fresh[r.word].phrases),
                                     "display": _with_new_languages(r.display, fresh[r.word].display)})
                if r.word in fresh else r for r in old.relative]
    return old.model_copy(update={"values": values, "applies_to": new.applies_to, "relative": relative,
                                  "display": _with_new_languages(old.display, new.display),
                                  "generic": _with_new_languages(old.generic, new.generic)})


def _with_new_languages(kept: dict, inferred: dict) -> dict:
    """The shop's words per language, plus the inferred ones of every language the shop's file does not list."""
    return {**kept, **{language: words for language, words in inferred.items() if language not in kept}}
