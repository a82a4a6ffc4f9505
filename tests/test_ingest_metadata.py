"""Ingest from shop metadata into a real LanceDB directory: bad files get a clear message and leave the store as it
was, bad rows are reported while the rest go in whole, a Shopify export round-trips its schema.json (edits kept, no
re-embedding), and the command line's --format and --encoding reach the reader."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.parser import parse_rules
from assistant.vocabulary import Vocabulary
from retrieval.catalog_schema import LearnedWord, infer_schema, load_schema
from retrieval.errors import MetadataError, SchemaError
from retrieval.ingest import Embedder, ingest
from retrieval.metadata_formats import column_name, read_metadata
from retrieval.store import CatalogStore
from tests.bad_images import corpus
from ui.store_commands import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "metadata"
COLOURS = [(200, 30, 40), (25, 35, 90), (40, 150, 60), (240, 210, 40), (20, 20, 20), (250, 250, 250)]
GOOD_CSV = "id,file,colour,size\n1,p0.png,red,S\n2,p1.png,navy,M\n3,p2.png,red,L\n"
CLI_TIMEOUT = 240


def picture(path: Path, n: int) -> Path:
    """A real image file: a two-colour picture that differs per ``n``, saved in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (32, 32), COLOURS[n % len(COLOURS)])
    image.paste(COLOURS[(n + 1) % len(COLOURS)], (0, 0, 16 + n % 16, 12))
    image.save(path)
    return path


def catalog_folder(folder: Path, n: int = 4) -> Path:
    for i in range(n):
        picture(folder / f"p{i}.png", i)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_rows(db: Path) -> dict[str, dict]:
    return {row["id"]: row for row in CatalogStore.open(db).table.to_arrow().to_pylist()}


def store_state(db: Path):
    """Everything a failed ingest must leave as it was: the table version, every row and the stored schema."""
    store = CatalogStore.open(db)
    return store.table.version, store.table.to_arrow().sort_by("id").to_pylist(), store.catalog_schema


def no_table(db: Path) -> bool:
    return not CatalogStore.exists(db) and (not db.exists() or CatalogStore.connect(db).list_tables().tables == [])


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CIRCHAT_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def cli_ingest(folder: Path, metadata: Path, db: Path, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ui.store_commands", "ingest", str(folder), "--metadata", str(metadata),
            "--model", model, "--db", str(db), "--no-progress", *extra]


@pytest.fixture(scope="module")
def good(backbone, tmp_path_factory):
    """(folder, metadata, db) of one successful ingest, which every failing ingest below must leave untouched."""
    root = tmp_path_factory.mktemp("good")
    folder = catalog_folder(root / "shop")
    metadata = root / "good.csv"
    metadata.write_text(GOOD_CSV, encoding="utf-8")
    report = ingest(folder, backbone, root / "db", metadata=metadata, progress=False)
    assert report.added == 3 and report.rows == 3 and not report.failures
    return folder, metadata, root / "db"


