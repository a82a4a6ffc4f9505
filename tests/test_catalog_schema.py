"""Catalog schema inference: the schema of each hand-written metadata fixture field by field, the inference rules
(many-valued and tag columns, "none" and where an attribute applies, numbers, lexicon synonyms, ordered scales,
the caption grammar), and schema.json as the shop's editing surface, down to what the parser then understands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.parser import parse_rules
from assistant.vocabulary import Vocabulary
from retrieval.catalog_schema import CatalogSchema, infer_schema, load_schema, save_schema
from retrieval.errors import SchemaError
from retrieval.lexicon import load_lexicon
from retrieval.metadata_formats import column_name, read_metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metadata"
LEXICON = load_lexicon()
COLOURS = LEXICON.concepts["colour"].values


def fixture_schema(name: str) -> CatalogSchema:
    """The schema ingest infers for a fixture: the reader's table straight into ``infer_schema``."""
    table = read_metadata(FIXTURES / name)
    return infer_schema(table.columns, [r.values for r in table.rows], table.roles, currency=table.currency)


def shape(schema: CatalogSchema) -> dict[str, dict]:
    """Per attribute: its values in order, whether ordered, where it applies, its lexicon concept and absent value."""
    return {a.name: {"values": a.value_names, "ordered": a.ordered, "applies_to": a.applies_to,
                     "concept": a.concept, "absent": a.absent} for a in schema.attributes}


def attr(values, ordered=False, applies_to=None, concept=None, absent=None) -> dict:
    return {"values": values, "ordered": ordered, "applies_to": applies_to, "concept": concept, "absent": absent}


def numeric(schema: CatalogSchema) -> list[tuple[str, float | None, float | None, str | None]]:
    return [(n.name, n.minimum, n.maximum, n.unit) for n in schema.numeric]


def slots(schema: CatalogSchema, text: str, known: dict[str, str] | None = None) -> list[tuple[str | None, str | None]]:
    return [(i.attribute, i.value) for i in parse_rules(text, Vocabulary(schema), known).instructions]


