"""Metadata readers: plain CSV, Shopify exports (legacy and 2024+), Merchant feeds, image references, bad files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from retrieval.errors import MetadataError
from retrieval.metadata_formats import (
    FORMATS,
    ProductRow,
    ProductTable,
    RowIssue,
    column_name,
    detect_format,
    read_metadata,
    resolve_images,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metadata"
CDN = "https://cdn.shopify.com/s/files/1/0533/2089/files/"
SQL_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")


def ingest_column_name(header: str) -> str:
    """retrieval/ingest.py's column_name as it was, the behaviour ASCII headers must keep."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", header.strip()).strip("_").lower()
    return f"c_{name}" if not name or name[0].isdigit() else name


def header_of(name: str) -> list[str]:
    with open(FIXTURES / name, newline="", encoding="utf-8") as f:
        return next(csv.reader(f, delimiter="\t" if name.endswith(".tsv") else ","))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def by_id(table: ProductTable) -> dict[str, ProductRow]:
    return {row.id: row for row in table.rows}


# ---------------------------------------------------------------- column names


@pytest.mark.parametrize("header", ["Sleeve Length", " id ", "Body (HTML)", "2nd colour", "price-EUR", "", "___",
                                    "Variant SKU", "Compare-at price", "Option1 name", "a  b", "#", "x.y.z"])
def test_column_name_keeps_ingest_behaviour_for_ascii_headers(header):
    assert column_name(header) == ingest_column_name(header)


def test_column_name_gives_non_ascii_headers_distinct_sql_safe_names():
    names = [column_name(h) for h in ("色", "素材", "サイズ", "Цвет", "颜色", "2色", "サイズ (cm)")]
    assert len(set(names)) == len(names)
    assert all(SQL_SAFE.match(n) for n in names), names
    assert column_name("素材") == column_name(" 素材 ")
    assert column_name("サイズ (cm)").startswith("cm_")
    assert column_name("2色").startswith("c_2_")
    assert ingest_column_name("色") == "c_" and column_name("色") != "c_"


def test_column_name_transliterates_latin_and_folds_full_width():
    assert column_name("Größe") == "grosse"
    assert column_name("Café crème") == "cafe_creme"
    assert column_name("ＳＩＺＥ") == "size"


# ---------------------------------------------------------------- format detection


@pytest.mark.parametrize(("fixture", "expected"), [
    ("shopify_legacy.csv", "shopify"), ("shopify_2024.csv", "shopify"), ("merchant_feed.tsv", "merchant"),
    ("merchant_feed.csv", "merchant"), ("plain_catalog.csv", "csv"),
])
def test_detect_format_from_the_header(fixture, expected):
    assert detect_format(header_of(fixture)) == expected
    assert read_metadata(FIXTURES / fixture).format == expected


def test_unknown_headers_are_plain_csv_and_format_overrides():
    assert detect_format(["sku", "photo", "colour"]) == "csv"
    assert detect_format(["id", "image_link", "title"]) == "csv"
    assert detect_format(["Handle", "Notes"]) == "csv"
    assert FORMATS == ("csv", "shopify", "merchant")
    with pytest.raises(ValueError, match="unknown metadata format 'excel'"):
        read_metadata(FIXTURES / "plain_catalog.csv", format="excel")


# ---------------------------------------------------------------- Shopify, legacy headers


@pytest.fixture(scope="module")
def legacy() -> ProductTable:
    return read_metadata(FIXTURES / "shopify_legacy.csv")


def test_shopify_legacy_columns_roles_and_notes(legacy):
    assert legacy.format == "shopify" and legacy.source == FIXTURES / "shopify_legacy.csv"
    assert legacy.columns == ("title", "description", "brand", "category", "tags", "color", "size", "price",
                              "gender", "age_group", "heel_height")
    assert legacy.roles == {"name": "title", "description": "description", "category": "category",
                            "price": "price", "brand": "brand"}
    assert legacy.currency is None
    assert legacy.notes == [
        "4 items from 3 products (8 variants)",
        "1 draft product skipped (only active products are read)",
        "size varies within one image for 2 products, price for 1: kept one item per image, "
        "size and price left empty there",
    ]
    assert legacy.skipped == [RowIssue(12, "cashmere-scarf", "product status is draft (only active products are read)")]