@pytest.fixture(scope="module", autouse=True)
def cli_subprocess(backbone, tmp_path_factory):
    """(process, metadata, db) of one `python -m ui.store_commands ingest` on a file with duplicate ids, started
    when the module starts: its interpreter and model load (the slow part) overlap the in-process tests."""
    root = tmp_path_factory.mktemp("cli")
    folder = catalog_folder(root / "shop", 3)
    metadata = root / "products.csv"
    metadata.write_bytes(b"id,file,colour\n1,p0.png,red\n2,p1.png,navy\n1,p2.png,red\n")
    process = subprocess.Popen(cli_ingest(folder, metadata, root / "db", backbone.spec.model), cwd=ROOT,
                               env=cli_env(root / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield process, metadata, root / "db"
    if process.poll() is None:
        process.kill()
        process.communicate()


# ---------------------------------------------------------------- whole-file problems


@dataclass(frozen=True)
class BadFile:
    name: str
    data: bytes
    message: str  # a regular expression the message must match after the file's path


BAD_FILES = [
    BadFile("missing id column", b"sku,file,colour\n1,p0.png,red\n",
            r" has no id column \(columns found: sku, file, colour\)"),
    BadFile("missing image column", b"id,picture,colour\n1,p0.png,red\n",
            r" has no image column \(one of file, path, image, filename, image_src, image_link, image_url; "
            r"columns found: id, picture, colour\)"),
    BadFile("duplicate ids", b"id,file,colour\n1,p0.png,red\n2,p1.png,navy\n1,p2.png,red\n",
            r": duplicate ids: '1' at lines 2, 4; every item needs its own id"),
    BadFile("non-UTF-8 bytes", "id,file,colour\n1,p0.png,red\n2,p1.png,café noir\n".encode("latin-1"),
            r" is not UTF-8 \(byte 0xe9 at line 3\); save the file as UTF-8 or pass --encoding"),
    BadFile("a 1 MB cell", b"id,file,note\n1,p0.png,ok\n2,p1.png," + b"x" * (1 << 20) + b"\n",
            r": line 3, column note: a cell of 1,048,576 characters \(limit 131,072\)"),
    BadFile("empty file", b"", r" is empty"),
    BadFile("only blank lines", b"\n   \n\n", r" is empty"),
    BadFile("header only", b"id,file,colour\n", r" has a header but no product rows"),
    BadFile("unclosed quote", b'id,file,colour\n1,p0.png,red\n2,p1.png,"navy\n3,p2.png,red\n',
            r": line 3: a quoted cell is never closed"),
    BadFile("more cells than columns", b"id,file\n1,p0.png\n2,p1.png,navy\n",
            r": line 3 has 3 cells but the header has 2 columns"),
]


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b.name for b in BAD_FILES])
def test_bad_metadata_file_is_refused_and_leaves_the_store_as_it_was(bad, good, backbone, tmp_path):
    folder, good_metadata, db = good
    metadata = tmp_path / "products.csv"
    metadata.write_bytes(bad.data)
    fresh = tmp_path / "fresh.lancedb"
    with pytest.raises(MetadataError) as raised:
        ingest(folder, backbone, fresh, metadata=metadata, progress=False)
    message = str(raised.value)
    assert message.startswith(str(metadata)) and re.fullmatch(re.escape(str(metadata)) + bad.message, message), \
        message
    assert no_table(fresh)

    before = store_state(db)
    schema_file = (good_metadata.parent / "schema.json").read_bytes()
    with pytest.raises(MetadataError, match=bad.message):
        ingest(folder, backbone, db, metadata=metadata, progress=False)
    assert store_state(db) == before
    assert (good_metadata.parent / "schema.json").read_bytes() == schema_file
    assert not (tmp_path / "schema.json").exists()  # no schema is written for a file that was not read


def test_a_broken_schema_json_is_refused_and_kept_for_the_shop_to_fix(good, backbone, tmp_path):
    folder, _, db = good
    metadata = tmp_path / "products.csv"
    metadata.write_text(GOOD_CSV, encoding="utf-8")
    broken = '{"attributes": [{"name": "colour", "ordered": "perhaps"}]}'
    (tmp_path / "schema.json").write_text(broken, encoding="utf-8")
    before = store_state(db)
    for target in (tmp_path / "fresh.lancedb", db):
        with pytest.raises(SchemaError, match=r"schema\.json does not describe a catalog schema: "
                                              r"attributes\.0\.ordered") as raised:
            ingest(folder, backbone, target, metadata=metadata, progress=False)
        assert str(tmp_path / "schema.json") in str(raised.value)
    assert no_table(tmp_path / "fresh.lancedb")
    assert store_state(db) == before
    assert (tmp_path / "schema.json").read_text(encoding="utf-8") == broken


def test_a_price_column_without_numbers_gets_a_clear_message(tmp_path, backbone):
    folder = catalog_folder(tmp_path / "shop", 2)
    metadata = tmp_path / "products.csv"
    metadata.write_text("id,file,price\n1,p0.png,49.00 USD\n2,p1.png,59.00 USD\n", encoding="utf-8")
    try:
        report = ingest(folder, backbone, tmp_path / "db", metadata=metadata, progress=False)
    except MetadataError as err:
        assert "price" in str(err) and str(metadata) in str(err)
    else:
        assert {f.id for f in report.failures} == {"1", "2"} or report.added == 2


def test_a_latin1_file_is_not_read_as_shift_jis(tmp_path):
    metadata = tmp_path / "products.csv"
    metadata.write_bytes("id,file,colour\n1,p0.png,crème\n".encode("latin-1"))
    try:
        table = read_metadata(metadata)
    except MetadataError as err:
        assert "is not UTF-8" in str(err)
    else:
        assert table.rows[0].values["colour"] == "crème"


# ---------------------------------------------------------------- row-level problems


