"""Simulated customers: sessions driven through the assistant's Python API, filling the pick log.

Each customer holds a hidden target item, starts by uploading a photo of a
catalog item that differs from it in a few attributes, then states one
differing attribute per turn in their own vocabulary, and picks the best shown
item (most attributes agreeing with the target, then the better rank) among
those that show something they asked for and are closer to the target than
their current reference. A shopper does not pick an item that ignores their
words or is no closer than what they have; picking it anyway would log a
triplet that contradicts the words. A pick makes that item the reference, as in
the app. When every differing attribute has been said without such an item
shown, they give up.

The "french" style is a vocabulary that neither the synthetic training
templates (``training.triplets.TEMPLATES``) nor the rule parser
(``assistant.parser.SYNONYMS``) covers, so every instruction reaches the
composer as free text; "english" uses the training templates (the parser slots
them), the control for forgetting. success@K after turn t: the target's
attribute combination is in the top K shown at turn t (a customer who already
picked an item of the target's combination counts as a success from then on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from assistant.turns import Assistant
from retrieval.store import CatalogStore
from training.triplets import EDITABLE, phrase
from training.world import ATTRIBUTES, VALUES, Combo

SHOWN_FOR_SUCCESS = (1, 10)


@dataclass(frozen=True)
class Style:
    """A customer vocabulary: phrasings per attribute value, plus "make it shorter/longer" for one-step changes."""

    name: str
    words: dict[str, dict[str, tuple[str, ...]]]
    shorter: tuple[str, ...] = ()
    longer: tuple[str, ...] = ()
    sleeve_shorter: tuple[str, ...] = ()
    sleeve_longer: tuple[str, ...] = ()

    def phrase(self, attribute: str, old: str, new: str, rng: np.random.Generator) -> str:
        """How this customer asks to change ``attribute`` from ``old`` to ``new``."""
        options = list(self.words[attribute][new])
        order = VALUES[attribute]
        if attribute in ("length", "sleeve") and old in order and abs(order.index(new) - order.index(old)) == 1 \
                and not (attribute == "sleeve" and "sleeveless" in (old, new)):
            up = order.index(new) > order.index(old)
            options += list((self.sleeve_longer if up else self.sleeve_shorter) if attribute == "sleeve"
                            else (self.longer if up else self.shorter))
        return options[int(rng.integers(len(options)))]

    def phrases(self) -> list[str]:
        return sorted({p for values in self.words.values() for ps in values.values() for p in ps}
                      | {*self.shorter, *self.longer, *self.sleeve_shorter, *self.sleeve_longer})


FRENCH = Style(
    name="french",
    words={
        "colour": {
            "red": ("en rouge", "rouge plutôt"), "maroon": ("lie de vin", "en lie-de-vin"),
            "orange": ("en orangé", "orangée"), "yellow": ("en jaune", "jaune plutôt"),
            "green": ("en vert", "verte"), "teal": ("bleu canard", "en bleu canard"),
            "blue": ("en bleu", "bleue"), "navy": ("bleu marine", "en bleu marine"),
            "purple": ("en pourpre", "pourpre plutôt"), "pink": ("en rosé", "couleur rosée"),
            "beige": ("couleur sable", "en sable"), "black": ("en noir", "noire"),
        },
        "pattern": {
            "solid": ("uni", "sans motif"), "striped": ("à rayures", "rayée"),
            "dotted": ("à pois", "avec des pois"), "checked": ("à carreaux", "avec des carreaux"),
        },
        "sleeve": {
            "sleeveless": ("sans manches", "sans les manches"),
            "short-sleeve": ("manches courtes", "à manches courtes"),
            "long-sleeve": ("manches longues", "à manches longues"),
        },
        "length": {
            "short": ("courte", "bien courte"), "knee-length": ("aux genoux", "longueur genou"),
            "long": ("longue", "jusqu'aux chevilles"),
        },
        "neckline": {"v-neck": ("col en pointe", "encolure en pointe"), "crew-neck": ("col rond", "encolure ronde")},
    },
    shorter=("raccourcir", "la raccourcir"), longer=("rallonger", "la rallonger"),
    sleeve_shorter=("raccourcir les manches",), sleeve_longer=("rallonger les manches",),
)
VOCABULARIES = {"french": FRENCH}
STYLES = (*VOCABULARIES, "english")


def say(style: str, attribute: str, old: str, new: str, rng: np.random.Generator) -> str:
    """One instruction in ``style``; "english" is the synthetic training phrasing."""
    if style == "english":
        return phrase(attribute, old, new, rng, held_out=False)
    if style not in VOCABULARIES:
        raise ValueError(f"unknown customer style {style!r} (one of {', '.join(STYLES)})")
    return VOCABULARIES[style].phrase(attribute, old, new, rng)


@dataclass(frozen=True)
class CustomerConfig:
    """``sessions`` customers from ``seed``; each starts ``differing`` attributes away and has ``turns`` turns."""

    sessions: int = 100
    seed: int = 0
    style: str = "french"
    differing: int = 3
    turns: int = 5
    consent: float = 0.7


@dataclass
class CustomerCatalog:
    """What the customers know of the catalog: every row's id, image file and attribute combination."""

    ids: list[str]
    paths: list[str]
    combos: list[Combo]
    by_combo: dict[str, list[int]] = field(default_factory=dict)
    row_of: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_store(cls, store: CatalogStore) -> CustomerCatalog:
        names = store.layout.metadata_names
        if "combo" not in names and not all(a in names for a in ATTRIBUTES):
            raise ValueError("simulated customers need the demo attributes (a combo column or category, colour, "
                             "pattern, sleeve, length, neckline) in the catalog")
        columns = ["id", "path", *(["combo"] if "combo" in names else ATTRIBUTES)]
        table = store.snapshot(columns).to_pydict()
        keys = table["combo"] if "combo" in table else ["|".join(str(table[a][i]) for a in ATTRIBUTES)
                                                        for i in range(len(table["id"]))]
        catalog = cls([str(i) for i in table["id"]], list(table["path"]), [Combo.from_key(str(k)) for k in keys])
        for row, combo in enumerate(catalog.combos):
            catalog.by_combo.setdefault(combo.key, []).append(row)
        catalog.row_of = {item: row for row, item in enumerate(catalog.ids)}
        return catalog

    def combo_of(self, item_id: str) -> Combo:
        return self.combos[self.row_of[item_id]]