def test_shopify_legacy_items_field_by_field(legacy):
    assert [r.id for r in legacy.rows] == ["SWD-RED-S", "SWD-BLU-S", "leather-ankle-boot-1", "TOTE-01"]
    red, blue, boot, tote = legacy.rows
    dress = {"title": "Silk Wrap Dress", "description": 'A silk wrap dress & matching belt. Hand wash Made in "Lyon"',
             "brand": "Maison Rue", "category": "Dresses", "tags": "silk, summer, wrap", "gender": "female",
             "age_group": "adult", "heel_height": ""}
    assert red == ProductRow("SWD-RED-S", CDN + "silk-dress-red.jpg?v=1700000001", 2,
                             {**dress, "color": "Red", "size": "", "price": "120.00"})
    assert blue == ProductRow("SWD-BLU-S", CDN + "silk-dress-blue.jpg?v=1700000002", 5,
                              {**dress, "color": "Blue", "size": "", "price": ""})
    assert boot == ProductRow("leather-ankle-boot-1", CDN + "ankle-boot.jpg?v=1699999999", 8, {
        "title": "Leather Ankle Boot", "description": "Calf leather, block heel.", "brand": "Passo",
        "category": "Boots", "tags": "leather, winter", "color": "", "size": "", "price": "189.00",
        "gender": "female", "age_group": "", "heel_height": "5 cm"})
    assert tote == ProductRow("TOTE-01", CDN + "canvas-tote.jpg?v=1690000000", 11, {
        "title": "Canvas Tote", "description": "Heavy canvas tote.", "brand": "Maison Rue", "category": "Bags",
        "tags": "", "color": "", "size": "", "price": "35.00", "gender": "", "age_group": "", "heel_height": ""})
    assert all(tuple(r.values) == legacy.columns for r in legacy.rows)


# ---------------------------------------------------------------- Shopify, 2024+ headers


@pytest.fixture(scope="module")
def modern() -> ProductTable:
    return read_metadata(FIXTURES / "shopify_2024.csv")


def test_shopify_2024_columns_roles_and_notes(modern):
    assert modern.columns == ("title", "description", "brand", "category", "tags", "size", "color", "price",
                              "color_pattern", "heel_height", "gender")
    assert modern.roles == {"name": "title", "description": "description", "category": "category",
                            "price": "price", "brand": "brand"}
    assert modern.notes == [
        "3 items from 2 products (5 variants)",
        "1 archived product and 1 draft product skipped (only active products are read)",
        "size varies within one image for 2 products: kept one item per image, size left empty there",
    ]
    assert modern.skipped == [
        RowIssue(8, "wool-beanie", "product status is archived (only active products are read)"),
        RowIssue(9, "cotton-socks", "product status is draft (only active products are read)"),
    ]


def test_shopify_2024_items_field_by_field(modern):
    shirt = {"title": "Linen Shirt", "description": "Breathable linen. Relaxed fit – easy care.",
             "brand": "Atelier Nord", "category": "Shirts", "tags": "linen, shirt", "price": "59.00",
             "color_pattern": "white; green", "heel_height": "", "gender": "male"}
    assert modern.rows == [
        ProductRow("LS-WHT-S", CDN + "linen-shirt-white.jpg?v=1712345678", 2, {**shirt, "size": "", "color": "White"}),
        ProductRow("LS-SAG-S", CDN + "linen-shirt-sage.jpg?v=1712345679", 4, {**shirt, "size": "S", "color": "Sage"}),
        ProductRow("SM-TAN-38", CDN + "suede-mule.jpg?v=1711111111", 5, {
            "title": "Suede Mule", "description": "Suede mule with a low heel.", "brand": "Passo", "category": "Shoes",
            "tags": "suede", "size": "", "color": "Tan", "price": "98.00", "color_pattern": "brown",
            "heel_height": "3 cm", "gender": ""}),
    ]


def test_both_shopify_dialects_name_the_same_things_alike(legacy, modern):
    shared = {"title", "description", "brand", "category", "tags", "color", "size", "price", "heel_height", "gender"}
    assert shared <= set(legacy.columns) and shared <= set(modern.columns)


