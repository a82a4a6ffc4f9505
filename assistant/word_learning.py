"""Learning a shop's customers' words from their picks: free text that keeps going with one value becomes a word for it.

A phrase the rules cannot place ("en rouge", "bleu marine", "raccourcir")
reaches the composer as free text, which a model that never read those words
serves poorly. The pick log shows what customers meant by it: the item they
picked after saying it. For every such phrase, each change from the reference
to the picked item is counted (the picked value of an attribute the reference
did not have; a one-step move along an ordered attribute, as a relative word).
A phrase becomes a learned word for the change it goes with in at least
``min_share`` of its picks, seen at least ``min_picks`` times and
``min_surprise`` standard deviations more often than among all picks (so a
value that picks show anyway is not taken for the phrase's meaning). Words are
learned surest first, and a learned word explains its change away in the picks
where it was said, so a phrase said beside it is not credited with that change.
An uploaded reference has no known values: its picks count for values, not for
relative moves, and where a phrase has picks from known references too, those
must bear its meaning out (a value an upload's pick merely shares, such as the
category every length phrase goes with, does not). A one-step move that a value
explains as well is that value.

Learned words live with the catalog (``CatalogSchema.learned``, in its store,
not in the shop's ``schema.json``); ``circhat words`` lists, learns and forgets
them, and the rules read them as they read the shop's synonyms.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from assistant.vocabulary import Vocabulary, variants
from retrieval.catalog_schema import CatalogSchema, LearnedWord
from retrieval.lexicon import normal
from retrieval.store import CatalogStore

MIN_PICKS = 4
MIN_SHARE = 0.6
MIN_SURPRISE = 3.0
MAX_WORDS = 5
MAX_CHARS = 40


@dataclass(frozen=True)
class Change:
    """What a pick changed: ``value`` is a value name, or a relative word when ``relative``."""

    attribute: str
    value: str
    relative: bool = False


@dataclass
class Tally:
    """Picks counted for one phrase (or for all picks): how many, how many from a known reference, each change."""

    picks: int = 0
    known: int = 0
    changes: Counter = field(default_factory=Counter)
    from_known: Counter = field(default_factory=Counter)

    def add(self, changes: Iterable[Change], known: bool) -> None:
        changes = list(changes)
        self.picks += 1
        self.known += known
        self.changes.update(changes)
        if known:
            self.from_known.update(changes)

    def consistent(self, change: Change, min_picks: int, min_share: float) -> bool:
        """Whether the picks from a known reference, where an unchanged value cannot pass for a change, bear
        ``change`` out (at half ``min_share``) when there are ``min_picks`` of them."""
        return self.known < min_picks or self.from_known[change] >= min_share / 2 * self.known

    def share(self, change: Change) -> float:
        """How often ``change`` came with these picks, out of the picks that could show it."""
        out_of = self.known if change.relative else self.picks
        return self.changes[change] / out_of if out_of else 0.0


def changes(schema: CatalogSchema, reference: Mapping[str, str] | None, picked: Mapping[str, str]) -> list[Change]:
    """Every change from ``reference`` (None: unknown, as for an upload) to ``picked`` that a phrase may have asked."""
    out = []
    for attribute in schema.attributes:
        value = picked.get(attribute.name)
        if not value:
            continue
        before = reference.get(attribute.name) if reference is not None else None
        if before == value:
            continue
        out.append(Change(attribute.name, value))
        names = attribute.value_names
        if attribute.ordered and before in names and value in names:
            step = names.index(value) - names.index(before)
            out += [Change(attribute.name, r.word, relative=True) for r in attribute.relative if r.step == step]
    return out


def free_phrases(record: Mapping[str, Any], vocabulary: Vocabulary, max_words: int = MAX_WORDS) -> set[str]:
    """The phrases of a logged pick that reached the model as free text and that the vocabulary does not know: up
    to ``max_words`` words, or ``MAX_CHARS`` characters written without spaces (Japanese)."""
    out = set()
    for instruction in record.get("parsed") or []:
        if not isinstance(instruction, Mapping) or instruction.get("attribute") is not None:
            continue
        phrase = normal(str(instruction.get("said") or instruction.get("text") or ""))
        if phrase and len(phrase.split()) <= max_words and len(phrase) <= MAX_CHARS and not any(
                vocabulary.meanings(v) for v in variants(phrase)):
            out.add(phrase)
    return out


@dataclass
class _Evidence:
    """One pick as the learner sees it: the unknown phrases said, the changes not yet explained, and whether the
    reference was known."""

    phrases: set[str]
    changes: set[Change]
    known: bool


def _tallies(evidence: list[_Evidence]) -> tuple[Tally, dict[str, Tally]]:
    overall, by_phrase = Tally(), defaultdict(Tally)
    for pick in evidence:
        overall.add(pick.changes, pick.known)
        for phrase in pick.phrases:
            by_phrase[phrase].add(pick.changes, pick.known)
    return overall, by_phrase


def _surprise(tally: Tally, overall: Tally, change: Change) -> float:
    """How many standard deviations more often ``change`` came with the phrase than with picks at large."""
    n = tally.known if change.relative else tally.picks
    p = min(max(overall.share(change), 1e-3), 1 - 1e-3)
    return (tally.changes[change] - n * p) / math.sqrt(n * p * (1 - p))


def _absolute_if_as_good(change: Change, tally: Tally) -> Change:
    """A one-step move that a value of the same attribute explains as well, from known references, is that value:
    "à manches courtes" from sleeveless is one step longer, but it names short sleeves."""
    if not change.relative:
        return change
    values = [c for c in tally.changes if c.attribute == change.attribute and not c.relative]
    rival = max(values, key=lambda c: tally.from_known[c], default=None)
    return rival if rival is not None and tally.from_known[rival] >= tally.from_known[change] else change


def learn_words(records: Iterable[Mapping[str, Any]], vocabulary: Vocabulary,
                values_of: Callable[[str], Mapping[str, str] | None], min_picks: int = MIN_PICKS,
                min_share: float = MIN_SHARE, min_surprise: float = MIN_SURPRISE) -> list[LearnedWord]:
    """The words the picks in ``records`` teach (see the module docstring); ``values_of`` gives a catalog item's
    attribute values by id (None for an item no longer in the catalog).

    >>> from retrieval.catalog_schema import infer_schema
    >>> colours = ("red", "blue", "green", "black", "white", "pink")
    >>> schema = infer_schema(["colour"], [{"colour": c} for c in colours])
    >>> said = lambda phrase, start, picked: {"reference": {"kind": "catalog", "id": start}, "picked": {"id": picked},
    ...     "parsed": [{"attribute": None, "said": phrase}]}
    >>> log = [said("en rouge", s, "red") for s in colours[1:]] + [said("en bleu", s, "blue") for s in colours[2:]]
    >>> log += [said("hmm", a, b) for a, b in zip(colours, colours[::-1])]
    >>> [(w.phrase, w.value, w.agreeing) for w in learn_words(log, Vocabulary(schema), lambda c: {"colour": c})]
    [('en rouge', 'red', 5)]
    """
    schema = vocabulary.schema
    evidence = []
    for record in records:
        picked = values_of(str((record.get("picked") or {}).get("id", "")))
        if picked is None:
            continue
        reference = record.get("reference") or {}
        before = values_of(str(reference.get("id", ""))) if reference.get("kind") == "catalog" else None
        evidence.append(_Evidence(free_phrases(record, vocabulary), set(changes(schema, before, picked)),
                                  before is not None))
    learned: list[LearnedWord] = []
    overall, _ = _tallies(evidence)
    while True:
        _, by_phrase = _tallies(evidence)
        candidates = [(phrase, c) for phrase, tally in by_phrase.items() for c, n in tally.changes.items()
                      if n >= min_picks and tally.share(c) >= min_share
                      and _surprise(tally, overall, c) >= min_surprise and tally.consistent(c, min_picks, min_share)]
        if not candidates:
            return sorted(learned, key=lambda w: (w.attribute, w.value, w.phrase))
        phrase, best = max(candidates, key=lambda pc: (by_phrase[pc[0]].share(pc[1]), not pc[1].relative,
                                                       by_phrase[pc[0]].changes[pc[1]], pc[0]))
        tally = by_phrase[phrase]
        best = _absolute_if_as_good(best, tally)
        learned.append(LearnedWord(phrase=phrase, attribute=best.attribute, value=best.value,
                                   picks=tally.known if best.relative else tally.picks,
                                   agreeing=tally.changes[best]))
        for pick in evidence:
            if phrase in pick.phrases:
                pick.phrases.discard(phrase)
                pick.changes = {c for c in pick.changes if c.attribute != best.attribute}


def learn_into(schema: CatalogSchema, records: Iterable[Mapping[str, Any]],
               values_of: Callable[[str], Mapping[str, str] | None], **thresholds: Any) -> CatalogSchema:
    """``schema`` with the words its picks teach learned (a phrase learned before is relearned from the evidence)."""
    return schema.with_learned(learn_words(records, Vocabulary(schema.model_copy(update={"learned": []})), values_of,
                                           **thresholds))


def catalog_values(store: CatalogStore) -> dict[str, dict[str, str]]:
    """Every item's attribute values by id, as the catalog's schema reads its metadata."""
    schema = store.catalog_schema
    names = [n for n in schema.attribute_names if n in store.layout.metadata_names]
    table = store.snapshot(["id", *names]).to_pydict()
    return {item: schema.known_values({n: table[n][i] for n in names}) for i, item in enumerate(table["id"])}
