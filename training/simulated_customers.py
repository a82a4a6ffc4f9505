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
composer as free text; "english" uses the demo's training templates (the parser
slots them), the control for forgetting; "catalog" uses the schema phrasing any
catalog's synthetic triplets are made from (``training.schema_triplets``), so
it works on a shop's catalog as well as the demo's. success@K after turn t: the target's
attribute combination is in the top K shown at turn t (a customer who already
picked an item of the target's combination counts as a success from then on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from retrieval.catalog_schema import Attribute
from retrieval.query_encoder import QueryEncoder
from retrieval.store import CatalogStore
from training.catalog_labels import LabelledCatalog
from training.schema_triplets import PairIndex
from training.schema_triplets import phrase as schema_phrase
from training.triplets import EDITABLE, phrase

SHOWN_FOR_SUCCESS = (1, 10)


class ShopAssistant(Protocol):
    """What a simulated customer talks to: the assistant's turn API (``assistant.turns.Assistant``), handed in by
    the caller because training sits below the assistant and may not build one."""

    searcher: Any

    def start(self, session_id: str) -> Any: ...

    def say(self, conv: Any, message: str = "", image: str | None = None) -> Any: ...

    def pick(self, conv: Any, item_id: str, consent: bool = False) -> Any: ...


ShopAssistantFactory = Callable[[CatalogStore, QueryEncoder, Path, bytes], ShopAssistant]
"""(store, encoder, pick log path, log salt) -> an assistant over that catalog (``Assistant.for_catalog``)."""


@dataclass(frozen=True)
class Style:
    """A customer vocabulary: phrasings per attribute value, plus "make it shorter/longer" for one-step changes."""

    name: str
    words: dict[str, dict[str, tuple[str, ...]]]
    shorter: tuple[str, ...] = ()
    longer: tuple[str, ...] = ()
    sleeve_shorter: tuple[str, ...] = ()
    sleeve_longer: tuple[str, ...] = ()

    def phrase(self, attribute: str, old: str, new: str, rng: np.random.Generator, order: list[str]) -> str:
        """How this customer asks to change ``attribute`` from ``old`` to ``new`` (``order``: its values, in order)."""
        options = list(self.words[attribute][new])
        if attribute in ("length", "sleeve") and old in order and abs(order.index(new) - order.index(old)) == 1 \
                and not (attribute == "sleeve" and "sleeveless" in (old, new)):
            up = order.index(new) > order.index(old)
            options += list((self.sleeve_longer if up else self.sleeve_shorter) if attribute == "sleeve"
                            else (self.longer if up else self.shorter))
        return options[int(rng.integers(len(options)))]

    def meanings(self) -> dict[str, tuple[str, str]]:
        """What each phrase asks for: (attribute, value), or (attribute, "shorter"/"longer") for a one-step edit;
        the ground truth a learner of these customers' words is checked against."""
        out = {p: (attribute, value) for attribute, values in self.words.items()
               for value, phrases in values.items() for p in phrases}
        for attribute, word, phrases in (("length", "shorter", self.shorter), ("length", "longer", self.longer),
                                         ("sleeve", "shorter", self.sleeve_shorter),
                                         ("sleeve", "longer", self.sleeve_longer)):
            out |= dict.fromkeys(phrases, (attribute, word))
        return out

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


CATALOG_STYLE = "catalog"
STYLES = (*VOCABULARIES, "english", CATALOG_STYLE)


def say(style: str, attribute: Attribute, old: str, new: str, rng: np.random.Generator) -> str:
    """One instruction in ``style``: "english" is the demo's synthetic training phrasing, "catalog" the phrasing
    synthetic triplets of any catalog are made from (``training.schema_triplets``)."""
    if style == "english":
        return phrase(attribute.name, old, new, rng, held_out=False)
    if style == CATALOG_STYLE:
        return schema_phrase(attribute, old, new, rng, held_out=False)
    if style not in VOCABULARIES:
        raise ValueError(f"unknown customer style {style!r} (one of {', '.join(STYLES)})")
    return VOCABULARIES[style].phrase(attribute.name, old, new, rng, attribute.value_names)


def check_style(labels: LabelledCatalog, style: str) -> None:
    """``ValueError`` unless customers of ``style`` have words for every attribute of this catalog they may change
    ("french" and "english" know only the demo world's garment attributes; "catalog" knows any schema)."""
    if style not in STYLES:
        raise ValueError(f"unknown customer style {style!r} (one of {', '.join(STYLES)})")
    known = set(VOCABULARIES[style].words) if style in VOCABULARIES else set(EDITABLE) if style == "english" else None
    missing = [a for a in labels.space.editable if known is not None and a not in known]
    if missing:
        raise ValueError(f"{style} customers have no words for this catalog's {', '.join(missing)}; they speak of "
                         f"the demo world's garments only. Use --style {CATALOG_STYLE} (the catalog's own words)")


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
    """What the customers know of the catalog: every row's id, image file and label (``training.catalog_labels``)."""

    labels: LabelledCatalog
    row_of: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_store(cls, store: CatalogStore) -> CustomerCatalog:
        schema = store.catalog_schema
        names = [n for n in schema.attribute_names if n in store.layout.metadata_names]
        table = store.snapshot(["id", "path", *names]).to_pydict()
        metadata = [{n: table[n][i] for n in names} for i in range(len(table["id"]))]
        labels = LabelledCatalog.build(schema, table["id"], table["path"], metadata, heldout_share=0.0)
        return cls(labels, {item: row for row, item in enumerate(labels.ids)})

    @property
    def paths(self) -> list[str]:
        return self.labels.paths

    def values_of(self, item_id: str) -> dict[str, str]:
        return self.labels.values[self.row_of[item_id]]


def agreement(a: dict[str, str], b: dict[str, str], attributes: tuple[str, ...]) -> int:
    return sum(a.get(x, "") == b.get(x, "") for x in attributes)


@dataclass
class Customer:
    """A hidden target, the photo they start from, and the order they bring up the differences in."""

    target: int
    start: int
    order: list[str]
    consent: bool


def make_customers(catalog: CustomerCatalog, config: CustomerConfig) -> list[Customer]:
    """Deterministic from ``config.seed``: targets drawn uniformly, each starting from an item whose label is
    ``differing`` attributes away (fewer where the catalog has no such item); the order is random."""
    rng = np.random.default_rng([config.seed, 17])
    labels = catalog.labels
    index = PairIndex(labels, np.arange(len(labels)))
    out: list[Customer] = []
    tries = 0
    while len(out) < config.sessions and tries < 100 * config.sessions:
        tries += 1
        target = int(rng.integers(len(labels)))
        key = str(labels.keys[target])
        starts: list[str] = []
        for k in range(config.differing, 0, -1):
            starts = index.neighbours(key, k)
            if starts:
                break
        if not starts:
            continue
        start_key = starts[int(rng.integers(len(starts)))]
        rows = index.rows_by_key[start_key]
        start = rows[int(rng.integers(len(rows)))]
        differing = [a for a in labels.space.editable
                     if labels.values[start].get(a, "") != labels.values[target].get(a, "")]
        order = [differing[i] for i in rng.permutation(len(differing))]
        out.append(Customer(target, start, order, bool(rng.random() < config.consent)))
    return out


def run_customer(assistant: ShopAssistant, catalog: CustomerCatalog, customer: Customer, config: CustomerConfig,
                 index: int) -> dict[str, Any]:
    """One session through ``Assistant.say`` / ``Assistant.pick``; returns hits per turn and what happened."""
    rng = np.random.default_rng([config.seed, index, 29])
    labels = catalog.labels
    space = labels.space
    conv = assistant.start(f"simulated-{config.style}-{config.seed}-{index}")
    opening = assistant.say(conv, image=labels.paths[customer.start])
    if not opening.ok:
        raise RuntimeError(f"the assistant refused a catalog photo: {opening.message}")
    target = labels.values[customer.target]
    current, stated = labels.values[customer.start], set()
    hits = {k: [] for k in SHOWN_FOR_SUCCESS}
    picks = found = 0
    said: list[str] = []
    for _turn in range(config.turns):
        if found:
            for k in hits:
                hits[k].append(True)
            continue
        differing = [a for a in space.applicable(target) if current.get(a, "") != target.get(a, "")]
        todo = [a for a in customer.order if a in differing and a not in stated] + \
               [a for a in differing if a not in customer.order and a not in stated]
        if not todo:
            for k in hits:
                hits[k].append(False)
            continue
        attribute = todo[0]
        text = say(config.style, space.schema.attribute(attribute), current.get(attribute, ""), target[attribute],
                   rng)
        said.append(text)
        reply = assistant.say(conv, text)
        if not reply.ok:
            raise RuntimeError(f"the assistant failed a turn ({text!r}): {reply.message}")
        stated.add(attribute)
        shown = [catalog.values_of(s.id) for s in reply.shown]
        for k in hits:
            hits[k].append(any(v == target for v in shown[:k]))
        near = agreement(current, target, space.attributes)
        useful = [j for j in range(len(shown)) if agreement(shown[j], target, space.attributes) > near
                  and any(shown[j].get(a) == target.get(a) for a in stated)]
        if useful:
            best = max(useful, key=lambda j: (agreement(shown[j], target, space.attributes), -j))
            picked = assistant.pick(conv, reply.shown[best].id, consent=customer.consent)
            if not picked.ok:
                raise RuntimeError(f"the assistant failed a pick: {picked.message}")
            picks += 1
            current, stated = shown[best], set()
            found = int(current == target)
    return {"hits": hits, "picks": picks, "found": bool(found), "said": said}


def simulate_customers(assistant: ShopAssistant, catalog: CustomerCatalog, config: CustomerConfig,
                       progress: bool = True) -> dict[str, Any]:
    """Run every customer; success@K per turn in percent, picks logged, sessions that found their target."""
    check_style(catalog.labels, config.style)
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
