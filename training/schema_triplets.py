"""Synthetic triplets for any catalog: pairs of its own items that differ in a few attributes, phrased from its schema.

No one labels anything: a triplet is a reference item, the instructions that
turn its label into another existing label of the same category (one to three
attributes changed), and an item with that label as the target. The words come
from the schema: each value's edit phrase ("with a long strap"), its label
("no buckle"), its name ("suede"), the attribute's name ("heel height") and,
for one step along an ordered attribute, its relative words ("bigger",
"higher"). The sentence templates are split into a training set and a held-out
set, so evaluation can ask whether the model understands wording it never
trained on.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from retrieval.catalog_schema import Attribute
from training.catalog_labels import HELDOUT, TRAIN, LabelledCatalog
from training.triplets import JOINERS, Triplet

NOT_A_PAIR = 10_000
# {edit} the schema's edit phrase, {label} the value's label, {word} its name, {attribute} the attribute's name.
TEMPLATES: dict[bool, tuple[str, ...]] = {
    False: ("{edit}", "{label} please", "i want {label}", "same but {label}", "{label} instead",
            "change the {attribute} to {word}", "make it {word}"),
    True: ("could it be {label}?", "i'd prefer {label}", "switch the {attribute} to {word}", "rather {label}",
           "go for {label}"),
}
# {relative} a relative word of an ordered attribute ("bigger"), for a change of one step.
RELATIVE_TEMPLATES: dict[bool, tuple[str, ...]] = {
    False: ("{relative}", "make it {relative}", "a bit {relative}"),
    True: ("{relative} please", "i'd like it {relative}"),
}


def phrase(attribute: Attribute, old: str, new: str, rng: np.random.Generator, held_out: bool) -> str:
    """One instruction that changes ``attribute`` from ``old`` to ``new``, in the catalog's own words."""
    options = [t.format(edit=attribute.edit_phrase(new), label=attribute.label(new).lower(),
                        word=(attribute.value(new).word if attribute.value(new) else new.lower()),
                        attribute=attribute.shown().lower()) for t in TEMPLATES[held_out]]
    names = attribute.value_names
    if attribute.ordered and old in names and new in names and abs(names.index(new) - names.index(old)) == 1:
        step = 1 if names.index(new) > names.index(old) else -1
        words = [r.word for r in attribute.relative if r.step == step]
        options += [t.format(relative=w) for t in RELATIVE_TEMPLATES[held_out] for w in words]
    return options[int(rng.integers(len(options)))]


class PairIndex:
    """For every label, the other labels of the same category that differ from it in exactly k editable parts."""

    def __init__(self, catalog: LabelledCatalog, rows: np.ndarray):
        space = catalog.space
        self.catalog = catalog
        self.rows_by_key: dict[str, list[int]] = defaultdict(list)
        for r in rows.tolist():
            self.rows_by_key[str(catalog.keys[r])].append(r)
        keys = sorted(self.rows_by_key)
        self.keys = keys
        parts = np.array([[space.parts(k).get(a, "") for a in space.attributes] for k in keys], dtype=object)
        self._parts = parts
        self._position = {k: i for i, k in enumerate(keys)}

    def differing(self, key: str) -> np.ndarray:
        """How many parts each indexed label differs from ``key`` in (``NOT_A_PAIR`` for another category, or a
        value where ``key`` has none: no instruction turns that into ``key``)."""
        space = self.catalog.space
        wanted = np.array([space.parts(key).get(a, "") for a in space.attributes], dtype=object)
        diff = (self._parts != wanted).sum(1)
        unlike = ((self._parts != "") & (wanted == "")[None, :]).any(1)
        if space.schema.category and space.attributes[0] == space.schema.category:
            unlike |= self._parts[:, 0] != wanted[0]
        diff[unlike] = NOT_A_PAIR
        return diff

    def neighbours(self, key: str, k: int, attributes: tuple[str, ...] | None = None) -> list[str]:
        """Labels ``k`` parts away from ``key``; with ``attributes``, only those differing in nothing else."""
        diff = self.differing(key)
        if attributes is not None:
            space = self.catalog.space
            fixed = [i for i, a in enumerate(space.attributes) if a not in attributes]
            wanted = np.array([space.parts(key).get(space.attributes[i], "") for i in fixed], dtype=object)
            diff[(self._parts[:, fixed] != wanted[None, :]).any(1)] = NOT_A_PAIR
        return [self.keys[i] for i in np.flatnonzero(diff == k)]