def test_bad_rows_are_reported_and_the_other_rows_go_in_whole(backbone, tmp_path):
    folder = catalog_folder(tmp_path / "shop", 2)
    picture(folder / "sub" / "p2.png", 2)
    outside = picture(tmp_path / "outside.png", 5)
    (folder / "link.png").symlink_to(outside)
    truncated = next(c for c in corpus() if c.filename == "truncated.png")
    (folder / "truncated.png").write_bytes(truncated.data)
    metadata = tmp_path / "products.csv"
    metadata.write_text("id,file,colour\n"
                        "1,p0.png,red\n"
                        "2,../outside.png,navy\n"
                        "3,p1.png,navy\n"
                        "4,nope.png,red\n"
                        "5,link.png,red\n"
                        "6,truncated.png,red\n"
                        "7,sub/p2.png,green\n"
                        f"8,{outside},red\n", encoding="utf-8")
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, metadata=metadata, progress=False)

    failures = {f.id: f for f in report.failures}
    assert sorted(failures) == ["2", "4", "5", "6", "8"]
    assert failures["2"].reason == "image path '../outside.png' is outside the catalog folder"
    assert failures["2"].path == f"{metadata}:3"
    assert failures["4"].reason == f"image 'nope.png' not found under {folder.resolve()}"
    assert failures["5"].reason == "image path 'link.png' is outside the catalog folder"
    assert failures["8"].reason == f"image path {str(outside)!r} is outside the catalog folder"
    assert truncated.reject in failures["6"].reason and failures["6"].path == str((folder / "truncated.png").resolve())
    summary = report.summary()
    assert "  5 skipped:" in summary
    assert f"    {metadata}:3: image path '../outside.png' is outside the catalog folder" in summary

    assert (report.added, report.rows) == (3, 3)
    rows = stored_rows(db)
    assert sorted(rows) == ["1", "3", "7"]
    files = {"1": folder / "p0.png", "3": folder / "p1.png", "7": folder / "sub" / "p2.png"}
    colours = {"1": "red", "3": "navy", "7": "green"}
    expected = Embedder(backbone, None)([str(files[i].resolve()) for i in ("1", "3", "7")]).embeddings
    for n, item in enumerate(("1", "3", "7")):
        row = rows[item]
        assert row["path"] == str(files[item].resolve()) and row["content_hash"] == sha256(files[item])
        assert row["colour"] == colours[item] and row["model"] == backbone.identity
        np.testing.assert_allclose(row["embedding"], expected[n], atol=1e-5)
        assert len(row["patches"]) == CatalogStore.open(db).layout.patch_size and any(row["patches"])
    assert not any(str(outside) in row["path"] for row in rows.values())


def test_a_column_with_thousands_of_values_is_stored_but_is_not_an_attribute(backbone, tmp_path):
    folder = catalog_folder(tmp_path / "shop", 6)
    n = 2000
    lines = ["id,file,colour,batch"] + [f"A{i},p{i % 6}.png,{['red', 'navy'][i % 2]},B-{i:05d}" for i in range(n)]
    metadata = tmp_path / "products.csv"
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, metadata=metadata, patches=False, progress=False)
    assert (report.added, report.rows, report.failures) == (n, n, [])
    store = CatalogStore.open(db)
    assert store.layout.metadata_names == ("colour", "batch")
    batches = store.snapshot(["id", "batch"]).to_pylist()
    assert {r["id"]: r["batch"] for r in batches} == {f"A{i}": f"B-{i:05d}" for i in range(n)}
    schema = store.catalog_schema
    assert schema.attribute_names == ["colour"]
    assert schema.ignored == {"batch": "2,000 distinct values (more than 50): free text, not an attribute"}
    assert "    not an attribute: batch (2,000 distinct values (more than 50): free text, not an attribute)" \
        in report.summary().splitlines()
    assert load_schema(tmp_path / "schema.json") == schema


# ---------------------------------------------------------------- a Shopify export and its schema.json


SHOPIFY_IMAGES = ["linen-shirt-white.jpg", "linen-shirt-sage.jpg", "suede-mule.jpg", "suede-mule-top.jpg"]


