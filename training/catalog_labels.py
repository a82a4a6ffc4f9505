"""A catalog as training and evaluation see it: every item's attribute values, read through its schema.

Any ingested catalog has a ``CatalogSchema``; its visual attributes (category
first) define each item's *label*, the key that says which items are the same
answer to a query ("Bag|Black|M|Leather|Long|Yes"): two photos with one label
are interchangeable targets, and a triplet's reference and target differ in the
label's parts. Which labels are held out for evaluation is decided here, by a
seeded hash of the label, so the same catalog always splits the same way and a
held-out combination is never seen in training (images, captions or triplets).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.catalog_schema import CatalogSchema

KEY_SEPARATOR = "|"
TRAIN, HELDOUT = "train", "heldout"


@dataclass(frozen=True)
class LabelSpace:
    """The label parts of one schema: which attributes, in which order, and the values each can take."""

    schema: CatalogSchema
    attributes: tuple[str, ...]

    @classmethod
    def of(cls, schema: CatalogSchema) -> LabelSpace:
        """Category first, then every visual attribute with two or more values that is not a role (brand, vendor)."""
        roles = set(schema.roles.values())
        names = [a.name for a in schema.attributes if a.visual and len(a.values) > 1 and a.name != schema.category
                 and a.name not in roles]
        head = [schema.category] if schema.category and schema.attribute(schema.category) else []
        if not head and not names:
            raise ValueError("the catalog schema has no visual attribute with two or more values: nothing to "
                             "compose edits from (check the attributes in schema.json)")
        return cls(schema, tuple(head + names))

    @property
    def editable(self) -> tuple[str, ...]:
        """The attributes an instruction may change (all label parts but the category)."""
        return tuple(a for a in self.attributes if a != self.schema.category)

    def values_of(self, metadata: Mapping[str, object]) -> dict[str, str]:
        """The label's values of one catalog row, canonical spelling, attributes that do not apply left out."""
        known = self.schema.known_values(metadata)
        out = {}
        for name in self.attributes:
            attribute = self.schema.attribute(name)
            value = attribute.value(known.get(name)) if attribute else None
            if value is not None:
                out[name] = value.name
        return out

    def key(self, values: Mapping[str, str]) -> str:
        return KEY_SEPARATOR.join(values.get(a, "") for a in self.attributes)

    def parts(self, key: str) -> dict[str, str]:
        return {a: v for a, v in zip(self.attributes, key.split(KEY_SEPARATOR), strict=True) if v}

    def category(self, values: Mapping[str, str]) -> str | None:
        return values.get(self.schema.category) if self.schema.category else None

    def applicable(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The editable attributes that mean something for this item's category."""
        category = self.category(values)
        return tuple(a for a in self.editable if self.schema.applies(a, category))

    def alternatives(self, attribute: str) -> list[str]:
        found = self.schema.attribute(attribute)
        return found.value_names if found else []

    def caption(self, values: Mapping[str, str]) -> str:
        return self.schema.caption_for(values)


def held_out_keys(keys: Sequence[str], share: float, seed: int) -> set[str]:
    """A deterministic ``share`` of the distinct labels, chosen by a seeded hash (same catalog, same split)."""
    distinct = sorted(set(keys))
    if share <= 0 or len(distinct) < 2:
        return set()
    score = {k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in distinct}
    n = min(len(distinct) - 1, max(1, round(len(distinct) * share)))
    return set(sorted(distinct, key=score.__getitem__)[:n])


@dataclass
class LabelledCatalog:
    """Row i is catalog item ``ids[i]``: its image file, label values, label key, caption and split."""

    space: LabelSpace
    ids: list[str]
    paths: list[str]
    values: list[dict[str, str]]
    splits: np.ndarray
    keys: np.ndarray = field(init=False)
    rows_by_key: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = np.array([self.space.key(v) for v in self.values], dtype=object).astype(str)
        self.rows_by_key = defaultdict(list)
        for row, key in enumerate(self.keys.tolist()):
            self.rows_by_key[key].append(row)

    @classmethod
    def build(cls, schema: CatalogSchema, ids: Sequence[str], paths: Sequence[str],
              metadata: Sequence[Mapping[str, object]], heldout_share: float = 0.2, seed: int = 0) -> LabelledCatalog:
        """Label every row and hold out a seeded share of the labels."""
        space = LabelSpace.of(schema)
        values = [space.values_of(m) for m in metadata]
        keys = [space.key(v) for v in values]
        held = held_out_keys(keys, heldout_share, seed)
        splits = np.array([HELDOUT if k in held else TRAIN for k in keys])
        return cls(space, [str(i) for i in ids], [str(p) for p in paths], values, splits)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    @property
    def captions(self) -> list[str]:
        return [self.space.caption(v) for v in self.values]

    def summary(self) -> dict[str, int]:
        return {"items": len(self), "labels": len(self.rows_by_key),
                "heldout_labels": len({k for k, s in zip(self.keys, self.splits, strict=True) if s == HELDOUT}),
                "heldout_items": int((self.splits == HELDOUT).sum())}