def make_catalog_triplets(catalog: LabelledCatalog, n: int, seed: int, n_edits: tuple[int, ...] = (1, 2, 3),
                          target_split: str = TRAIN, reference_splits: tuple[str, ...] = (TRAIN,),
                          held_out_phrasing: bool = False,
                          attributes: tuple[str, ...] | None = None) -> list[Triplet]:
    """``n`` triplets whose targets come from ``target_split``; deterministic from ``seed``.

    A target row is drawn, then a reference label among those ``k`` editable attributes away that exist in
    ``reference_splits``; targets with no such neighbour are skipped. ``attributes`` limits the edits to those
    attributes (all label attributes when None). Raises ``ValueError`` when the catalog has no pair at all at the
    asked distances.
    """
    rng = np.random.default_rng(seed)
    space = catalog.space
    targets = catalog.rows(target_split)
    reference_rows = np.flatnonzero(np.isin(catalog.splits, reference_splits))
    index = PairIndex(catalog, reference_rows)
    neighbours: dict[tuple[str, int], list[str]] = {}

    def near(key: str, k: int) -> list[str]:
        if (key, k) not in neighbours:
            neighbours[key, k] = index.neighbours(key, k, attributes)
        return neighbours[key, k]

    usable = [r for r in targets.tolist() if any(near(str(catalog.keys[r]), k) for k in n_edits)]
    if not usable:
        raise ValueError(f"no two items of one category differ in {' or '.join(map(str, n_edits))} attribute(s) "
                         f"among the {target_split} targets: the catalog has too few combinations to make triplets")
    out: list[Triplet] = []
    while len(out) < n:
        target_row = usable[int(rng.integers(len(usable)))]
        target_key = str(catalog.keys[target_row])
        distances = [k for k in n_edits if near(target_key, k)]
        k = distances[int(rng.integers(len(distances)))]
        choices = near(target_key, k)
        reference_key = choices[int(rng.integers(len(choices)))]
        ref_rows = index.rows_by_key[reference_key]
        reference_row = ref_rows[int(rng.integers(len(ref_rows)))]
        target, reference = space.parts(target_key), space.parts(reference_key)
        changed = [a for a in space.attributes if target.get(a, "") != reference.get(a, "") and target.get(a)]
        if len(changed) != k:
            continue
        order = [changed[i] for i in rng.permutation(len(changed))]
        parts = [phrase(space.schema.attribute(a), reference.get(a, ""), target[a], rng, held_out_phrasing)
                 for a in order]
        if len(parts) > 1 and rng.random() < 0.5:
            parts = [JOINERS[int(rng.integers(len(JOINERS)))].join(parts)]
        out.append(Triplet(reference_row, parts, target_key, target_row, [(a, target[a]) for a in order],
                           reference_combo=reference_key))
    return out


def make_catalog_text_triplets(catalog: LabelledCatalog, n: int, seed: int,
                               n_edits: tuple[int, ...] = (1, 2, 3)) -> list[Triplet]:
    """``n`` text-only triplets: a training item as the target, and as the reference the *description* of its
    label with ``k`` attributes changed to other values of the schema.

    The reference label need not exist in the catalog (it must not be a held-out one), so a catalog of a few
    hundred items still yields as many distinct triplets as its schema has combinations; deterministic from ``seed``.
    """
    rng = np.random.default_rng(seed)
    space = catalog.space
    targets = catalog.rows(TRAIN)
    held_out = set(catalog.keys[catalog.rows(HELDOUT)].tolist())
    editable = {int(r): [a for a in space.applicable(catalog.values[r]) if a in catalog.values[r]
                         and len(space.alternatives(a)) > 1] for r in targets.tolist()}
    usable = [r for r, attributes in editable.items() if attributes]
    if not usable:
        raise ValueError("no training item has an attribute with another value to change: the schema gives "
                         "nothing to compose text-only triplets from")
    out: list[Triplet] = []
    while len(out) < n:
        target_row = usable[int(rng.integers(len(usable)))]
        target = catalog.values[target_row]
        attributes = editable[target_row]
        k = min(int(n_edits[int(rng.integers(len(n_edits)))]), len(attributes))
        order = [attributes[i] for i in rng.permutation(len(attributes))[:k]]
        reference = dict(target)
        for a in order:
            others = [v for v in space.alternatives(a) if v != target[a]]
            reference[a] = others[int(rng.integers(len(others)))]
        reference_key = space.key(reference)
        if reference_key in held_out:
            continue
        parts = [phrase(space.schema.attribute(a), reference[a], target[a], rng, False) for a in order]
        if len(parts) > 1 and rng.random() < 0.5:
            parts = [JOINERS[int(rng.integers(len(JOINERS)))].join(parts)]
        out.append(Triplet(-1, parts, str(catalog.keys[target_row]), target_row, [(a, target[a]) for a in order],
                           reference_caption=space.caption(reference), reference_combo=reference_key))
    return out


def evaluation_sets(catalog: LabelledCatalog, n: int, seed: int,
                    attributes: tuple[str, ...] | None = None) -> dict[str, list[Triplet]]:
    """The held-out query sets: 1- and 2-attribute edits to held-out labels, in training and held-out phrasings;
    ``attributes`` limits the edits to those attributes."""
    sets = {}
    for edits in (1, 2):
        for held_out_phrasing in (False, True):
            name = f"{edits}-attr held-out" + (" phrasing" if held_out_phrasing else "")
            try:
                sets[name] = make_catalog_triplets(catalog, n, seed + 10 * edits + held_out_phrasing, (edits,),
                                                   HELDOUT, (TRAIN, HELDOUT), held_out_phrasing, attributes)
            except ValueError:
                continue
    return sets