def test_shopify_export_ingests_and_schema_json_edits_apply_without_reembedding(backbone, tmp_path):
    folder = tmp_path / "shop"
    for n, name in enumerate(SHOPIFY_IMAGES):
        picture(folder / "images" / name, n)
    export = tmp_path / "products_export_1.csv"
    export.write_bytes((FIXTURES / "shopify_2024.csv").read_bytes())
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, metadata=export, progress=False)

    table = read_metadata(export)
    assert report.format == "shopify" and (report.added, report.rows) == (3, 3)
    assert report.unlisted == 1  # the mule's top view is an extra product image, not an item
    assert sorted((f.id, f.reason) for f in report.failures) == [
        ("cotton-socks", "product status is draft (only active products are read)"),
        ("wool-beanie", "product status is archived (only active products are read)"),
    ]
    store = CatalogStore.open(db)
    assert store.layout.metadata_names == table.columns
    numeric = {n.name for n in store.catalog_schema.numeric}
    assert numeric == {"price"}
    rows = stored_rows(db)
    assert sorted(rows) == sorted(r.id for r in table.rows)
    for item in table.rows:
        row = rows[item.id]
        image = folder / "images" / item.image.rsplit("/", 1)[-1].split("?")[0]
        assert row["path"] == str(image.resolve()) and row["content_hash"] == sha256(image)
        for column, value in item.values.items():
            want = None if value == "" else float(value) if column in numeric else value
            assert row[column] == want, (item.id, column)
    assert rows["SM-TAN-38"]["color"] == "Tan" and rows["SM-TAN-38"]["price"] == 98.0

    schema_file = tmp_path / "schema.json"
    schema = store.catalog_schema
    assert schema == load_schema(schema_file)
    assert schema == infer_schema(table.columns, [r.values for r in table.rows], table.roles,
                                  currency=table.currency)
    assert schema.attribute("color").value_names == ["Sage", "Tan", "White"]
    assert "catalog schema (edit schema.json beside the metadata file, then ingest again):" in report.summary()

    data = json.loads(schema_file.read_text(encoding="utf-8"))
    color = next(a for a in data["attributes"] if a["name"] == "color")
    color["display"] = {"en": "Colour", "fr": "Couleur"}
    sage = next(v for v in color["values"] if v["name"] == "Sage")
    sage["synonyms"] = {"en": ["sage green"], "fr": ["sauge", "vert sauge"]}
    schema_file.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    vectors = {i: (r["embedding"], r["patches"], r["content_hash"]) for i, r in rows.items()}
    assert parse_rules("sauge", Vocabulary(schema)).instructions[0].attribute is None

    again = ingest(folder, backbone, db, metadata=export, progress=False)
    assert (again.added, again.updated, again.relabelled, again.unchanged) == (0, 0, 0, 3)
    stored = CatalogStore.open(db).catalog_schema
    # a language the shop's file does not list is filled in from the lexicon on re-ingest (docs/catalog.md)
    assert stored.attribute("color").display == {"en": "Colour", "fr": "Couleur", "ja": "色"}
    assert stored.attribute("color").shown("fr") == "Couleur"
    assert stored.attribute("color").value("Sage").synonyms == {"en": ["sage green"], "fr": ["sauge", "vert sauge"]}
    assert stored == load_schema(schema_file)
    assert {i: (r["embedding"], r["patches"], r["content_hash"]) for i, r in stored_rows(db).items()} == vectors
    parsed = parse_rules("in vert sauge", Vocabulary(stored))
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("color", "Sage")]
    assert "  attribute color: Sage, Tan, White" in stored.summary()

    # nothing changed: the third ingest keeps schema.json byte for byte and the stored schema as it is
    text = schema_file.read_bytes()
    third = ingest(folder, backbone, db, metadata=export, progress=False)
    assert (third.added, third.updated, third.unchanged) == (0, 0, 3)
    assert schema_file.read_bytes() == text and CatalogStore.open(db).catalog_schema == stored

    # words learned from customers' picks live with the store: a re-ingest keeps them, the shop's file never has them
    learned = LearnedWord(phrase="couleur sauge", attribute="color", value="Sage", picks=6, agreeing=5)
    CatalogStore.open(db).save_catalog_schema(stored.with_learned([learned]))
    ingest(folder, backbone, db, metadata=export, progress=False)
    kept = CatalogStore.open(db).catalog_schema
    assert kept.learned == [learned] and kept.model_copy(update={"learned": []}) == stored
    assert schema_file.read_bytes() == text
    parsed = parse_rules("couleur sauge", Vocabulary(kept))
    assert [(i.attribute, i.value) for i in parsed.instructions] == [("color", "Sage")]


def test_a_cp932_file_with_japanese_values_through_the_api(backbone, tmp_path):
    folder = catalog_folder(tmp_path / "shop", 2)
    metadata = tmp_path / "products.csv"
    metadata.write_bytes("id,file,素材,色\n1,p0.png,綿,黒\n2,p1.png,ウール,白\n".encode("cp932"))
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, metadata=metadata, encoding="cp932", progress=False)
    assert (report.added, report.failures) == (2, [])
    assert not any("Shift_JIS" in note for note in report.notes)  # read as told, not guessed
    material, colour = column_name("素材"), column_name("色")
    rows = stored_rows(db)
    assert (rows["1"][material], rows["1"][colour]) == ("綿", "黒")
    assert (rows["2"][material], rows["2"][colour]) == ("ウール", "白")
    assert CatalogStore.open(db).catalog_schema.attribute(material).value_names == ["ウール", "綿"]