def rows_of(columns: list[str], *rows: tuple) -> list[dict[str, str]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


# ---------------------------------------------------------------- the fixtures, field by field


def test_shopify_legacy_schema():
    schema = fixture_schema("shopify_legacy.csv")
    assert schema.category == "category"
    assert shape(schema) == {
        "category": attr(["Bags", "Boots", "Dresses"], concept="category"),
        "brand": attr(["Maison Rue", "Passo"]),
        # the tote and the boot have no colour: only the dresses do
        "color": attr(["Blue", "Red"], applies_to=["Dresses"], concept="colour"),
        "gender": attr(["female"], applies_to=["Boots", "Dresses"], concept="gender"),
        "age_group": attr(["adult"], applies_to=["Dresses"], concept="age_group"),
        "heel_height": attr(["5 cm"], applies_to=["Boots"], concept="heel_height"),
    }
    category = schema.attribute("category")
    assert [v.items for v in category.values] == [1, 1, 2]
    assert "dress" in category.value("Dresses").synonyms["en"] and "handbag" in category.value("Bags").synonyms["en"]
    red = schema.attribute("color").value("Red")
    assert red.rgb == COLOURS["red"].rgb and "crimson" in red.synonyms["en"]
    # Shopify exports carry no currency: a range without a unit, over the items that have a price
    assert numeric(schema) == [("price", 35.0, 189.0, None)]
    assert schema.text == ["title", "description"]
    assert schema.ignored == {"tags": "comma-separated lists (like tags): not an attribute",
                              "size": "empty for every item"}
    assert schema.roles["price"] == "price" and schema.roles["brand"] == "brand"
    assert schema.caption.order[0] == "color"
    assert "brand" not in schema.caption.order and "category" not in schema.caption.order
    assert schema.caption.noun == "item"  # bags, boots and dresses share no lexicon domain
    assert "  attribute color: Blue, Red; only for Dresses" in schema.summary()
    assert "  range price: 35 to 189" in schema.summary()


def test_shopify_2024_schema():
    schema = fixture_schema("shopify_2024.csv")
    assert schema.category == "category"
    assert shape(schema) == {
        "category": attr(["Shirts", "Shoes"], concept="category"),
        "brand": attr(["Atelier Nord", "Passo"]),
        "size": attr(["S"], ordered=True, applies_to=["Shirts"], concept="size"),
        "color": attr(["Sage", "Tan", "White"], concept="colour"),
        "heel_height": attr(["3 cm"], applies_to=["Shoes"], concept="heel_height"),
        "gender": attr(["male"], applies_to=["Shirts"], concept="gender"),
    }
    color = schema.attribute("color")
    assert color.value("Tan").synonyms["en"] == ["camel"] and color.value("Tan").rgb == COLOURS["tan"].rgb
    assert "キャメル" in color.value("Tan").synonyms["ja"] and color.value("Tan").shown("ja") == "キャメル"
    assert color.value("Sage").synonyms == {} and color.value("Sage").rgb is None  # not a lexicon colour
    assert [r.word for r in schema.attribute("size").relative] == ["smaller", "bigger"]
    assert numeric(schema) == [("price", 59.0, 98.0, None)]
    assert schema.text == ["title", "description"]
    assert schema.ignored == {"tags": "comma-separated lists (like tags): not an attribute",
                              "color_pattern": "comma-separated lists (like tags): not an attribute"}


def test_merchant_tsv_schema():
    schema = fixture_schema("merchant_feed.tsv")
    assert schema.category == "category"
    got = shape(schema)
    got.pop("sale_price", None)  # see test_merchant_sale_price_is_a_range_in_the_feed_currency
    assert got == {
        "category": attr(["Handbags", "Maxi"], concept="category"),
        "availability": attr(["in_stock", "out_of_stock"], concept="availability"),
        "color": attr(["blue", "natural", "red"], concept="colour"),
        "size": attr(["S"], ordered=True, applies_to=["Maxi"], concept="size"),
        "material": attr(["crepe", "straw"], concept="material"),
        "pattern": attr(["solid", "woven"], concept="pattern", absent="solid"),
    }
    assert schema.attribute("pattern").value("solid").label == "plain"
    assert schema.attribute("material").value("straw").synonyms["en"] == ["raffia", "rattan", "wicker"]
    assert numeric(schema)[0] == ("price", 45.5, 79.0, "USD")
    assert schema.price is not None and schema.price.unit == "USD"
    assert schema.text == ["title", "description"]
    assert schema.ignored == {
        "brand": "the same value ('Luna') for every item",
        "condition": "the same value ('new') for every item",
        "gender": "the same value ('female') for every item",
        "age_group": "the same value ('adult') for every item",
    }
    assert schema.caption.order[:4] == ["size", "color", "pattern", "material"]
    assert "  range price: 45.5 to 79 USD" in schema.summary()
    assert "  not an attribute: brand (the same value ('Luna') for every item)" in schema.summary()


def test_merchant_csv_schema_with_european_prices():
    schema = fixture_schema("merchant_feed.csv")
    assert shape(schema) == {
        "category": attr(["Derbies", "Shoes"], concept="category"),
        "availability": attr(["in stock", "out of stock"], concept="availability"),
        "color": attr(["black", "brown"], concept="colour"),
        # the two derby variants differ in size, so the merged item has none: size only for the loafer
        "size": attr(["40"], applies_to=["Shoes"], concept="size"),
        "material": attr(["leather", "suede"], concept="material"),
    }
    assert numeric(schema) == [("price", 89.9, 1249.0, "EUR")]
    assert schema.ignored == {"brand": "the same value ('Cordon') for every item",
                              "condition": "the same value ('new') for every item"}


def test_plain_csv_schema():
    schema = fixture_schema("plain_catalog.csv")
    material = column_name("素材")
    assert schema.category == "category"
    assert shape(schema) == {
        "category": attr(["skirt", "trousers"], concept="category"),
        "colour": attr(["blue", "maroon"], concept="colour"),
        "pattern": attr(["checked", "solid", "striped"], concept="pattern", absent="solid"),
        material: attr(["ウール", "綿"], concept="material"),  # the lexicon's Japanese words name the concept
    }
    # rows 2 (no image) and 3 (no id) are not items; row 4 has no price
    assert [v.items for v in schema.attribute("colour").values] == [1, 2]
    assert numeric(schema) == [("price", 36.99, 54.99, None)]
    assert schema.text == ["name", "caption"]
    assert schema.ignored == {}
    assert schema.caption.order == ["colour", "pattern", material]
    assert schema.caption.noun == "garment"  # skirts and trousers are both garments
    assert schema.caption_for({"category": "skirt", "colour": "maroon", "pattern": "striped"}) == \
        "a photo of a maroon striped skirt"
    assert schema.caption_for({"category": "trousers", "colour": "maroon", "pattern": "solid"}) == \
        "a photo of a maroon trousers"


def test_merchant_sale_price_is_a_range_in_the_feed_currency():
    schema = fixture_schema("merchant_feed.tsv")
    assert schema.attribute("sale_price") is None
    assert ("sale_price", 39.0, 59.0, "USD") in numeric(schema)


def test_plural_shopify_categories_read_singular_in_captions():
    schema = fixture_schema("shopify_legacy.csv")
    assert schema.caption_for({"category": "Bags"}) == "a photo of a bag"
    assert schema.describe({"category": "Dresses", "color": "Red"}).endswith("red dress")


def test_merchant_caption_leaves_out_stock_status_and_prices():
    schema = fixture_schema("merchant_feed.tsv")
    table = read_metadata(FIXTURES / "merchant_feed.tsv")
    for row in table.rows:
        caption = schema.caption_for(schema.known_values(row.values))
        assert row.values["availability"] not in caption and "59.00" not in caption, caption


# ---------------------------------------------------------------- rules


def test_thousands_of_distinct_values_are_not_an_attribute_and_summary_says_why():
    rows = [{"category": ["bag", "hat"][i % 2], "colour": ["red", "navy", "black"][i % 3],
             "sku_note": f"batch {i:05d}", "story": f"A long story about item {i} and why it is lovely"}
            for i in range(3000)]
    schema = infer_schema(["category", "colour", "sku_note", "story"], rows)
    assert schema.attribute_names == ["category", "colour"]
    assert schema.ignored["sku_note"] == "3,000 distinct values (more than 50): free text, not an attribute"
    assert schema.ignored["story"].startswith("3,000 distinct values")
    assert schema.text == ["story"]  # long free text still feeds captions; short codes do not
    summary = schema.summary()
    assert "  not an attribute: sku_note (3,000 distinct values (more than 50): free text, not an attribute)" \
        in summary
    assert not any(line.startswith("  attribute sku_note") for line in summary)
    # the threshold is max_values: the same 50 notes would be an attribute
    few = infer_schema(["sku_note"], [{"sku_note": f"batch {i % 50}"} for i in range(3000)])
    assert few.attribute_names == ["sku_note"] and len(few.attribute("sku_note").values) == 50


def test_comma_separated_tags_are_not_an_attribute():
    rows = rows_of(["category", "tags", "colour"],
                   ("bag", "summer, sale", "red"), ("bag", "leather, new", "navy"),
                   ("hat", "wool; winter", "red"), ("hat", "sale", "navy"))
    schema = infer_schema(["category", "tags", "colour"], rows)
    assert "tags" not in schema.attribute_names
    assert schema.ignored["tags"] == "comma-separated lists (like tags): not an attribute"
    # a value that merely contains a comma in a minority of rows is still a value
    names = rows_of(["finish"], ("matte",), ("gloss",), ("matte, brushed",))
    assert infer_schema(["finish"], names).attribute("finish").value_names == ["gloss", "matte", "matte, brushed"]


def test_none_with_real_values_stays_a_value_and_only_none_does_not_apply():
    columns = ["category", "strap", "heel", "brim"]
    rows = rows_of(columns,
                   ("bag", "none", "n/a", ""), ("bag", "short", "N/A", ""), ("bag", "long", "n/a", ""),
                   ("shoe", "none", "low", ""), ("shoe", "", "high", ""), ("shoe", "None", "low", ""),
                   ("hat", "none", "-", "wide"), ("hat", "none", "", "narrow"), ("hat", "", "-", "none"))
    schema = infer_schema(columns, rows)
    strap, heel, brim = (schema.attribute(n) for n in ("strap", "heel", "brim"))
    # bags have real straps and strapless ones: "none" is a value there; shoes and hats only ever say none
    assert strap.value_names == ["none", "short", "long"] and strap.ordered and strap.absent == "none"
    assert strap.applies_to == ["bag"]
    # heels: the placeholders ("n/a", "-") of bags and hats are not values
    assert heel.value_names == ["low", "high"] and heel.applies_to == ["shoe"]
    # hats carry "none" beside real brims: it stays a value
    assert brim.value_names == ["none", "narrow", "wide"] and brim.applies_to == ["hat"]
    assert schema.applies("heel", "shoe") and not schema.applies("heel", "bag")
    assert schema.applies("heel", None)  # unknown category: yes
    assert not schema.applies("no_such_column", "shoe")
    assert schema.known_values(rows[0]) == {"category": "bag", "strap": "none"}
    assert schema.known_values(rows[3]) == {"category": "shoe", "heel": "low"}
    assert schema.known_values(rows[8]) == {"category": "hat", "brim": "none"}
    assert "  attribute heel: low < high; only for shoe" in schema.summary()


def test_numbers_many_distinct_are_a_range_few_are_an_ordered_attribute():
    rows = [{"weight_g": f"{100 + 2.5 * i:.1f}", "shoe_size": str(9 + i % 4), "price": ["10", "20"][i % 2],
             "rating": ["1", "2", "3"][i % 3]} for i in range(80)]
    schema = infer_schema(["weight_g", "shoe_size", "price", "rating"], rows, currency="GBP")
    assert numeric(schema) == [("weight_g", 100.0, 297.5, None), ("price", 10.0, 20.0, "GBP")]
    # in numeric order, not string order ("10" < "9")
    assert schema.attribute("shoe_size").value_names == ["9", "10", "11", "12"]
    assert schema.attribute("shoe_size").ordered
    assert schema.attribute("rating").value_names == ["1", "2", "3"] and schema.attribute("rating").ordered
    assert schema.attribute("shoe_size").step("11", "bigger") == "12"
    assert "  range weight_g: 100 to 297.5" in schema.summary()


def test_lexicon_synonyms_attach_to_the_catalogs_own_value():
    rows = rows_of(["category", "colour"], ("dress", "Burgundy"), ("dress", "Teal"), ("dress", "Teal"))
    schema = infer_schema(["category", "colour"], rows)
    burgundy = schema.attribute("colour").value("Burgundy")
    maroon = COLOURS["maroon"]
    assert burgundy.rgb == maroon.rgb
    assert burgundy.synonyms["en"][0] == "maroon"
    assert set(maroon.synonyms["en"]) <= set(burgundy.synonyms["en"])
    assert slots(schema, "wine red please") == [("colour", "Burgundy")]
    assert slots(schema, "maroon") == [("colour", "Burgundy")]
    assert slots(schema, "turquoise") == [("colour", "Teal")]
    parsed = parse_rules("grey", Vocabulary(schema))
    assert parsed.instructions == [] and [u.value for u in parsed.unavailable] == ["grey"]


def test_a_word_another_carried_value_owns_is_never_borrowed():
    rows = rows_of(["colour"], ("green",), ("olive",), ("navy",), ("dark blue",), ("Maroon",), ("Burgundy",))
    schema = infer_schema(["colour"], rows)
    colour = schema.attribute("colour")
    words = {v.name: {w for ws in v.synonyms.values() for w in ws} for v in colour.values}
    assert "olive" not in words["green"] and "green" not in words["olive"]
    assert "dark blue" not in words["navy"] and words["dark blue"] == set()
    assert "burgundy" not in words["Maroon"] and "wine" in words["Maroon"] and words["Burgundy"] == set()
    assert colour.value("dark blue").rgb == COLOURS["navy"].rgb  # the look is shared, the words are not
    for said, value in [("olive", "olive"), ("army green", "olive"), ("green", "green"), ("emerald", "green"),
                        ("dark blue", "dark blue"), ("navy blue", "navy"), ("burgundy", "Burgundy"),
                        ("maroon", "Maroon"), ("oxblood", "Maroon")]:
        assert slots(schema, said) == [("colour", value)], said


def test_borrowing_guard_holds_when_the_lexicon_lists_one_carried_value_under_another():
    lexicon = LEXICON.model_copy(deep=True)
    lexicon.concepts["colour"].values["green"].synonyms["en"] += ["olive", "khaki green"]
    schema = infer_schema(["colour"], rows_of(["colour"], ("green",), ("olive",), ("green",)), lexicon=lexicon)
    colour = schema.attribute("colour")
    assert "olive" not in colour.value("green").synonyms["en"]
    assert "khaki green" in colour.value("green").synonyms["en"]
    assert slots(schema, "olive") == [("colour", "olive")] and slots(schema, "khaki green") == [("colour", "green")]


def test_reinference_does_not_lend_a_new_values_name_to_an_old_value():
    first = infer_schema(["colour"], rows_of(["colour"], ("navy",), ("red",)))
    assert "dark blue" in first.attribute("colour").value("navy").synonyms["en"]
    again = infer_schema(["colour"], rows_of(["colour"], ("navy",), ("red",), ("dark blue",)), previous=first)
    assert "dark blue" not in again.attribute("colour").value("navy").synonyms.get("en", [])
    assert slots(again, "dark blue") == [("colour", "dark blue")]


@pytest.mark.parametrize(("column", "values", "order", "concept"), [
    ("size", ["XL", "S", "M", "L", "XS"], ["XS", "S", "M", "L", "XL"], "size"),
    ("size", ["Large", "Small", "Medium"], ["Small", "Medium", "Large"], "size"),
    ("length", ["maxi", "mini", "midi"], ["mini", "midi", "maxi"], "length"),
    ("sleeve_length", ["long-sleeve", "sleeveless", "short-sleeve"], ["sleeveless", "short-sleeve", "long-sleeve"],
     "sleeve"),
    ("heel", ["high", "flat", "mid", "low"], ["flat", "low", "mid", "high"], "heel_height"),
])
def test_scales_order_along_the_lexicon(column, values, order, concept):
    attribute = infer_schema([column], [{column: v} for v in values]).attribute(column)
    assert attribute.concept == concept and attribute.ordered
    assert attribute.value_names == order
    assert attribute.relative and {r.step for r in attribute.relative} == {-1, 1}


def test_colours_are_not_a_scale_and_a_partly_known_scale_is_not_ordered():
    colour = infer_schema(["colour"], [{"colour": v} for v in ["white", "black", "red"]]).attribute("colour")
    assert not colour.ordered and colour.relative == [] and colour.value_names == ["black", "red", "white"]
    size = infer_schema(["size"], [{"size": v} for v in ["M", "One Size", "S"]]).attribute("size")
    assert size.concept == "size" and not size.ordered and size.relative == []
    assert size.step("M", "bigger") is None


def test_steps_edits_and_labels_along_ordered_attributes():
    columns = ["category", "size", "sleeve", "pattern", "heel"]
    rows = rows_of(columns, ("dress", "S", "sleeveless", "solid", "n/a"), ("dress", "M", "short-sleeve", "striped", ""),
                   ("dress", "XL", "long-sleeve", "dotted", ""), ("shoe", "L", "", "solid", "low"),
                   ("shoe", "XS", "", "solid", "high"))
    schema = infer_schema(columns, rows)
    size, sleeve, pattern, heel = (schema.attribute(n) for n in ("size", "sleeve", "pattern", "heel"))
    assert size.value_names == ["XS", "S", "M", "L", "XL"]
    assert size.step("M", "bigger") == "L" and size.step("M", "smaller") == "S"
    assert size.step("XL", "bigger") == "XL" and size.step("XS", "smaller") == "XS"  # clamped at the ends
    assert size.step(None, "bigger") is None and size.step("M", "shorter") is None
    assert size.unanchored("smaller") == "XS" and size.unanchored("bigger") == "XL"
    assert size.edit_phrase("S") == "make it small" and size.edit_phrase("bigger") == "bigger"
    assert sleeve.applies_to == ["dress"]
    assert sleeve.unanchored("shorter") == "short-sleeve"  # the short end past "no sleeves at all"
    assert sleeve.edit_phrase("shorter") == "shorter sleeves" and sleeve.label("shorter") == "shorter sleeves"
    assert sleeve.edit_phrase("short-sleeve") == "with short sleeves"
    assert sleeve.label("short-sleeve") == "short sleeves"
    assert pattern.edit_phrase("striped") == "with stripes" and pattern.label("solid") == "plain"
    assert pattern.edit_phrase("solid") == "make it plain" and not pattern.ordered
    assert pattern.step("solid", "shorter") is None and pattern.unanchored("shorter") is None
    assert pattern.label("paisley") == "paisley" and pattern.edit_phrase("Paisley") == "make it paisley"
    assert heel.edit_phrase("low") == "with low heels" and heel.step("low", "higher") == "high"
    assert slots(schema, "a size bigger", {"size": "M"}) == [("size", "L")]
    assert slots(schema, "shorter sleeves", {"category": "dress", "sleeve": "long-sleeve"}) == \
        [("sleeve", "short-sleeve")]


def test_caption_grammar():
    columns = ["category", "colour", "material", "size", "pattern", "brand"]
    rows = rows_of(columns, ("bag", "black", "leather", "S", "solid", "Acme"),
                   ("bag", "orange", "canvas", "L", "striped", "Zed"), ("hat", "navy", "straw", "M", "dotted", "Acme"))
    schema = infer_schema(columns, rows)
    assert schema.caption.order == ["size", "colour", "pattern", "material"]  # no brand, no category
    assert schema.caption.noun == "accessory"
    item = {"category": "bag", "colour": "black", "material": "leather", "size": "S", "pattern": "solid",
            "brand": "Acme"}
    # the absent pattern (solid) says nothing; size reads as a word; the brand is not pictured
    assert schema.caption_for(item) == "a photo of a small black leather bag"
    assert schema.describe(item) == "a small black leather bag"
    assert schema.caption_for({**item, "pattern": "striped"}) == "a photo of a small black striped leather bag"
    assert schema.describe({"category": "bag", "colour": "orange"}) == "an orange bag"
    assert schema.describe({"colour": "navy"}) == "a navy accessory"  # no category: the catalog's domain noun
    assert schema.describe({"category": "hat"}) == "a hat"
    assert schema.describe({"size": "bigger", "category": "bag"}) == "a large bag"  # relative: the far end
    assert schema.caption.prefix == "a photo of"


# ---------------------------------------------------------------- schema.json, the shop's editing surface

SHOP_COLUMNS = ["category", "colour", "fit", "material", "title"]


def shop_rows() -> list[dict[str, str]]:
    rows = []
    for i in range(12):
        rows.append({"category": ["dress", "skirt"][i % 2], "colour": ["red", "navy", "yellow", "green"][i % 4],
                     "fit": ["slim", "regular", "relaxed"][i % 3], "material": ["cotton", "linen"][i % 2],
                     "title": f"Item {i}"})
    return rows


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def find(data: dict, attribute: str, value: str | None = None) -> dict:
    found = next(a for a in data["attributes"] if a["name"] == attribute)
    return found if value is None else next(v for v in found["values"] if v["name"] == value)


def shop_edits(data: dict) -> None:
    find(data, "colour")["display"] = {"en": "Shade", "de": "Farbe"}
    find(data, "colour", "red")["synonyms"]["de"] = ["rot"]
    find(data, "colour", "red")["synonyms"]["fr"] = ["rouge", "vermillon"]
    data["attributes"] = [a for a in data["attributes"] if a["name"] != "material"]
    data["ignored"]["material"] = "we do not sell by fabric"
    fit = find(data, "fit")
    by_name = {v["name"]: v for v in fit["values"]}
    fit["values"] = [by_name[n] for n in ("slim", "regular", "relaxed")]
    fit["ordered"] = True
    fit["relative"] = [{"word": "looser", "step": 1, "phrases": {"en": ["looser", "roomier"]}},
                       {"word": "tighter", "step": -1, "phrases": {"en": ["tighter", "more fitted"]}}]
    data["languages"] = ["en", "de", "fr"]


def test_save_and_load_round_trip(tmp_path):
    schema = infer_schema(SHOP_COLUMNS, shop_rows())
    path = tmp_path / "schema.json"
    save_schema(schema, path)
    assert load_schema(path) == schema
    assert not (tmp_path / "schema.json.tmp").exists()
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == 1


def test_shop_edits_survive_reinference_and_change_what_the_parser_understands(tmp_path):
    rows = shop_rows()
    inferred = infer_schema(SHOP_COLUMNS, rows)
    assert inferred.attribute("fit").value_names == ["regular", "relaxed", "slim"]
    assert not inferred.attribute("fit").ordered
    assert slots(inferred, "rouge") == [(None, None)] and slots(inferred, "looser", {"fit": "slim"}) == [(None, None)]
    path = tmp_path / "schema.json"
    save_schema(inferred, path)
    edit_json(path, shop_edits)
    edited = load_schema(path)

    # the data moves on: no yellow any more, a new colour and a new fit
    later = [r for r in rows if r["colour"] != "yellow"]
    later.append({"category": "dress", "colour": "teal", "fit": "oversized", "material": "wool", "title": "Item 99"})
    schema = infer_schema(SHOP_COLUMNS, later, previous=edited)

    colour, fit = schema.attribute("colour"), schema.attribute("fit")
    assert colour.display == {"en": "Shade", "de": "Farbe", "ja": "色"} and colour.shown("de") == "Farbe"
    assert colour.shown("fr") == "Shade"
    assert colour.value("red").synonyms["fr"] == ["rouge", "vermillon"]
    assert colour.value("red").synonyms["de"] == ["rot"]
    assert colour.value_names == ["green", "navy", "red", "teal"]  # yellow gone, teal added after the kept ones
    assert "turquoise" in colour.value("teal").synonyms["en"]  # a new value gets the lexicon's words
    assert [v.items for v in colour.values] == [3, 3, 3, 1]  # counts follow today's data
    assert "material" not in schema.attribute_names and schema.ignored["material"] == "we do not sell by fabric"
    assert "material" not in schema.caption.order
    assert fit.ordered and fit.value_names == ["slim", "regular", "relaxed", "oversized"]
    assert [r.word for r in fit.relative] == ["looser", "tighter"]
    assert schema.languages == ["en", "de", "fr", "ja"]
    assert schema.text == ["title"]

    # and what the parser now understands
    assert slots(schema, "rouge") == [("colour", "red")]
    assert slots(schema, "in rot") == [("colour", "red")]
    assert slots(schema, "turquoise") == [("colour", "teal")]
    assert slots(schema, "looser", {"fit": "slim"}) == [("fit", "regular")]
    assert slots(schema, "roomier", {"fit": "regular"}) == [("fit", "relaxed")]
    assert slots(schema, "tighter", {"fit": "relaxed"}) == [("fit", "regular")]
    assert slots(schema, "more fitted", {"fit": "slim"}) == [("fit", "slim")]
    assert slots(schema, "linen") == [(None, None)]  # an ignored column is no slot
    gone = parse_rules("yellow", Vocabulary(schema))
    assert gone.instructions == [] and [u.value for u in gone.unavailable] == ["yellow"]

    # saving the re-inferred schema and inferring once more changes nothing
    save_schema(schema, path)
    assert infer_schema(SHOP_COLUMNS, later, previous=load_schema(path)) == schema


def test_declared_order_on_a_lexicon_scale_gets_its_relative_words(tmp_path):
    rows = rows_of(["length"], ("cropped",), ("hip",), ("knee",), ("ankle",))
    path = tmp_path / "schema.json"
    save_schema(infer_schema(["length"], rows), path)

    def declare(data):
        length = find(data, "length")
        by_name = {v["name"]: v for v in length["values"]}
        length["values"] = [by_name[n] for n in ("cropped", "hip", "knee", "ankle")]
        length["ordered"] = True

    edit_json(path, declare)
    schema = infer_schema(["length"], rows, previous=load_schema(path))
    assert schema.attribute("length").value_names == ["cropped", "hip", "knee", "ankle"]
    assert slots(schema, "longer", {"length": "hip"}) == [("length", "knee")]


@pytest.mark.parametrize(("text", "problem"), [
    ('{"attributes": [', r"is not valid JSON \(line 1, column 17"),
    ('{"category": "colour",\n "attributes": [}', r"is not valid JSON \(line 2, column"),
    ('{"attributes": {"colour": ["red"]}}', r"does not describe a catalog schema: attributes: Input should be a "
                                            r"valid list"),
    ('{"attributes": [{"name": "fit", "ordered": "perhaps"}]}', r"attributes\.0\.ordered: Input should be a valid "
                                                                r"boolean"),
    ('{"attributes": [{"name": "colour", "values": [{"name": "red", "rgb": "red"}]}]}',
     r"attributes\.0\.values\.0\.rgb"),
    ('{"numeric": [{"name": "price", "minimum": "cheap"}]}', r"numeric\.0\.minimum"),
    ('["colour", "size"]', r"does not describe a catalog schema"),
])
def test_a_broken_schema_json_names_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "schema.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match=problem) as raised:
        load_schema(path)
    assert str(raised.value).startswith(str(path))


def test_a_schema_json_saved_in_latin1_is_a_schema_error(tmp_path):
    path = tmp_path / "schema.json"
    path.write_bytes('{"attributes": [{"name": "colour", "display": {"fr": "Teinté"}}]}'.encode("latin-1"))
    with pytest.raises(SchemaError, match=r"schema\.json"):
        load_schema(path)