SHOPIFY_HEADER = ("Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Option1 Name,Option1 Value,"
                  "Option2 Name,Option2 Value,Variant SKU,Variant Price,Image Src,Image Position,Variant Image,"
                  "Status\n")


def test_shopify_variants_with_their_own_images_stay_separate_and_unskued_ids_count_items(tmp_path):
    path = write(tmp_path / "export.csv", SHOPIFY_HEADER +
                 "tee,Tee,,Acme,,Tops,,Color,Red,Size,S,,10.00,https://x/tee-front.jpg,1,https://x/tee-red.jpg,active\n"
                 "tee,,,,,,,,Blue,,S,,11.00,https://x/tee-back.jpg,2,https://x/tee-blue.jpg,\n"
                 "tee,,,,,,,,Green,,S,,10.00,,,,\n")
    table = read_metadata(path)
    assert [(r.id, r.image, r.line, r.values["color"], r.values["price"]) for r in table.rows] == [
        ("tee-1", "https://x/tee-red.jpg", 2, "Red", "10.00"),
        ("tee-2", "https://x/tee-blue.jpg", 3, "Blue", "11.00"),
        ("tee-3", "https://x/tee-front.jpg", 4, "Green", "10.00"),
    ]
    assert all(r.values["size"] == "S" for r in table.rows)
    assert not any("varies" in note for note in table.notes)


def test_shopify_first_image_is_the_lowest_position_and_option_slots_may_differ(tmp_path):
    path = write(tmp_path / "export.csv", SHOPIFY_HEADER +
                 "cap,Cap,,Acme,Apparel & Accessories > Clothing Accessories > Hats,,,Size,L,Color,Navy,C-1,8.00,"
                 "https://x/cap-side.jpg?v=2,2,,active\n"
                 "cap,,,,,,,,,,,,,https://x/cap-front.jpg?v=1,1,,\n"
                 "bag,Bag,,Acme,,Bags,,Color,Olive,Size,One,B-1,20.00,https://x/bag.jpg,1,,active\n")
    table = read_metadata(path)
    cap, bag = table.rows
    assert cap.image == "https://x/cap-front.jpg?v=1" and cap.values["category"] == "Hats"
    assert (cap.values["size"], cap.values["color"]) == ("L", "Navy")
    assert (bag.values["size"], bag.values["color"]) == ("One", "Olive")
    assert table.columns.index("size") < table.columns.index("color")


def test_shopify_metafield_named_like_an_option_gets_its_key_name(tmp_path):
    path = write(tmp_path / "export.csv",
                 "Handle,Title,Option1 Name,Option1 Value,Variant SKU,Image Src,"
                 "Color (product.metafields.shopify.color-pattern),Sleeve length (product.metafields.custom.sleeve)\n"
                 "top,Top,Color,Red,T-1,https://x/top.jpg,red; pink,long\n")
    table = read_metadata(path)
    assert table.columns == ("title", "color", "color_pattern", "sleeve_length")
    assert table.rows[0].values == {"title": "Top", "color": "Red", "color_pattern": "red; pink",
                                    "sleeve_length": "long"}


def test_shopify_product_without_any_image_is_reported(tmp_path):
    path = write(tmp_path / "export.csv", SHOPIFY_HEADER +
                 "ghost,Ghost,,Acme,,Tops,,Title,Default Title,,,G-1,5.00,,,,active\n"
                 "tee,Tee,,Acme,,Tops,,Title,Default Title,,,T-1,5.00,https://x/tee.jpg,1,,active\n")
    table = read_metadata(path)
    assert [r.id for r in table.rows] == ["T-1"]
    assert table.skipped == [RowIssue(2, "G-1", "no image (no Variant Image and the product has no Image Src)")]


def test_shopify_same_sku_on_two_items_is_a_duplicate(tmp_path):
    path = write(tmp_path / "export.csv", SHOPIFY_HEADER +
                 "tee,Tee,,Acme,,Tops,,Color,Red,,,DUP-1,10.00,https://x/a.jpg,1,https://x/red.jpg,active\n"
                 "tee,,,,,,,,Blue,,,DUP-1,10.00,,,https://x/blue.jpg,\n")
    with pytest.raises(MetadataError, match=r"export\.csv: duplicate ids: 'DUP-1' at lines 2, 3"):
        read_metadata(path)


