"""Synthetic (reference, instructions, target) triplets from catalog attributes.

Phrasings come from templates split into a training set and a held-out set, so
the benchmark can ask whether the model understands wording it never trained
on. A noisy variant gives a share of triplets a target with a wrong attribute,
the kind of error harvested picks will contain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from training.world import VALUES, Combo, World, caption

EDITABLE = ("colour", "pattern", "sleeve", "length", "neckline")
PATTERN_NOUN = {"striped": "stripes", "dotted": "polka dots", "checked": "checks"}
LENGTH_ORDER = {"short": 0, "knee-length": 1, "long": 2}
SLEEVE_ORDER = {"sleeveless": 0, "short-sleeve": 1, "long-sleeve": 2}
SLEEVE_WORD = {"short-sleeve": "short", "long-sleeve": "long"}
NECK_WORD = {"v-neck": "a v-neck", "crew-neck": "a crew neck"}

# (template, held_out) per edit kind; {v} new value, {n} its noun, {o} the old value's noun.
TEMPLATES: dict[str, list[tuple[str, bool]]] = {
    "colour": [("make it {v}", False), ("change the colour to {v}", False), ("in {v}", False),
               ("i want it in {v}", False), ("{v} instead", False), ("same but {v}", False),
               ("could it be {v}?", True), ("switch the colour to {v}", True), ("prefer {v}", True)],
    "pattern+": [("make it {v}", False), ("with {n}", False), ("add {n}", False), ("{v} please", False),
                 ("put {n} on it", True), ("a {v} version", True)],
    "pattern-": [("make it plain", False), ("remove the {o}", False), ("solid colour please", False),
                 ("without the {o}", False), ("no pattern", True), ("get rid of the {o}", True)],
    "sleeve+": [("with {v} sleeves", False), ("make the sleeves {v}", False), ("{c} sleeves", False),
                ("add {v} sleeves", False), ("i'd like {v} sleeves", True), ("give it {v} sleeves", True)],
    "sleeve-": [("remove the sleeves", False), ("make it sleeveless", False), ("without sleeves", False),
                ("no sleeves", True), ("cut off the sleeves", True)],
    "length": [("make it {v}", False), ("{v} please", False), ("{c}", False), ("a {v} one", False),
               ("change the length to {v}", True), ("i want a {v} one", True)],
    "neckline": [("with {n}", False), ("make it {v}", False), ("change the neckline to {v}", False),
                 ("i'd prefer {n}", True), ("{v} instead", True)],
}
JOINERS = (" and ", ", ", " and also ")


@dataclass
class Triplet:
    """A reference item, the instructions said about it, and what they describe.

    A text-only triplet has no reference image (``reference_id`` is -1): its reference is the description
    ``reference_caption`` of the label ``reference_combo``, which stage 2 reads through the mapper as if it were
    an image embedding.
    """

    reference_id: int
    instructions: list[str]
    target_combo: str
    target_id: int
    edits: list[tuple[str, str]] = field(default_factory=list)
    noisy: bool = False
    reference_caption: str = ""
    reference_combo: str = ""

    @property
    def text_only(self) -> bool:
        return self.reference_id < 0


def _comparative(attribute: str, old: str, new: str) -> str:
    order = LENGTH_ORDER if attribute == "length" else SLEEVE_ORDER
    shorter = order[new] < order[old]
    if attribute == "length":
        return "shorter" if shorter else "longer"
    return "shorter" if shorter else "longer"


def phrase(attribute: str, old: str, new: str, rng: np.random.Generator, held_out: bool) -> str:
    """One instruction that turns ``old`` into ``new`` for ``attribute``."""
    if attribute == "pattern":
        kind = "pattern-" if new == "solid" else "pattern+"
    elif attribute == "sleeve":
        kind = "sleeve-" if new == "sleeveless" else "sleeve+"
    else:
        kind = attribute
    options = [t for t, h in TEMPLATES[kind] if h == held_out]
    if attribute in ("length", "sleeve") and kind != "sleeve-" and old == "sleeveless":
        options = [t for t in options if "{c}" not in t]
    template = options[int(rng.integers(len(options)))]
    value = SLEEVE_WORD.get(new, new) if attribute == "sleeve" else new
    noun = NECK_WORD.get(new) if attribute == "neckline" else PATTERN_NOUN.get(new, new)
    comparative = _comparative(attribute, old, new) if "{c}" in template else ""
    return template.format(v=value, n=noun, o=PATTERN_NOUN.get(old, old), c=comparative)


def edit_choices(combo: Combo, rng: np.random.Generator, n_edits: int) -> list[tuple[str, str]]:
    """Which attributes change and to what, among those that apply to the category."""
    editable = [a for a in EDITABLE if a in combo.applicable()]
    attributes = rng.choice(editable, size=n_edits, replace=False)
    edits = []
    for a in attributes:
        others = [v for v in VALUES[str(a)] if v != combo.get(str(a))]
        edits.append((str(a), others[int(rng.integers(len(others)))]))
    return edits


def index_by_combo(world: World, splits: tuple[str, ...]) -> dict[str, list[int]]:
    by_combo: dict[str, list[int]] = defaultdict(list)
    for it in world.items:
        if it.split in splits:
            by_combo[it.combo.key].append(it.id)
    return by_combo


def make_triplets(world: World, n: int, seed: int, n_edits: tuple[int, ...] = (1, 2, 3),
                  target_split: str = "train", reference_splits: tuple[str, ...] = ("train",),
                  held_out_phrasing: bool = False, noise: float = 0.0,
                  text_references: bool = False) -> list[Triplet]:
    """``n`` triplets whose targets come from ``target_split``; deterministic from ``seed``.

    The target is drawn first, then the reference is the target with ``k`` attributes
    changed, so every target combination is reachable, held-out ones included. With
    ``text_references`` the reference is the caption of that combination, which needs no
    image in the catalog (any combination outside the held-out split).
    """
    rng = np.random.default_rng(seed)
    targets = [it for it in world.items if it.split == target_split]
    references = index_by_combo(world, reference_splits)
    held_out = set(index_by_combo(world, ("heldout",)))
    clean_targets = index_by_combo(world, (target_split,))
    out: list[Triplet] = []
    while len(out) < n:
        target = targets[int(rng.integers(len(targets)))]
        k = int(n_edits[int(rng.integers(len(n_edits)))])
        reverse = edit_choices(target.combo, rng, k)
        ref_combo = target.combo.replace(**dict(reverse))
        if text_references:
            if ref_combo.key in held_out:
                continue
            reference_id = -1
        elif ref_combo.key not in references:
            continue
        else:
            ref_ids = references[ref_combo.key]
            reference_id = ref_ids[int(rng.integers(len(ref_ids)))]
        parts = [phrase(a, ref_combo.get(a), target.combo.get(a), rng, held_out_phrasing) for a, _ in reverse]
        if len(parts) > 1 and rng.random() < 0.5:
            parts = [JOINERS[int(rng.integers(len(JOINERS)))].join(parts)]
        edits = [(a, target.combo.get(a)) for a, _ in reverse]
        triplet = Triplet(reference_id, parts, target.combo.key, target.id, edits,
                          reference_caption=caption(ref_combo) if text_references else "",
                          reference_combo=ref_combo.key)
        if noise and rng.random() < noise:
            triplet = _corrupt(triplet, ref_combo, rng, clean_targets)
            if triplet is None:
                continue
        out.append(triplet)
    return out


def _corrupt(triplet: Triplet, ref_combo: Combo, rng: np.random.Generator,
             pool: dict[str, list[int]]) -> Triplet | None:
    """The same instructions pointing at a target with one edited attribute wrong."""
    attribute, said = triplet.edits[int(rng.integers(len(triplet.edits)))]
    wrong = [v for v in VALUES[attribute] if v not in (said, ref_combo.get(attribute))]
    if not wrong:
        return None
    combo = Combo.from_key(triplet.target_combo).replace(**{attribute: wrong[int(rng.integers(len(wrong)))]})
    if combo.key not in pool:
        return None
    ids = pool[combo.key]
    return replace(triplet, target_combo=combo.key, target_id=ids[int(rng.integers(len(ids)))], noisy=True)