def agreement(a: Combo, b: Combo) -> int:
    return sum(a.get(x) == b.get(x) for x in ATTRIBUTES)


@dataclass
class Customer:
    """A hidden target, the photo they start from, and the order they bring up the differences in."""

    target: int
    start: int
    order: list[str]
    consent: bool


def make_customers(catalog: CustomerCatalog, config: CustomerConfig) -> list[Customer]:
    """Deterministic from ``config.seed``: targets drawn uniformly, starts ``differing`` attributes away."""
    rng = np.random.default_rng([config.seed, 17])
    out: list[Customer] = []
    while len(out) < config.sessions:
        target = int(rng.integers(len(catalog.ids)))
        combo = catalog.combos[target]
        editable = [a for a in EDITABLE if a in combo.applicable()]
        order = [str(a) for a in rng.choice(editable, size=min(config.differing, len(editable)), replace=False)]
        start = combo
        for a in order:
            start = start.replace(**{a: str(rng.choice([v for v in VALUES[a] if v != combo.get(a)]))})
        rows = catalog.by_combo.get(start.key)
        consent = bool(rng.random() < config.consent)
        if rows:
            out.append(Customer(target, rows[int(rng.integers(len(rows)))], order, consent))
    return out


def run_customer(assistant: Assistant, catalog: CustomerCatalog, customer: Customer, config: CustomerConfig,
                 index: int) -> dict[str, Any]:
    """One session through ``Assistant.say`` / ``Assistant.pick``; returns hits per turn and what happened."""
    rng = np.random.default_rng([config.seed, index, 29])
    conv = assistant.start(f"simulated-{config.style}-{config.seed}-{index}")
    opening = assistant.say(conv, image=catalog.paths[customer.start])
    if not opening.ok:
        raise RuntimeError(f"the assistant refused a catalog photo: {opening.message}")
    target = catalog.combos[customer.target]
    current, stated = catalog.combos[customer.start], set()
    hits = {k: [] for k in SHOWN_FOR_SUCCESS}
    picks = found = 0
    said: list[str] = []
    for _turn in range(config.turns):
        if found:
            for k in hits:
                hits[k].append(True)
            continue
        differing = [a for a in EDITABLE if a in target.applicable() and current.get(a) != target.get(a)]
        todo = [a for a in customer.order if a in differing and a not in stated] + \
               [a for a in differing if a not in customer.order and a not in stated]
        if not todo:
            for k in hits:
                hits[k].append(False)
            continue
        attribute = todo[0]
        text = say(config.style, attribute, current.get(attribute), target.get(attribute), rng)
        said.append(text)
        reply = assistant.say(conv, text)
        if not reply.ok:
            raise RuntimeError(f"the assistant failed a turn ({text!r}): {reply.message}")
        stated.add(attribute)
        shown = [catalog.combo_of(s.id) for s in reply.shown]
        for k in hits:
            hits[k].append(any(c == target for c in shown[:k]))
        useful = [j for j in range(len(shown)) if agreement(shown[j], target) > agreement(current, target)
                  and any(shown[j].get(a) == target.get(a) for a in stated)]
        if useful:
            best = max(useful, key=lambda j: (agreement(shown[j], target), -j))
            picked = assistant.pick(conv, reply.shown[best].id, consent=customer.consent)
            if not picked.ok:
                raise RuntimeError(f"the assistant failed a pick: {picked.message}")
            picks += 1
            current, stated = shown[best], set()
            found = int(current == target)
    return {"hits": hits, "picks": picks, "found": bool(found), "said": said}


def simulate_customers(assistant: Assistant, catalog: CustomerCatalog, config: CustomerConfig,
                       progress: bool = True) -> dict[str, Any]:
    """Run every customer; success@K per turn in percent, picks logged, sessions that found their target."""
    customers = make_customers(catalog, config)
    outcomes = []
    for i, customer in enumerate(tqdm(customers, desc=f"simulated customers ({config.style})", unit="session",
                                      disable=not progress)):
        outcomes.append(run_customer(assistant, catalog, customer, config, i))
    n = max(len(outcomes), 1)
    success = {f"success@{k}": [round(100 * sum(o["hits"][k][t] for o in outcomes) / n, 2)
                                for t in range(config.turns)] for k in SHOWN_FOR_SUCCESS}
    return {
        "sessions": len(outcomes), "style": config.style, "seed": config.seed, **success,
        "picks": sum(o["picks"] for o in outcomes),
        "found": round(100 * sum(o["found"] for o in outcomes) / n, 2),
        "model": assistant.searcher.model_version,
        "example": outcomes[0]["said"] if outcomes else [],
    }
