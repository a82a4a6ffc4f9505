"""A shop's own catalog of another domain, end to end: files in, words out.

The second catalog (bags, shoes and hats with material, strap, heel height, size…) is written by the tests as files
only, a folder of photos plus a Shopify 2024+ product export, then ingested by ``python -m ui.store_commands ingest``
in a subprocess (which must not import the generator) and served in-process by ``ui.serve.launch``. A
``gradio_client`` shopper then uses the catalog's own words: they come back as chips, the relative size edits resolve
against the picked item's size and reach the pick log as the catalog's canonical values, the filters are the
catalog's attributes, a value the shop lacks gets the "not carried" reply, and the page shows this catalog's words
and none of the demo world's.

The backbone has fixed random weights, so ranking means nothing here: every assertion is about what the schema,
the parser and the filters decide. The generator is imported only to write the files and to know the truth.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant.triplet_log import scan_log
from retrieval.catalog_schema import CatalogSchema, load_schema
from retrieval.store import CatalogStore
from tests.fixtures_app import environment, free_port
from training.accessories_world import (
    APPLIES,
    ATTRIBUTES,
    CATEGORIES,
    VALUES,
    AccessoriesConfig,
    expected_items,
    write_accessories_catalog,
)
from ui.page_text import translated

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CONFIG = AccessoriesConfig(seed=0, n_products=24)
COLUMN = {"colour": "color"}  # the shop's Shopify option is called "Color"; every other attribute keeps its name
ORDERED = ("size", "strap", "heel_height", "brim")
DEMO_WORDS = re.compile(r"\b(t-shirts?|sleeves?|sleeveless|dress(es)?|skirts?|trousers|necklines?|striped|stripes|"
                        r"polka|garments?)\b", re.IGNORECASE)
NOT_HERE = re.compile(r"No (\w+) items here; closest: ([^.]+)\.")
GENERATOR_MODULES = ("training.accessories_world", "training.render_accessories")


@dataclass
class Shop:
    """The shop's files, its ingested store, the ingest's output and the running app."""

    folder: Path
    csv: Path
    db: Path
    items: list[dict[str, str]]
    ingest_stdout: str
    ingest_imports: set[str]
    url: str
    log: Path

    @property
    def by_sku(self) -> dict[str, dict[str, str]]:
        return {item["sku"]: item for item in self.items}

    def values(self, attribute: str) -> set[str]:
        return {item[attribute] for item in self.items if item[attribute]}

    def schema(self) -> CatalogSchema:
        return load_schema(self.folder / "schema.json")


def _imported_modules(importtime: str) -> set[str]:
    """Module names from ``python -X importtime``'s report on stderr."""
    return {line.rsplit("|", 1)[-1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


@pytest.fixture(scope="module")
def shop(backbone, tmp_path_factory):
    """The accessories catalog written as files, ingested from the command line, and served on a free port."""
    from ui.serve import launch

    root = tmp_path_factory.mktemp("shop-catalog")
    csv_path = write_accessories_catalog(root / "shop", CONFIG, progress=False)
    db = root / "catalog.lancedb"
    command = [sys.executable, "-X", "importtime", "-m", "ui.store_commands", "ingest", str(csv_path.parent),
               "--metadata", str(csv_path), "--model", backbone.spec.model, "--db", str(db), "--no-progress"]
    env = {**os.environ, "CIRCHAT_HOME": str(root / "home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # CIRCHAT_HOME: no model registry of this machine picks the composer
    with environment(CIRCHAT_LOG_SALT="shop-salt", CIRCHAT_HOME=str(root / "home"), CIRCHAT_LLM=None):
        served = launch(db, log=root / "triplets" / "triplets.jsonl", host="127.0.0.1", port=free_port(),
                        block=False)
    try:
        yield Shop(folder=csv_path.parent, csv=csv_path, db=db, items=expected_items(CONFIG),
                   ingest_stdout=done.stdout, ingest_imports=_imported_modules(done.stderr), url=served.url,
                   log=served.assistant.log.path)
    finally:
        served.close()


class Shopper:
    """One gradio_client session; every call passes the filters by the catalog's attribute names."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        api = self.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        self.api = api
        self.no_price_limit = next(p["parameter_default"] for p in api["/send"]["parameters"]
                                   if p["parameter_name"] == "price")
        labels = [r["label"] for r in api["/send"]["returns"]]
        self.gallery_at = labels.index("Results: click one to pick it")
        self.last_gallery: Any = None

    def _details(self, outputs) -> dict:
        self.last_gallery = outputs[self.gallery_at]
        return next(o for o in outputs if isinstance(o, dict) and "results" in o)

    def send(self, text: str, category: str = "any", price: float | None = None, **filters) -> dict:
        price = self.no_price_limit if price is None else price
        return self._details(self.client.predict({"text": text, "files": []}, category, price, api_name="/send",
                                                 **filters))

    def pick(self, item_id: str, category: str = "any", price: float | None = None, **filters) -> dict:
        price = self.no_price_limit if price is None else price
        return self._details(self.client.predict(item_id, category, price, False, api_name="/pick", **filters))

    def refresh(self, category: str = "any", price: float | None = None, **filters) -> dict:
        price = self.no_price_limit if price is None else price
        return self._details(self.client.predict(category, price, api_name="/refresh", **filters))

    def start_over(self) -> dict:
        return self._details(self.client.predict("any", self.no_price_limit, api_name="/start_over"))


def assert_catalog_rows(shop: Shop, results: list[dict]) -> None:
    """Every shown item is a row of the shop's file, with the values the file gives it."""
    truth = shop.by_sku
    for result in results:
        assert result["id"] in truth, result["id"]
        item, meta = truth[result["id"]], result["metadata"]
        assert meta["title"] == item["title"] and meta["price"] == pytest.approx(float(item["price"]))
        for attribute in ATTRIBUTES:
            assert meta[COLUMN.get(attribute, attribute)] == (item[attribute] or None), (result["id"], attribute)


def unavailable(message: str) -> tuple[str, list[str]]:
    found = NOT_HERE.search(message)
    assert found, message
    return found.group(1), [v.strip() for v in found.group(2).split(",")]


def test_ingest_infers_the_shops_schema_from_its_files(shop):
    """The ingest summary and schema.json (beside products.csv, and in the table) hold the file's attributes, with
    their values, orders and where each applies; the command never imported the generator."""
    for module in GENERATOR_MODULES:
        assert module not in shop.ingest_imports
    assert "retrieval.catalog_schema" in shop.ingest_imports  # the import report is there to be read

    n_drafts = len({i["handle"] for i in expected_items(CONFIG, include_drafts=True) if i["status"] == "draft"})
    out = shop.ingest_stdout
    assert f"table now has {len(shop.items)} rows" in out and f"{n_drafts} draft products skipped" in out
    assert "metadata read as shopify" in out
    printed = {}
    for line in out.splitlines():
        found = re.match(r"^\s+attribute (\w+)( \(category\))?: (.*?)(?:; only for (.*))?$", line)
        if found:
            printed[found.group(1)] = found
    assert printed["category"].group(2) == " (category)"
    assert printed["size"].group(3) == "S < M < L"
    assert printed["strap"].group(3) == "None < Short < Long" and printed["strap"].group(4) == "Bag"
    assert printed["heel_height"].group(3) == "Flat < Low < High" and printed["heel_height"].group(4) == "Shoe"
    prices = [float(i["price"]) for i in shop.items]
    assert f"range price: {min(prices):g} to {max(prices):g}" in out

    schema = shop.schema()
    assert schema.category == "category"
    assert CatalogStore.open(shop.db).catalog_schema == schema
    for attribute in ATTRIBUTES:
        column = COLUMN.get(attribute, attribute)
        found = schema.attribute(column)
        assert found is not None, column
        counts = Counter(i[attribute] for i in shop.items if i[attribute])
        assert {v.name: v.items for v in found.values} == dict(counts), column
        line = printed[column]
        separator = " < " if attribute in ORDERED else ", "
        assert set(line.group(3).split(separator)) == set(counts), line.group(0)
        where = sorted({i["category"] for i in shop.items if i[attribute]})
        assert where == sorted(APPLIES[attribute])
        if attribute == "category" or set(where) == set(CATEGORIES):
            assert found.applies_to is None and line.group(4) is None, column
        else:
            assert sorted(found.applies_to or []) == where and line.group(4) == ", ".join(found.applies_to)
        assert found.ordered == (attribute in ORDERED), column
        if found.ordered:
            assert found.value_names == list(VALUES[attribute]), column
    assert set(CatalogStore.open(shop.db).snapshot(["id"])["id"].to_pylist()) == set(shop.by_sku)


def test_a_session_in_the_shops_words(shop):
    """Chips in the catalog's words, a filtered refresh, a pick of a size-M bag, relative size edits resolved against
    it, and the pick log carrying the catalog's canonical values."""
    c = Shopper(shop.url)
    before = len(scan_log(shop.log).records)
    first = c.send("a black leather bag")
    assert first["ok"] and first["chips"] == ["Black", "Leather", "Bag"] and first["mode"] == "text"
    words = first["query"].split()
    assert first["query"].startswith(shop.schema().caption.prefix) and words[-1] == "bag"
    assert {"black", "leather"} <= set(words) and "[reference image]" not in first["query"]
    assert len(first["results"]) == 12
    assert_catalog_rows(shop, first["results"])

    medium = c.refresh("Bag", size=["M"])
    assert medium["ok"] and medium["chips"] == first["chips"] and medium["results"]
    assert all(r["metadata"]["size"] == "M" and r["metadata"]["category"] == "Bag" for r in medium["results"])
    assert_catalog_rows(shop, medium["results"])
    chosen = medium["results"][0]

    picked = c.pick(chosen["id"], "Bag", size=["M"])
    ref = f"ref #{chosen['id']}"
    assert picked["ok"] and picked["chips"] == [ref]
    record = picked["logged"]
    assert record["picked"]["id"] == chosen["id"] and record["instructions"] == ["a black leather bag"]
    assert [(p["attribute"], p["value"]) for p in record["parsed"]] == [
        ("color", "Black"), ("material", "Leather"), ("category", "Bag")]
    assert "size = 'M'" in record["where"] and "category = 'Bag'" in record["where"]

    steps = [("bigger", "L"), ("make it smaller", "M"), ("a size smaller", "S"), ("smaller", "S"),
             ("a size up", "M"), ("larger", "L")]
    for said, size in steps:
        reply = c.send(said)
        assert reply["ok"] and reply["chips"] == [ref, size], (said, reply["chips"])
    suede = c.send("in suede")
    assert suede["chips"] == [ref, "L", "Suede"]
    assert_catalog_rows(shop, suede["results"])

    second = c.pick(suede["results"][0]["id"])
    logged = scan_log(shop.log).records[before:]
    assert [r["picked"]["id"] for r in logged] == [chosen["id"], suede["results"][0]["id"]]
    assert logged[1] == second["logged"] and logged[1]["reference"] == {"kind": "catalog", "id": chosen["id"]}
    parsed = logged[1]["parsed"]
    assert [(p["attribute"], p["value"], p["said"]) for p in parsed] == [
        ("size", "L", "larger"), ("material", "Suede", "suede")]
    schema = shop.schema()
    for p in parsed:
        assert p["value"] in schema.attribute(p["attribute"]).value_names
    assert logged[1]["instructions"] == [p["text"] for p in parsed]
    assert logged[1]["instructions"] == [schema.attribute("size").edit_phrase("L"),
                                         schema.attribute("material").edit_phrase("Suede")]


def test_filters_are_the_catalogs_attributes(shop):
    """Filters named after the shop's columns keep exactly the rows the file says match; one applying to a single
    category keeps only that category; a range on price; a value the shop lacks is refused."""
    from gradio_client.exceptions import AppError

    c = Shopper(shop.url)
    c.send("a bag")
    suede = c.refresh(material=["Suede"])
    assert suede["results"] and all(r["metadata"]["material"] == "Suede" for r in suede["results"])
    colours = c.refresh(color=["Navy", "Red"])
    assert colours["results"] and all(r["metadata"]["color"] in ("Navy", "Red") for r in colours["results"])

    narrow = c.refresh("Bag", material=["Suede"], color=["Navy", "Red"], size=["S"])
    expected = {i["sku"] for i in shop.items if i["category"] == "Bag" and i["material"] == "Suede"
                and i["colour"] in ("Navy", "Red") and i["size"] == "S"}
    assert 0 < len(expected) <= 12 and {r["id"] for r in narrow["results"]} == expected

    priced = c.refresh(price=80, min_price=60)
    expected = {i["sku"] for i in shop.items if 60 <= float(i["price"]) <= 80}
    assert 0 < len(expected) <= 12 and {r["id"] for r in priced["results"]} == expected
    cheap = c.refresh(price=50)
    assert cheap["results"] and all(r["metadata"]["price"] <= 50 for r in cheap["results"])

    strap = c.refresh(strap=["Long"])
    assert strap["results"] and all(r["metadata"]["category"] == "Bag" and r["metadata"]["strap"] == "Long"
                                    for r in strap["results"])
    heel = c.refresh(heel_height=["High"])
    assert heel["results"] and all(r["metadata"]["category"] == "Shoe" and r["metadata"]["heel_height"] == "High"
                                   for r in heel["results"])
    nothing = c.refresh("Hat", strap=["Long"])
    assert nothing["ok"] and nothing["results"] == [] and "Nothing in the catalog matches" in nothing["message"]
    with pytest.raises(AppError, match="not in the list of choices"):
        c.refresh(color=["Grey"])


def test_a_value_the_shop_does_not_carry(shop):
    """Grey, gray, green and wool are not in this shop: the reply says so, names what it has, and changes nothing;
    said beside words it does carry, those still search."""
    c = Shopper(shop.url)
    start = c.send("a navy canvas bag")
    colours, materials = shop.values("colour"), shop.values("material")
    for said, word, carried in (("make it grey", "grey", colours), ("gray", "grey", colours),
                                ("in green", "green", colours), ("in wool", "wool", materials)):
        reply = c.send(said)
        assert reply["ok"], said
        assert unavailable(reply["message"])[0] == word, reply["message"]
        closest = unavailable(reply["message"])[1]
        assert closest and set(closest) <= carried, reply["message"]
        assert "Nothing changed" in reply["message"]
        assert reply["chips"] == start["chips"] == ["Navy", "Canvas", "Bag"]
        assert [r["id"] for r in reply["results"]] == [r["id"] for r in start["results"]]
        assert reply["query"] == start["query"]

    fresh = Shopper(shop.url)
    mixed = fresh.send("a grey suede bag")
    assert mixed["ok"] and mixed["chips"] == ["Suede", "Bag"] and unavailable(mixed["message"])[0] == "grey"
    assert "grey" not in mixed["query"] and mixed["results"]


def test_negated_colours_keep_only_the_wanted_one(shop):
    c = Shopper(shop.url)
    assert c.send("a red leather bag")["chips"] == ["Red", "Leather", "Bag"]
    colours = shop.values("colour")
    navy = c.send("could it be navy rather than red?")
    assert [chip for chip in navy["chips"] if chip in colours] == ["Navy"]
    assert navy["chips"] == ["Leather", "Bag", "Navy"] and "red" not in navy["query"].split()
    assert c.send("make it tan")["chips"] == ["Leather", "Bag", "Tan"]
    cream = c.send("not tan — cream")
    assert cream["chips"] == ["Leather", "Bag", "Cream"]
    assert "cream" in cream["query"].split() and "tan" not in cream["query"].split()


def test_no_result_is_selected_after_a_new_search(shop):
    """The gallery comes back with no selected card after a message, a pick and a refresh, so the page never shows a
    stale selection on new results; each card's caption is the item's own title and values."""
    c = Shopper(shop.url)
    searches = [lambda: c.send("a tan shoe")]
    searches.append(lambda: c.pick(c.refresh()["results"][2]["id"]))
    searches.append(lambda: c.send("make it black"))
    searches.append(lambda: c.refresh(material=["Leather"]))
    for search in searches:
        reply = search()
        gallery = c.last_gallery
        assert isinstance(gallery, dict) and "selected_index" in gallery, gallery
        assert gallery["selected_index"] is None
        cards = gallery["value"]
        assert len(cards) == len(reply["results"]) > 0
        for card, result in zip(cards, reply["results"], strict=True):
            item = shop.by_sku[result["id"]]
            assert Path(card["image"]["orig_name"]).name == item["image"]
            assert card["caption"].startswith(item["title"])
            assert {item["colour"], item["size"], item["material"]} <= set(card["caption"].split(" · ")[-1]
                                                                              .split(", "))


def _config(shop: Shop, language: str = "en") -> dict:
    """The page's config with its i18n keys translated, as a browser asking for ``language`` shows it."""
    with urllib.request.urlopen(f"{shop.url.rstrip('/')}/config", timeout=30) as response:
        config = json.load(response)
    words = config["i18n_translations"][language]
    for component in config["components"]:
        component["props"] = {name: translated(value, words) for name, value in component["props"].items()}
    return config


def test_the_page_speaks_this_catalogs_words(shop):
    """The served page's filters are the schema's attributes with the file's values, and nothing of the demo
    world's garments appears on it."""
    config = _config(shop)
    dropdowns = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c.get("type") == "dropdown"}
    choices = {key: [value for _, value in props["choices"]] for key, props in dropdowns.items()}
    assert choices["category"] == ["any", *sorted(shop.values("category"))]
    assert choices["filter-size"] == ["S", "M", "L"] and dropdowns["filter-size"]["label"].lower() == "size"
    assert set(choices["filter-material"]) == shop.values("material") == {"Leather", "Canvas", "Suede", "Straw"}
    assert set(choices["filter-color"]) == shop.values("colour")
    assert "Grey" not in choices["filter-color"] and "Green" not in choices["filter-color"]
    assert choices["filter-strap"] == ["None", "Short", "Long"]
    assert choices["filter-heel_height"] == ["Flat", "Low", "High"]
    assert "heel height" in dropdowns["filter-heel_height"]["label"].lower()
    sliders = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c.get("type") == "slider"}
    top = max(float(i["price"]) for i in shop.items)
    assert sliders["max-price"]["maximum"] == int(top) + 1 == Shopper(shop.url).no_price_limit

    page = json.dumps(config)
    assert not DEMO_WORDS.search(page), DEMO_WORDS.search(page)


def test_the_pages_examples_are_understood(shop):
    """Each refinement the page suggests, typed after a pick, is understood as the catalog's slots: no free text,
    no "not carried"."""
    config = _config(shop)
    intro = next(c["props"]["value"] for c in config["components"]
                 if c.get("type") == "markdown" and c["props"].get("elem_id") == "model-version")
    placeholder = next(c["props"]["placeholder"] for c in config["components"]
                       if c.get("type") == "multimodaltextbox")
    suggested = re.findall(r"“([^”]+)”", intro + placeholder)
    assert len(suggested) >= 2
    c = Shopper(shop.url)
    description, *edits = suggested
    first = c.send(description)
    assert first["ok"] and first["results"] and not any(chip.startswith("“") for chip in first["chips"])
    c.pick(first["results"][0]["id"])
    for said in edits:
        reply = c.send(said)
        assert reply["ok"] and not NOT_HERE.search(reply["message"]), (said, reply["message"])
        assert not any(chip.startswith("“") for chip in reply["chips"]), (said, reply["chips"])


def test_the_pick_reply_suggests_edits_in_the_catalogs_words(shop):
    """After a pick the assistant suggests what to change; those examples must be this shop's, not the garment
    demo's ("shorter sleeves", "make it blue" in a shop with no sleeves and no blue)."""
    c = Shopper(shop.url)
    first = c.send("a cream straw hat")
    picked = c.pick(first["results"][0]["id"])
    assert picked["ok"]
    assert not DEMO_WORDS.search(picked["message"]), picked["message"]
    for example in re.findall(r"“([^”]+)”", picked["message"]):
        reply = c.send(example)
        assert not NOT_HERE.search(reply["message"]), (example, reply["message"])
        assert not any(chip.startswith("“") for chip in reply["chips"]), (example, reply["chips"])
        c.send("undo")