def test_shopify_without_handle_or_image_column(tmp_path):
    no_handle = write(tmp_path / "a.csv", "Title,Vendor,Image Src\nTee,Acme,https://x/t.jpg\n")
    with pytest.raises(MetadataError, match=r"a\.csv has no Handle or URL handle column.*columns found: Title, Vendor"):
        read_metadata(no_handle, format="shopify")
    no_image = write(tmp_path / "b.csv", "Handle,Title,Body (HTML),Variant SKU\ntee,Tee,,T-1\n")
    with pytest.raises(MetadataError, match=r"b\.csv has no image column \(Image Src.*columns found: Handle, Title"):
        read_metadata(no_image)


# ---------------------------------------------------------------- Google Merchant Center


def test_merchant_tsv_feed_field_by_field():
    table = read_metadata(FIXTURES / "merchant_feed.tsv")
    assert table.format == "merchant" and table.currency == "USD"
    assert table.columns == ("title", "description", "availability", "price", "sale_price", "brand", "category",
                             "condition", "color", "size", "gender", "age_group", "material", "pattern")
    assert table.roles == {"name": "title", "description": "description", "category": "category",
                           "price": "price", "brand": "brand"}
    dress = {"title": "Luna Maxi Dress Red", "description": "Flowing maxi dress in crepe.", "availability": "in_stock",
             "price": "79.00", "sale_price": "", "brand": "Luna", "category": "Maxi", "condition": "new",
             "color": "red", "size": "", "gender": "female", "age_group": "adult", "material": "crepe",
             "pattern": "solid"}
    assert table.rows == [
        ProductRow("DR-001-RED-S", "https://shop.example.com/media/luna-maxi-red.jpg?width=1200", 2, dress),
        ProductRow("DR-001-BLU-S", "https://shop.example.com/media/luna-maxi-blue.jpg?width=1200", 4,
                   {**dress, "title": "Luna Maxi Dress Blue", "availability": "out_of_stock", "sale_price": "59.00",
                    "color": "blue", "size": "S"}),
        ProductRow("BG-100", "https://shop.example.com/media/straw-bag.jpg", 5, {
            "title": "Woven Straw Bag", "description": "Hand-woven straw tote with leather handles.",
            "availability": "in_stock", "price": "45.50", "sale_price": "39.00", "brand": "Luna",
            "category": "Handbags", "condition": "new", "color": "natural", "size": "", "gender": "female",
            "age_group": "adult", "material": "straw", "pattern": "woven"}),
    ]
    assert table.skipped == [RowIssue(6, "BG-200", "row has no image_link")]
    assert table.notes == ["1 row skipped (no id, no image_link or an unreadable price)",
                           "size varies within one image for 1 product: kept one item per image, size left empty there"]


def test_merchant_csv_feed_with_display_headers_and_european_prices():
    table = read_metadata(FIXTURES / "merchant_feed.csv")
    assert table.format == "merchant" and table.currency == "EUR"
    assert table.columns == ("title", "description", "availability", "price", "brand", "category", "color", "size",
                             "material", "condition")
    shoe, loafer = table.rows
    assert shoe == ProductRow("SH-1-38", "https://boutique.example.fr/img/derby-black.png", 2, {
        "title": "Derby Shoe Black", "description": "Leather derby, rubber sole.", "availability": "in stock",
        "price": "89.90", "brand": "Cordon", "category": "Derbies", "color": "black", "size": "",
        "material": "leather", "condition": "new"})
    assert loafer.id == "SH-2-40" and loafer.line == 4
    assert (loafer.values["price"], loafer.values["category"], loafer.values["size"]) == ("1249.00", "Shoes", "40")
    assert table.skipped == []


MERCHANT_HEADER = "id\ttitle\tlink\timage_link\tprice\tavailability\n"


def test_merchant_mixed_currencies_are_refused(tmp_path):
    path = write(tmp_path / "feed.tsv", MERCHANT_HEADER + "a\tA\thttps://s/a\thttps://s/a.jpg\t12.00 USD\tin_stock\n"
                 "b\tB\thttps://s/b\thttps://s/b.jpg\t10.00 USD\tin_stock\n"
                 "c\tC\thttps://s/c\thttps://s/c.jpg\t9.00 EUR\tin_stock\n")
    with pytest.raises(MetadataError, match=r"feed\.tsv: line 4, column price: mixed currencies, USD \(line 2\) "
                                            r"and EUR \(line 4\)"):
        read_metadata(path)