# ---------------------------------------------------------------- the command line


HALF_WIDTH = "id,file,ｶﾗｰ\n1,p0.png,ｸﾛ\n2,p1.png,ｼﾛ\n"  # half-width katakana only, as old Japanese POS exports
FEED = ("id\ttitle\timage_link\tprice\tcolor\n"
        "D1\tRed Dress\thttps://shop.example.com/media/red-dress.jpg?width=800\t49.00 USD\tred\n"
        "D2\tBlue Dress\thttps://shop.example.com/media/blue-dress.jpg\t59.00 USD\tblue\n")


def invoke(folder: Path, metadata: Path, db: Path, model: str, *extra: str):
    """The ingest command in this process (argument parsing, error handling and output as on the command line)."""
    return CliRunner().invoke(app, cli_ingest(folder, metadata, db, model, *extra)[3:])


def test_cli_refuses_bad_metadata_with_exit_2_and_the_message(cli_subprocess):
    process, metadata, db = cli_subprocess
    out, err = process.communicate(timeout=CLI_TIMEOUT)
    assert process.returncode == 2, err[-2000:]
    assert f"{metadata}: duplicate ids: '1' at lines 2, 4; every item needs its own id" in err
    assert "Traceback" not in err and out == ""
    assert no_table(db)


def test_cli_format_override_reads_a_feed_detection_takes_for_plain_csv(backbone, tmp_path):
    folder = tmp_path / "shop"
    picture(folder / "red-dress.jpg", 0)
    picture(folder / "blue-dress.jpg", 1)
    feed = tmp_path / "feed.tsv"
    feed.write_text(FEED, encoding="utf-8")
    db = tmp_path / "db"
    assert read_metadata(feed).format == "csv"  # no Merchant marker columns: detected as a plain CSV
    wrong = invoke(folder, feed, db, backbone.spec.model, "--format", "google")
    assert wrong.exit_code == 2 and "--format must be one of csv, shopify, merchant" in wrong.stderr
    assert no_table(db)

    result = invoke(folder, feed, db, backbone.spec.model, "--format", "merchant", "--json")
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["format"] == "merchant" and (report["added"], report["failures"]) == (2, [])
    rows = stored_rows(db)
    assert {i: (r["title"], r["price"], r["color"], r["path"]) for i, r in rows.items()} == {
        "D1": ("Red Dress", 49.0, "red", str((folder / "red-dress.jpg").resolve())),
        "D2": ("Blue Dress", 59.0, "blue", str((folder / "blue-dress.jpg").resolve())),
    }
    schema = CatalogStore.open(db).catalog_schema
    assert [(n.name, n.minimum, n.maximum, n.unit) for n in schema.numeric] == [("price", 49.0, 59.0, "USD")]
    assert "  range price: 49 to 59 USD" in report["schema"]
    assert load_schema(feed.with_name("schema.json")) == schema


def test_cli_encoding_reads_a_cp932_file_detection_cannot(backbone, tmp_path):
    folder = catalog_folder(tmp_path / "shop", 2)
    metadata = tmp_path / "products.csv"
    metadata.write_bytes(HALF_WIDTH.encode("cp932"))
    db = tmp_path / "db"
    plain = invoke(folder, metadata, db, backbone.spec.model)
    assert plain.exit_code == 2  # without --encoding: refused, with the way out in the message
    assert re.search(r"is not UTF-8 \(byte 0xb6 at line 1\).*pass --encoding", plain.stderr), plain.stderr
    unknown = invoke(folder, metadata, db, backbone.spec.model, "--encoding", "klingon")
    assert unknown.exit_code == 2 and f"unknown encoding 'klingon' for {metadata}" in unknown.stderr
    assert no_table(db)

    result = invoke(folder, metadata, db, backbone.spec.model, "--encoding", "cp932", "--json")
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert (report["added"], report["failures"]) == (2, [])
    colour = column_name("ｶﾗｰ")
    rows = stored_rows(db)
    assert (rows["1"][colour], rows["2"][colour]) == ("ｸﾛ", "ｼﾛ")
    assert CatalogStore.open(db).catalog_schema.attribute(colour).value_names == ["ｸﾛ", "ｼﾛ"]