def test_merchant_unreadable_price_skips_that_row(tmp_path):
    path = write(tmp_path / "feed.tsv", MERCHANT_HEADER + "a\tA\thttps://s/a\thttps://s/a.jpg\tfree\tin_stock\n"
                 "b\tB\thttps://s/b\thttps://s/b.jpg\tUSD 1,299.50\tin_stock\n")
    table = read_metadata(path)
    assert [(r.id, r.values["price"]) for r in table.rows] == [("b", "1299.50")]
    assert table.skipped == [RowIssue(2, "a", "price 'free' is not a number with a currency code (like '12.00 USD')")]


def test_merchant_without_id_or_image_link(tmp_path):
    no_id = write(tmp_path / "a.tsv", "title\tlink\timage_link\tprice\nA\thttps://s/a\thttps://s/a.jpg\t1 USD\n")
    with pytest.raises(MetadataError, match=r"a\.tsv has no id column \(columns found: title, link, image_link"):
        read_metadata(no_id, format="merchant")
    no_image = write(tmp_path / "b.tsv", "id\ttitle\tlink\tprice\nA\tA\thttps://s/a\t1 USD\n")
    with pytest.raises(MetadataError, match=r"b\.tsv has no image_link column"):
        read_metadata(no_image, format="merchant")


def test_merchant_duplicate_ids_list_their_lines(tmp_path):
    path = write(tmp_path / "feed.tsv", MERCHANT_HEADER + "a\tA\thttps://s/a\thttps://s/a.jpg\t1 USD\tin_stock\n"
                 "b\tB\thttps://s/b\thttps://s/b.jpg\t1 USD\tin_stock\n"
                 "a\tA2\thttps://s/a\thttps://s/a2.jpg\t1 USD\tin_stock\n")
    with pytest.raises(MetadataError, match=r"feed\.tsv: duplicate ids: 'a' at lines 2, 4"):
        read_metadata(path)


# ---------------------------------------------------------------- plain CSV


def test_plain_csv_field_by_field():
    table = read_metadata(FIXTURES / "plain_catalog.csv")
    material = column_name("素材")
    assert table.format == "csv" and table.currency is None
    assert table.columns == ("name", "category", "colour", "pattern", "price", "caption", material)
    assert table.roles == {"name": "name", "category": "category", "price": "price", "caption": "caption"}
    assert table.rows == [
        ProductRow("0", "images/000000.png", 2, {"name": "Maroon Striped Skirt #00000", "category": "skirt",
                                                 "colour": "maroon", "pattern": "striped", "price": "54.99",
                                                 "caption": "a photo of a maroon striped long skirt",
                                                 material: "ウール"}),
        ProductRow("1", "images/000001.png", 3, {"name": "Maroon Trousers #00001", "category": "trousers",
                                                 "colour": "maroon", "pattern": "solid", "price": "36.99",
                                                 "caption": "a photo of a maroon short trousers", material: "綿"}),
        ProductRow("4", "images/sub/000004.png", 6, {"name": "Blue Checked Skirt #00004", "category": "skirt",
                                                     "colour": "blue", "pattern": "checked", "price": "",
                                                     "caption": "a photo of a blue checked skirt", material: ""}),
    ]
    assert table.skipped == [RowIssue(4, "2", "row has no image (file is empty)"), RowIssue(5, None, "row has no id")]
    assert table.notes == ["2 rows skipped (no id or no image)"]


@pytest.mark.parametrize("delimiter", ["\t", ";"])
def test_plain_tsv_and_semicolon_files(tmp_path, delimiter):
    path = write(tmp_path / "items.txt", delimiter.join(["ID", "Image", "Title", "Brand", "Product Type"]) + "\n"
                 + delimiter.join(["x1", "x1.png", "Red, striped", "Acme", "Shirts"]) + "\n")
    table = read_metadata(path)
    assert table.columns == ("title", "brand", "product_type")
    assert table.roles == {"name": "title", "category": "product_type", "brand": "brand"}
    assert table.rows == [ProductRow("x1", "x1.png", 2, {"title": "Red, striped", "brand": "Acme",
                                                         "product_type": "Shirts"})]


def test_excel_sep_hint_line(tmp_path):
    path = write(tmp_path / "items.csv", "sep=;\nid;file;price\na;a.png;1,50\n")
    assert read_metadata(path).rows == [ProductRow("a", "a.png", 3, {"price": "1,50"})]


def test_plain_csv_missing_id_or_image_column_says_what_was_found(tmp_path):
    no_id = write(tmp_path / "a.csv", "sku,file,colour\n1,a.png,red\n")
    with pytest.raises(MetadataError, match=r"a\.csv has no id column \(columns found: sku, file, colour\)"):
        read_metadata(no_id)
    no_image = write(tmp_path / "b.csv", "id,photo,colour\n1,a.png,red\n")
    with pytest.raises(MetadataError, match=r"b\.csv has no image column \(one of file, path, image, filename, "
                                            r"image_src, image_link, image_url; columns found: id, photo, colour\)"):
        read_metadata(no_image)


def test_plain_csv_duplicate_ids_list_the_first_few_with_lines(tmp_path):
    rows = "".join(f"{i % 7},{i}.png\n" for i in range(20))
    path = write(tmp_path / "dup.csv", "id,file\n" + rows)
    with pytest.raises(MetadataError) as err:
        read_metadata(path)
    message = str(err.value)
    assert message.startswith(f"{path}: duplicate ids: '0' at lines 2, 9, 16; '1' at lines 3, 10, 17;")
    assert "and 2 more" in message


def test_plain_csv_headers_that_read_as_the_same_column(tmp_path):
    path = write(tmp_path / "a.csv", "id,file,Colour,colour\n1,a.png,red,blue\n")
    with pytest.raises(MetadataError, match=r"columns 'Colour' and 'colour' both read as 'colour'"):
        read_metadata(path)


# ---------------------------------------------------------------- bad files


def test_empty_and_blank_files(tmp_path):
    for name, text in (("empty.csv", ""), ("blank.csv", "\n\n  \n"), ("bom.csv", "\ufeff")):
        with pytest.raises(MetadataError, match=rf"{name} is empty"):
            read_metadata(write(tmp_path / name, text))


def test_missing_file(tmp_path):
    with pytest.raises(MetadataError, match=r"nope\.csv: no such file"):
        read_metadata(tmp_path / "nope.csv")


@pytest.mark.parametrize("fixture", ["shopify_legacy.csv", "shopify_2024.csv", "merchant_feed.tsv",
                                     "plain_catalog.csv"])
def test_header_only_files(tmp_path, fixture):
    header = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()[0]
    path = write(tmp_path / fixture, header + "\n\n")
    with pytest.raises(MetadataError, match=rf"{re.escape(fixture)} has a header but no product rows"):
        read_metadata(path)


def test_huge_cell_names_line_and_column(tmp_path):
    path = write(tmp_path / "big.csv", "id,file,description\n1,a.png,short\n2,b.png," + "x" * 1_048_576 + "\n")
    with pytest.raises(MetadataError) as err:
        read_metadata(path)
    assert str(err.value) == (f"{path}: line 3, column description: a cell of 1,048,576 characters "
                              "(limit 131,072)")


def test_huge_header_cell(tmp_path):
    path = write(tmp_path / "big.csv", "id,file," + "h" * 200_000 + "\n1,a.png,x\n")
    with pytest.raises(MetadataError, match=r"big\.csv: line 1, column 3: a cell of 200,000 characters"):
        read_metadata(path)


def test_a_cell_just_under_the_limit_is_read(tmp_path):
    path = write(tmp_path / "ok.csv", "id,file,description\n1,a.png," + "y" * 131_072 + "\n")
    assert len(read_metadata(path).rows[0].values["description"]) == 131_072


def test_not_utf8_names_the_byte_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"id,file,name\n1,a.png,ok\n2,b.png,caf\xff\n")
    with pytest.raises(MetadataError) as err:
        read_metadata(path)
    assert str(err.value) == (f"{path} is not UTF-8 (byte 0xff at line 3); save the file as UTF-8 or pass --encoding")


def test_bytes_shift_jis_leaves_unmapped_are_not_read_as_shift_jis(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes("id,file,name\n1,a.png,赤".encode("cp932") + b"\xff\n")
    with pytest.raises(MetadataError, match=r"is not UTF-8 \(byte 0x90 at line 2\)"):
        read_metadata(path)


def test_latin1_file_is_not_taken_for_shift_jis_but_encoding_override_reads_it(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,file,name\n1,a.png,Über Größe\n".encode("latin-1"))
    with pytest.raises(MetadataError, match=r"is not UTF-8 \(byte 0xdc at line 2\)"):
        read_metadata(path)
    assert read_metadata(path, encoding="latin-1").rows[0].values["name"] == "Über Größe"
    with pytest.raises(MetadataError, match="unknown encoding 'klingon'"):
        read_metadata(path, encoding="klingon")
    with pytest.raises(MetadataError, match=r"is not utf-8 \(byte 0xdc at line 2\)"):
        read_metadata(path, encoding="utf-8")


def test_shift_jis_excel_export_is_read(tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes("id,file,商品名,色\n1,a.png,ワンピース,赤\n".encode("cp932"))
    table = read_metadata(path)
    assert table.columns == (column_name("商品名"), column_name("色"))
    assert table.rows[0].values == {column_name("商品名"): "ワンピース", column_name("色"): "赤"}
    assert table.notes[0] == "read as Shift_JIS (cp932): the file is not UTF-8"


def test_shift_jis_with_latin_words_beside_kanji_is_still_read(tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes("id,file,商品名\n1,a.png,LED電球 Tシャツ用\n".encode("cp932"))
    assert read_metadata(path).rows[0].values == {column_name("商品名"): "LED電球 Tシャツ用"}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_bom_files_are_read(tmp_path, encoding):
    path = write(tmp_path / "bom.csv", "id,file,name\n1,a.png,Robe rouge\n", encoding)
    table = read_metadata(path)
    assert table.rows == [ProductRow("1", "a.png", 2, {"name": "Robe rouge"})]
    forced = read_metadata(path, encoding="utf-8" if encoding == "utf-8-sig" else "utf-16")
    assert forced.rows == table.rows


def test_utf16_without_bom_is_refused(tmp_path):
    path = write(tmp_path / "u16.csv", "id,file,name\n1,a.png,x\n", "utf-16-le")
    with pytest.raises(MetadataError, match="looks like UTF-16 without a byte-order mark"):
        read_metadata(path)


def test_ragged_row_names_the_line(tmp_path):
    path = write(tmp_path / "r.csv", "id,file,name\n1,a.png,x\n2,b.png,y,extra\n")
    with pytest.raises(MetadataError, match=r"r\.csv: line 3 has 4 cells but the header has 3 columns"):
        read_metadata(path)


def test_trailing_empty_cells_and_short_rows_are_not_ragged(tmp_path):
    path = write(tmp_path / "r.csv", "id,file,name,colour\n1,a.png,x,red,,\n2,b.png\n")
    assert [r.values for r in read_metadata(path).rows] == [{"name": "x", "colour": "red"},
                                                            {"name": "", "colour": ""}]


def test_unclosed_quote_and_malformed_quotes(tmp_path):
    path = write(tmp_path / "q.csv", 'id,file,name\n1,a.png,ok\n2,b.png,"never closed\n3,c.png,x\n')
    with pytest.raises(MetadataError, match=r"q\.csv: line 3: a quoted cell is never closed"):
        read_metadata(path)
    path = write(tmp_path / "m.csv", 'id,file,name\n1,a.png,"quoted"tail\n')
    with pytest.raises(MetadataError, match=r"m\.csv: line 2: malformed CSV"):
        read_metadata(path)


def test_value_under_no_header(tmp_path):
    path = write(tmp_path / "h.csv", "id,file,,name\n1,a.png,lost,x\n")
    with pytest.raises(MetadataError, match=r"h\.csv: line 2, column 3 has a value but no header"):
        read_metadata(path)


def test_nul_and_control_characters_are_stripped(tmp_path):
    path = write(tmp_path / "c.csv", 'id,file,name\n1\x00,a.png,"Red\x00 dress\x07\x1b with\ttabs\r\nand lines"\n')
    row = read_metadata(path).rows[0]
    assert row.id == "1" and row.values["name"] == "Red dress with tabs and lines"


def test_a_failed_read_leaves_no_table(tmp_path):
    path = write(tmp_path / "d.csv", "id,file\n1,a.png\n1,b.png\n")
    result = None
    with pytest.raises(MetadataError):
        result = read_metadata(path)
    assert result is None


# ---------------------------------------------------------------- resolving images


@pytest.fixture
def shop(tmp_path) -> Path:
    folder = tmp_path / "shop"
    for name in ("red-bag.jpg", "images/000000.png", "nested/deep/blue-bag.jpg", "a/twin.jpg", "b/twin.jpg",
                 ".hidden/ghost.jpg", ".dotfile.jpg", "Mixed Case.JPG"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not decoded here")
    (tmp_path / "secret.png").write_bytes(b"outside")
    (folder / "escape.png").symlink_to(tmp_path / "secret.png")
    return folder


def table_of(*images: str) -> ProductTable:
    rows = [ProductRow(f"id{n}", image, n + 2, {}) for n, image in enumerate(images)]
    return ProductTable("csv", Path("m.csv"), (), {}, rows, [], [])


def test_resolve_urls_paths_and_names(shop):
    table = table_of("https://cdn.shopify.com/s/files/1/0/products/red-bag.jpg?v=123",
                     "images/000000.png", "photos/blue-bag.jpg", "https://x.example/img/Mixed%20Case.JPG#top",
                     "images\\000000.png", "mixed case.jpg")
    found, issues = resolve_images(table, shop)
    root = shop.resolve()
    assert issues == []
    assert [(row.id, path) for row, path in found] == [
        ("id0", root / "red-bag.jpg"), ("id1", root / "images/000000.png"), ("id2", root / "nested/deep/blue-bag.jpg"),
        ("id3", root / "Mixed Case.JPG"), ("id4", root / "images/000000.png"), ("id5", root / "Mixed Case.JPG"),
    ]


def test_resolve_reports_outside_missing_and_ambiguous(shop):
    table = table_of("../secret.png", "/etc/passwd", "escape.png", "https://x/escape.png", "missing.jpg",
                     "https://x/ghost.jpg", "https://x/.dotfile.jpg", "https://x/twin.jpg", "https://x/",
                     "C:\\pics\\a.jpg")
    found, issues = resolve_images(table, shop)
    root = shop.resolve()
    assert found == []
    assert [(i.line, i.id) for i in issues] == [(n + 2, f"id{n}") for n in range(10)]
    reasons = [i.reason for i in issues]
    assert reasons[0] == "image path '../secret.png' is outside the catalog folder"
    assert reasons[1] == "image path '/etc/passwd' is outside the catalog folder"
    assert reasons[2] == "image path 'escape.png' is outside the catalog folder"
    assert reasons[3].startswith("image path 'https://x/escape.png' is outside the catalog folder (it links to")
    assert reasons[4] == f"image 'missing.jpg' not found under {root}"
    assert reasons[5] == f"image 'https://x/ghost.jpg' not found under {root}"
    assert reasons[6] == f"image 'https://x/.dotfile.jpg' not found under {root}"
    assert "'a/twin.jpg' and 'b/twin.jpg'" in reasons[7]
    assert reasons[8] == "image URL 'https://x/' has no file name"
    assert reasons[9] == "image path 'C:\\\\pics\\\\a.jpg' is outside the catalog folder"


def test_resolve_fixture_tables_against_a_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("silk-dress-red.jpg", "silk-dress-blue.jpg", "ankle-boot.jpg"):
        (folder / name).write_bytes(b"x")
    found, issues = resolve_images(read_metadata(FIXTURES / "shopify_legacy.csv"), folder)
    assert [(row.id, path.name) for row, path in found] == [("SWD-RED-S", "silk-dress-red.jpg"),
                                                            ("SWD-BLU-S", "silk-dress-blue.jpg"),
                                                            ("leather-ankle-boot-1", "ankle-boot.jpg")]
    assert [(i.line, i.id, i.reason) for i in issues] == [
        (11, "TOTE-01", f"image '{CDN}canvas-tote.jpg?v=1690000000' not found under {folder.resolve()}")]


def test_resolve_needs_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        resolve_images(table_of("a.png"), tmp_path / "missing")
