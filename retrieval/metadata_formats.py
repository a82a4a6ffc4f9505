"""Readers for the metadata files shops actually have, read into one table of catalog items.

Three formats, told apart by their header (``format=`` overrides):

* ``csv``: a plain CSV or TSV with an ``id`` column, an image column and any other columns as values;
* ``shopify``: a Shopify product CSV export, legacy (``Handle``, ``Body (HTML)``, ``Variant SKU``,
  ``Image Src``…) or 2024+ headers (``URL handle``, ``Description``, ``SKU``, ``Product image URL``…):
  one item per variant image, options (``Color``, ``Size``…) and product metafields as values;
* ``merchant``: a Google Merchant Center feed (TSV or CSV) with ``id``, ``image_link``, ``price`` as
  ``12.00 USD``…

Image references are kept as written; ``resolve_images`` maps them to files of the same name under the
catalog folder and never downloads anything. A file that cannot be read as a catalog raises
``MetadataError`` naming the file, line and column; rows that cannot become items are listed in
``ProductTable.skipped``.

Example::

    table = read_metadata(Path("products_export_1.csv"))   # detected as "shopify"
    found, missing = resolve_images(table, Path("photos"))
    for row, image in found:
        print(row.id, image, row.values[table.roles["name"]])
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from retrieval.errors import MetadataError

FORMATS = ("csv", "shopify", "merchant")
CELL_LIMIT = 131_072
IMAGE_COLUMNS = ("file", "path", "image", "filename", "image_src", "image_link", "image_url")

_PARSER_FIELD_LIMIT = 1 << 30
_DELIMITERS = (",", "\t", ";")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[\t\r\n]+")
_LATIN = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
                        "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D"})
_METAFIELD = re.compile(r"^(?P<name>.*?)\s*\((?P<owner>product|variant)\.metafields\."
                        r"(?P<ns>[^.\s()]+)\.(?P<key>[^\s()]+)\)\s*$", re.IGNORECASE)
_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")
_TAXONOMY_ID = re.compile(r"^(?:gid://\S+|[a-z]{2}(?:-\d+)+|\d+)$")
_PRICE = re.compile(r"^(?:(?P<pre>[A-Za-z]{3})\s*)?(?P<num>\d[\d.,]*)\s*(?:(?P<post>[A-Za-z]{3}))?$")

_SHOPIFY_FIELDS = {
    "handle": ("handle", "url_handle"),
    "title": ("title",),
    "body": ("body_html", "description"),
    "vendor": ("vendor",),
    "product_category": ("product_category",),
    "type": ("type",),
    "tags": ("tags",),
    "status": ("status",),
    "sku": ("variant_sku", "sku"),
    "price": ("variant_price", "price"),
    "image_src": ("image_src", "product_image_url"),
    "image_position": ("image_position",),
    "variant_image": ("variant_image", "variant_image_url"),
    "gender": ("google_shopping_gender",),
    "age_group": ("google_shopping_age_group",),
}
_SHOPIFY_MARKERS = frozenset({"body_html", "variant_sku", "variant_price", "image_src", "option1_name",
                              "option1_value", "product_image_url", "variant_image_url", "variant_image",
                              "published_on_online_store", "vendor"})
_MERCHANT_MARKERS = frozenset({"link", "availability", "condition", "google_product_category", "item_group_id",
                               "gtin", "mpn", "sale_price", "additional_image_link", "identifier_exists",
                               "mobile_link"})
_MERCHANT_DROPPED = frozenset({
    "link", "additional_image_link", "lifestyle_image_link", "mobile_link", "canonical_link", "gtin", "mpn",
    "identifier_exists", "item_group_id", "product_type", "google_product_category", "shipping",
    "shipping_label", "shipping_weight", "shipping_length", "shipping_width", "shipping_height",
    "ships_from_country", "transit_time_label", "min_handling_time", "max_handling_time", "tax", "tax_category",
    "cost_of_goods_sold", "ads_redirect", "ads_grouping", "ads_labels", "promotion_id", "excluded_destination",
    "included_destination", "shopping_ads_excluded_country", "expiration_date", "availability_date",
    "sale_price_effective_date", "unit_pricing_measure", "unit_pricing_base_measure", "installment",
    "subscription_cost", "loyalty_points", "loyalty_program", "auto_pricing_min_price", "pause",
    "energy_efficiency_class", "min_energy_efficiency_class", "max_energy_efficiency_class", "free_shipping_threshold",
    "custom_label_0", "custom_label_1", "custom_label_2", "custom_label_3", "custom_label_4",
})
_CSV_ROLES = {
    "name": ("name", "title"),
    "description": ("description",),
    "category": ("category", "type", "product_type"),
    "price": ("price",),
    "caption": ("caption",),
    "brand": ("brand", "vendor"),
}
_INLINE_TAGS = frozenset({"a", "abbr", "b", "code", "em", "font", "i", "mark", "s", "small", "span", "strong",
                          "sub", "sup", "u"})


@dataclass(frozen=True)
class ProductRow:
    """One catalog item as the metadata file describes it (image as written, never fetched; line of its first row)."""

    id: str
    image: str
    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class RowIssue:
    """A row that was not turned into an item, and why (reported to the user, never silent)."""

    line: int
    id: str | None
    reason: str


@dataclass
class ProductTable:
    """A metadata file read into items: value columns, which column plays which role, and what was left out."""

    format: str
    source: Path
    columns: tuple[str, ...]
    roles: dict[str, str]
    rows: list[ProductRow]
    skipped: list[RowIssue]
    notes: list[str]
    currency: str | None = None


@dataclass
class _Raw:
    """A decoded, parsed and cleaned delimited file: the header as written and each row with its line."""

    path: Path
    header: list[str]
    names: list[str]
    rows: list[tuple[int, list[str]]]
    notes: list[str] = field(default_factory=list)

    def index(self, *candidates: str) -> int | None:
        """The position of the first candidate column name present, so dialects can share one lookup."""
        for name in candidates:
            if name in self.names:
                return self.names.index(name)
        return None


def column_name(header: str) -> str:
    """A header as a unique SQL-safe column name (``Sleeve Length`` -> ``sleeve_length``, ``色`` -> ``c_…``)."""
    text = header.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        folded = "".join(c for c in unicodedata.normalize("NFKD", text.translate(_LATIN))
                         if not unicodedata.combining(c))
        if not folded.isascii():
            base = _ascii_name(folded)
            tag = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
            name = f"{base}_{tag}" if base else f"c_{tag}"
            return f"c_{name}" if name[0].isdigit() else name
        text = folded
    name = _ascii_name(text)
    return f"c_{name}" if not name or name[0].isdigit() else name


def _ascii_name(text: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]+", "_", text.strip()).strip("_").lower()


def detect_format(header: Sequence[str]) -> str:
    """The format a header belongs to, so a shop can pass its export as it is: shopify, merchant, else csv."""
    names = {column_name(_merchant_header(h)) for h in header}
    if ({"handle", "url_handle"} & names) and (_SHOPIFY_MARKERS & names):
        return "shopify"
    if {"id", "image_link"} <= names and (_MERCHANT_MARKERS & names):
        return "merchant"
    return "csv"


def read_metadata(path: Path, format: str | None = None, encoding: str | None = None) -> ProductTable:
    """Read a plain CSV, a Shopify export or a Merchant feed into items, or raise ``MetadataError``, never half."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown metadata format {format!r} (one of {', '.join(FORMATS)})")
    raw = _read_raw(Path(path), encoding)
    chosen = format or detect_format(raw.header)
    reader = {"csv": _read_plain, "shopify": _read_shopify, "merchant": _read_merchant}[chosen]
    table = reader(raw)
    table.notes[:0] = raw.notes
    _check_unique(raw.path, table.rows)
    return table


def resolve_images(table: ProductTable, folder: Path) -> tuple[list[tuple[ProductRow, Path]], list[RowIssue]]:
    """Each row's image as a file under ``folder`` (URLs by file name, nothing fetched), or the reason it is not."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = _FolderFiles(root)
    found: list[tuple[ProductRow, Path]] = []
    issues: list[RowIssue] = []
    for row in table.rows:
        result = _resolve_one(row.image, root, files)
        if isinstance(result, Path):
            found.append((row, result))
        else:
            issues.append(RowIssue(row.line, row.id, result))
    return found, issues


class _FolderFiles:
    """The folder's non-hidden files by name (and by case-folded name), listed once and only when needed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._exact: dict[str, list[Path]] | None = None
        self._folded: dict[str, list[Path]] = {}

    def named(self, name: str) -> list[Path]:
        if self._exact is None:
            self._exact = {}
            for base, dirs, names in os.walk(self.root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(names):
                    if not file.startswith("."):
                        path = Path(base) / file
                        self._exact.setdefault(file, []).append(path)
                        self._folded.setdefault(file.casefold(), []).append(path)
        return self._exact.get(name) or self._folded.get(name.casefold(), [])


def _resolve_one(ref: str, root: Path, files: _FolderFiles) -> Path | str:
    if _URL.match(ref):
        name = unquote(PurePosixPath(urlsplit(ref).path).name)
        if not name:
            return f"image URL {ref!r} has no file name"
        return _by_name(ref, name, root, files)
    if _WINDOWS_ABSOLUTE.match(ref):
        return f"image path {ref!r} is outside the catalog folder"
    relative = ref.replace("\\", "/")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        return f"image path {ref!r} is outside the catalog folder"
    if candidate.is_file():
        return candidate
    return _by_name(ref, PurePosixPath(relative).name, root, files)


def _by_name(ref: str, name: str, root: Path, files: _FolderFiles) -> Path | str:
    matches = files.named(name)
    if not matches:
        return f"image {ref!r} not found under {root}"
    if len(matches) > 1:
        shown = " and ".join(repr(p.relative_to(root).as_posix()) for p in matches[:2])
        more = f" (and {len(matches) - 2} more)" if len(matches) > 2 else ""
        return f"image {ref!r} matches {shown}{more} under {root}; name the subfolder in the metadata"
    target = matches[0].resolve()
    if not target.is_relative_to(root):
        return f"image path {ref!r} is outside the catalog folder (it links to {target})"
    return target


# ---------------------------------------------------------------- reading the file


def _read_raw(path: Path, encoding: str | None) -> _Raw:
    if not path.is_file():
        raise MetadataError(f"{path}: no such file")
    data = path.read_bytes()
    text, note = _decode(path, data, encoding)
    if not text.strip():
        raise MetadataError(f"{path} is empty")
    text, delimiter = _delimiter(text)
    if csv.field_size_limit() < _PARSER_FIELD_LIMIT:
        csv.field_size_limit(_PARSER_FIELD_LIMIT)
    header: list[str] | None = None
    names: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    previous = 0
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                _check_cells(path, line, cells, [])
                header = [_clean(c).lstrip("\ufeff").strip() for c in cells]
                names = [column_name(h) if h else "" for h in header]
                continue
            _check_cells(path, line, cells, header)
            if len(cells) > len(header):
                if any(c.strip() for c in cells[len(header):]):
                    raise MetadataError(f"{path}: line {line} has {len(cells)} cells but the header has "
                                        f"{len(header)} columns")
                cells = cells[:len(header)]
            values = [_clean(c) for c in cells] + [""] * (len(header) - len(cells))
            for i, value in enumerate(values):
                if value and not header[i]:
                    raise MetadataError(f"{path}: line {line}, column {i + 1} has a value but no header")
            rows.append((line, values))
    except csv.Error as err:
        if "unexpected end of data" in str(err):
            raise MetadataError(f"{path}: line {previous + 1}: a quoted cell is never closed") from None
        raise MetadataError(f"{path}: line {previous + 1}: malformed CSV ({err})") from None
    if header is None:
        raise MetadataError(f"{path} is empty")
    if not rows:
        raise MetadataError(f"{path} has a header but no product rows")
    return _Raw(path, header, names, rows, [note] if note else [])


def _check_cells(path: Path, line: int, cells: list[str], header: Sequence[str]) -> None:
    if not cells or max(map(len, cells)) <= CELL_LIMIT:
        return
    for i, cell in enumerate(cells):
        if len(cell) > CELL_LIMIT:
            column = header[i] if i < len(header) and header[i] else str(i + 1)
            raise MetadataError(f"{path}: line {line}, column {column}: a cell of {len(cell):,} characters "
                                f"(limit {CELL_LIMIT:,})")


def _decode(path: Path, data: bytes, encoding: str | None) -> tuple[str, str | None]:
    if encoding is not None:
        try:
            return data.decode(encoding), None
        except LookupError:
            raise MetadataError(f"unknown encoding {encoding!r} for {path}") from None
        except UnicodeDecodeError as err:
            raise MetadataError(f"{path} is not {encoding} ({_where(data, err, encoding)}); "
                                f"save the file as UTF-8 or pass the right --encoding") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "read as UTF-16 (byte-order mark)"
        except UnicodeDecodeError as err:
            raise MetadataError(f"{path} starts like UTF-16 but is not ({_where(data, err, 'utf-16')}); "
                                "save the file as UTF-8 or pass --encoding") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        text = _shift_jis(data)
        if text is None:
            raise MetadataError(f"{path} is not UTF-8 ({_where(data, err, 'utf-8')}); "
                                "save the file as UTF-8 or pass --encoding") from None
        return text, "read as Shift_JIS (cp932): the file is not UTF-8"
    if text.count("\x00") * 4 > len(text):
        raise MetadataError(f"{path} looks like UTF-16 without a byte-order mark; "
                            "save the file as UTF-8 or pass --encoding utf-16-le")
    return text, None


def _shift_jis(data: bytes) -> str | None:
    """The bytes as cp932 when they read as Japanese text, so a Latin-1 file is not taken for mojibake.

    A Latin-1 accented letter is a cp932 lead byte that swallows the next letter into one kanji ('crème' reads
    'cr鑪e'); Japanese text does not put a lone kanji inside a Latin word, so that reading is refused."""
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError:
        return None
    if re.search(r"[\x80-\x9f\ue000-\uf8ff]", text) or not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text) \
            or re.search(r"[A-Za-z][\u4e00-\u9fff][A-Za-z]", text):
        return None
    return text


def _where(data: bytes, err: UnicodeDecodeError, encoding: str) -> str:
    line = data[:err.start].decode(encoding, errors="replace").count("\n") + 1
    return f"byte 0x{data[err.start]:02x} at line {line}"


def _delimiter(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    hint = re.fullmatch(r"\ufeff?sep=(.)\s*", first)
    if hint and hint.group(1) in _DELIMITERS:
        return "\n" + rest, hint.group(1)
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in first:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return text, best if counts[best] else ","


def _clean(value: str) -> str:
    if value.isprintable():
        return value.strip()
    return _SPACES.sub(" ", _CONTROL.sub("", value)).strip()


# ---------------------------------------------------------------- plain CSV


def _read_plain(raw: _Raw) -> ProductTable:
    found = _columns_found(raw)
    _check_duplicate_names(raw)
    if "id" not in raw.names:
        raise MetadataError(f"{raw.path} has no id column (columns found: {found})")
    image = next((c for c in IMAGE_COLUMNS if c in raw.names), None)
    if image is None:
        raise MetadataError(f"{raw.path} has no image column (one of {', '.join(IMAGE_COLUMNS)}; "
                            f"columns found: {found})")
    id_at, image_at = raw.names.index("id"), raw.names.index(image)
    value_at = [(i, n) for i, n in enumerate(raw.names) if n and i not in (id_at, image_at)]
    columns = tuple(n for _, n in value_at)
    rows: list[ProductRow] = []
    skipped: list[RowIssue] = []
    for line, cells in raw.rows:
        item_id, ref = cells[id_at], cells[image_at]
        if not item_id:
            skipped.append(RowIssue(line, None, "row has no id"))
        elif not ref:
            skipped.append(RowIssue(line, item_id, f"row has no image ({raw.header[image_at]} is empty)"))
        else:
            rows.append(ProductRow(item_id, ref, line, {n: cells[i] for i, n in value_at}))
    roles = {role: next(c for c in names if c in columns)
             for role, names in _CSV_ROLES.items() if any(c in columns for c in names)}
    notes = [f"{_count(len(skipped), 'row')} skipped (no id or no image)"] if skipped else []
    return ProductTable("csv", raw.path, columns, roles, rows, skipped, notes)


def _columns_found(raw: _Raw) -> str:
    shown = [h for h in raw.header if h][:20]
    more = len([h for h in raw.header if h]) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "none"


def _check_duplicate_names(raw: _Raw) -> None:
    first: dict[str, str] = {}
    for header, name in zip(raw.header, raw.names, strict=True):
        if not name:
            continue
        if name in first:
            raise MetadataError(f"{raw.path}: columns {first[name]!r} and {header!r} both read as {name!r}; "
                                "rename one of them")
        first[name] = header


# ---------------------------------------------------------------- Shopify


@dataclass
class _Variant:
    line: int
    sku: str
    image: str
    values: dict[str, str]


def _read_shopify(raw: _Raw) -> ProductTable:
    at = {key: raw.index(*names) for key, names in _SHOPIFY_FIELDS.items()}
    if at["handle"] is None:
        raise MetadataError(f"{raw.path} has no Handle or URL handle column, so its rows cannot be grouped "
                            f"into products (columns found: {_columns_found(raw)})")
    if at["image_src"] is None and at["variant_image"] is None:
        raise MetadataError(f"{raw.path} has no image column (Image Src, Variant Image, Product image URL or "
                            f"Variant image URL; columns found: {_columns_found(raw)})")
    slots = [(raw.index(f"option{i}_name"), raw.index(f"option{i}_value")) for i in (1, 2, 3)]
    metafields = [(i, m) for i, h in enumerate(raw.header) if (m := _METAFIELD.match(h))]
    products, skipped = _shopify_products(raw, at["handle"])

    option_seen: dict[str, tuple[int, int]] = {}
    for rows in products.values():
        for option, name_at, _ in _product_options(rows, slots):
            option_seen.setdefault(option, (name_at, len(option_seen)))
    names = _shopify_columns(at, option_seen, metafields)

    items: list[ProductRow] = []
    inactive: Counter[str] = Counter()
    varies: Counter[str] = Counter()
    product_count = variant_count = 0
    filled: set[str] = set()
    for handle, rows in products.items():
        status = _product_field(rows, at["status"]).lower()
        if status and status != "active":
            inactive[status] += 1
            skipped.append(RowIssue(rows[0][0], handle, f"product status is {status} (only active products are read)"))
            continue
        product_count += 1
        variants = _shopify_variants(rows, at, names, slots, metafields)
        variant_count += len(variants)
        filled.update(c for v in variants for c, value in v.values.items() if value)
        differing: set[str] = set()
        for n, group in enumerate(_group_by_image(variants), start=1):
            values, unequal = _agreed([v.values for v in group], names.get(("field", "title")))
            differing.update(unequal)
            item_id = group[0].sku or f"{handle}-{n}"
            if group[0].image:
                items.append(ProductRow(item_id, group[0].image, group[0].line, values))
            else:
                skipped.append(RowIssue(group[0].line, item_id,
                                        "no image (no Variant Image and the product has no Image Src)"))
        varies.update(differing)
    notes = [f"{_count(len(items), 'item')} from {_count(product_count, 'product')} "
             f"({_count(variant_count, 'variant')})"]
    if inactive:
        parts = [f"{_count(count, status + ' product')}" for status, count in inactive.items()]
        notes.append(f"{_join(parts)} skipped (only active products are read)")
    if varies:
        notes.append(_varies_note(varies))
    return _finish("shopify", raw, names, filled, items, skipped, notes)


def _shopify_products(raw: _Raw, handle_at: int) -> tuple[dict[str, list[tuple[int, list[str]]]], list[RowIssue]]:
    """Rows grouped by handle in order of first appearance; a row with an empty handle continues the one above."""
    products: dict[str, list[tuple[int, list[str]]]] = {}
    skipped: list[RowIssue] = []
    handle = ""
    for line, cells in raw.rows:
        handle = cells[handle_at] or handle
        if handle:
            products.setdefault(handle, []).append((line, cells))
        else:
            skipped.append(RowIssue(line, None, "row has no handle and follows no product"))
    return products, skipped


def _product_field(rows: list[tuple[int, list[str]]], i: int | None) -> str:
    """A product-level field: the first row carries it, later variant rows of the product leave it empty."""
    if i is None:
        return ""
    return next((cells[i] for _, cells in rows if cells[i]), "")


def _product_options(rows: list[tuple[int, list[str]]],
                     slots: list[tuple[int | None, int | None]]) -> list[tuple[str, int, int]]:
    """(column, name position, value position) of each real option of a product (not ``Title: Default Title``)."""
    options = []
    for name_at, value_at in slots:
        name = _product_field(rows, name_at)
        if not name or name_at is None or value_at is None:
            continue
        if name.lower() == "title" and all(cells[value_at] in ("", "Default Title") for _, cells in rows):
            continue
        options.append((column_name(name), name_at, value_at))
    return options


def _shopify_variants(rows: list[tuple[int, list[str]]], at: dict[str, int | None],
                      names: dict[tuple[str, str], str], slots: list[tuple[int | None, int | None]],
                      metafields: list[tuple[int, re.Match[str]]]) -> list[_Variant]:
    """One product's variants with the product fields inherited; extra-image rows are not variants."""
    def cell(cells: list[str], key: str) -> str:
        i = at[key]
        return cells[i] if i is not None else ""

    base = dict.fromkeys(names.values(), "")
    for key in ("title", "vendor", "tags", "gender", "age_group"):
        if ("field", key) in names:
            base[names[("field", key)]] = _product_field(rows, at[key])
    if ("field", "body") in names:
        base[names[("field", "body")]] = _html_text(_product_field(rows, at["body"]))
    if ("field", "category") in names:
        base[names[("field", "category")]] = (_product_field(rows, at["type"])
                                              or _last_segment(_product_field(rows, at["product_category"])))
    for i, match in metafields:
        if match.group("owner").lower() == "product":
            base[names[("meta", str(i))]] = _product_field(rows, i)
    options = _product_options(rows, slots)
    value_slots = [v for _, v in slots if v is not None]
    first_image = _first_image(rows, at)
    variants = []
    for n, (line, cells) in enumerate(rows):
        if n and not any(cells[v] for v in value_slots) and not any(
                cell(cells, k) for k in ("sku", "price", "variant_image")):
            continue
        values = dict(base)
        for option, _, value_at in options:
            values[names[("option", option)]] = cells[value_at]
        if ("field", "price") in names:
            values[names[("field", "price")]] = cell(cells, "price")
        for i, match in metafields:
            if match.group("owner").lower() == "variant":
                values[names[("meta", str(i))]] = cells[i]
        variants.append(_Variant(line, cell(cells, "sku"), cell(cells, "variant_image") or first_image, values))
    return variants


def _shopify_columns(at: dict[str, int | None], option_seen: dict[str, tuple[int, int]],
                     metafields: list[tuple[int, re.Match[str]]]) -> dict[tuple[str, str], str]:
    """Output column per source, unique, ordered by where the source sits in the file."""
    wanted: list[tuple[float, tuple[str, str], tuple[str, ...]]] = []
    category_at = [i for i in (at["type"], at["product_category"]) if i is not None]
    for key, name, position in (("title", "title", at["title"]), ("body", "description", at["body"]),
                                ("vendor", "brand", at["vendor"]),
                                ("category", "category", min(category_at) if category_at else None),
                                ("tags", "tags", at["tags"]), ("price", "price", at["price"])):
        if position is not None:
            wanted.append((position, ("field", key), (name,)))
    for option, (position, order) in option_seen.items():
        wanted.append((position + order / 100, ("option", option), (option, f"{option}_option")))
    for key in ("gender", "age_group"):
        if at[key] is not None:
            wanted.append((at[key], ("field", key), (key, f"google_{key}")))
    for i, match in metafields:
        display = column_name(match.group("name")) if match.group("name") else ""
        wanted.append((i, ("meta", str(i)), (display, column_name(match.group("key")),
                                             column_name(f"{match.group('ns')}_{match.group('key')}"))))
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for _, source, candidates in wanted:
        name = next((c for c in candidates if c and c not in taken), None)
        if name is None:
            stem = next(c for c in candidates if c)
            name = next(f"{stem}_{n}" for n in range(2, len(taken) + 3) if f"{stem}_{n}" not in taken)
        taken.add(name)
        names[source] = name
    order = {source: position for position, source, _ in wanted}
    return dict(sorted(names.items(), key=lambda kv: order[kv[0]]))


def _first_image(rows: list[tuple[int, list[str]]], at: dict[str, int | None]) -> str:
    src, position = at["image_src"], at["image_position"]
    if src is None:
        return ""
    images = []
    for order, (_, cells) in enumerate(rows):
        if cells[src]:
            text = cells[position] if position is not None else ""
            rank = int(text) if text.isdigit() else 1 << 30
            images.append((rank, order, cells[src]))
    return min(images)[2] if images else ""


def _group_by_image(variants: list[_Variant]) -> list[list[_Variant]]:
    groups: dict[str, list[_Variant]] = {}
    for variant in variants:
        groups.setdefault(_image_key(variant.image), []).append(variant)
    return list(groups.values())


def _image_key(ref: str) -> str:
    """What an image reference resolves by: a URL's file name, a path's normalised form."""
    if _URL.match(ref):
        return unquote(urlsplit(ref).path.rsplit("/", 1)[-1])
    return PurePosixPath(ref.replace("\\", "/")).as_posix()


def _agreed(group: Sequence[dict[str, str]], name: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The values every member agrees on ('' where they differ, the shared leading words for the name)."""
    values = dict(group[0])
    differing = []
    for column in values:
        if all(member[column] == values[column] for member in group[1:]):
            continue
        values[column] = _shared_words([member[column] for member in group]) if column == name else ""
        if not values[column]:
            differing.append(column)
    return values, differing


def _shared_words(texts: list[str]) -> str:
    words = [text.split() for text in texts]
    shared = []
    for column in zip(*words, strict=False):
        if any(w != column[0] for w in column[1:]):
            break
        shared.append(column[0])
    return " ".join(shared).rstrip(" -–—,/|:(")


def _varies_note(varies: Counter[str]) -> str:
    parts = []
    for n, (column, count) in enumerate(varies.most_common()):
        parts.append(f"{column} varies within one image for {_count(count, 'product')}" if n == 0
                     else f"{column} for {count:,}")
    columns = [column for column, _ in varies.most_common()]
    return f"{', '.join(parts)}: kept one item per image, {_join(columns)} left empty there"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _last_segment(category: str) -> str:
    if not category or _TAXONOMY_ID.match(category):
        return ""
    return category.rsplit(">", 1)[-1].strip()


class _TextOnly(HTMLParser):
    """The text of an HTML fragment, with block boundaries as spaces and script/style dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _html_text(value: str) -> str:
    if not value:
        return ""
    parser = _TextOnly()
    parser.feed(value)
    parser.close()
    return " ".join("".join(parser.parts).split())


# ---------------------------------------------------------------- Google Merchant Center


def _merchant_header(header: str) -> str:
    text = header.strip()
    return text[2:] if text[:2].lower() == "g:" else text


def _read_merchant(raw: _Raw) -> ProductTable:
    names = [column_name(_merchant_header(h)) if h else "" for h in raw.header]
    raw = _Raw(raw.path, raw.header, names, raw.rows, raw.notes)
    if "id" not in names:
        raise MetadataError(f"{raw.path} has no id column (columns found: {_columns_found(raw)})")
    if "image_link" not in names:
        raise MetadataError(f"{raw.path} has no image_link column (columns found: {_columns_found(raw)})")
    id_at, image_at = names.index("id"), names.index("image_link")
    group_at = raw.index("item_group_id")
    category_at = [i for i in (raw.index("product_type"), raw.index("google_product_category")) if i is not None]
    value_at: dict[str, list[int]] = {}
    order: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        if not name or name in ("id", "image_link") or name in _MERCHANT_DROPPED:
            continue
        if name not in value_at:
            order.append((i, name))
        value_at.setdefault(name, []).append(i)
    if category_at and "category" not in value_at:
        order.append((min(category_at), "category"))
    order.sort()
    columns = [name for _, name in order]
    product_type, google_category = raw.index("product_type"), raw.index("google_product_category")
    currencies: dict[str, int] = {}
    skipped: list[RowIssue] = []
    parsed: list[tuple[str, ProductRow]] = []
    for line, cells in raw.rows:
        item_id, ref = cells[id_at], cells[image_at]
        if not item_id:
            skipped.append(RowIssue(line, None, "row has no id"))
            continue
        if not ref:
            skipped.append(RowIssue(line, item_id, "row has no image_link"))
            continue
        values = {c: next((cells[i] for i in value_at[c] if cells[i]), "") for c in columns if c in value_at}
        if "category" not in value_at:
            values["category"] = (_last_segment(cells[product_type] if product_type is not None else "")
                                  or _last_segment(cells[google_category] if google_category is not None else ""))
        problem = None
        for column in ("price", "sale_price"):
            if values.get(column):
                amount, currency, problem = _parse_price(values[column], column)
                if problem:
                    break
                values[column] = amount
                if currency:
                    currencies.setdefault(currency, line)
                    if len(currencies) > 1:
                        (a, a_line), (b, b_line) = list(currencies.items())[:2]
                        raise MetadataError(f"{raw.path}: line {line}, column {column}: mixed currencies, "
                                            f"{a} (line {a_line}) and {b} (line {b_line}); "
                                            "a catalog takes prices in one currency")
        if problem:
            skipped.append(RowIssue(line, item_id, problem))
            continue
        group = cells[group_at] if group_at is not None else ""
        parsed.append((group, ProductRow(item_id, ref, line, {c: values[c] for c in columns})))
    _check_unique(raw.path, [row for _, row in parsed])
    filled = {c for _, row in parsed for c, value in row.values.items() if value}
    rows, varies = _merge_groups(parsed)
    notes = [f"{_count(len(skipped), 'row')} skipped (no id, no image_link or an unreadable price)"] if skipped else []
    if varies:
        notes.append(_varies_note(varies))
    currency = next(iter(currencies), None)
    return _finish("merchant", raw, {(c, c): c for c in columns}, filled, rows, skipped, notes, currency)


def _parse_price(text: str, column: str) -> tuple[str, str | None, str | None]:
    match = _PRICE.match(text.replace("\u00a0", " ").strip())
    if not match or (match.group("pre") and match.group("post")):
        return "", None, f"{column} {text!r} is not a number with a currency code (like '12.00 USD')"
    number = match.group("num")
    if "," in number and "." in number:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
        number = number.replace("," if decimal == "." else ".", "").replace(",", ".")
    elif "," in number:
        whole, _, tail = number.rpartition(",")
        number = f"{whole.replace(',', '')}.{tail}" if number.count(",") == 1 and len(tail) <= 2 \
            else number.replace(",", "")
    if number.count(".") > 1:
        return "", None, f"{column} {text!r} is not a number with a currency code (like '12.00 USD')"
    currency = (match.group("pre") or match.group("post") or "").upper() or None
    return number, currency, None


def _merge_groups(parsed: list[tuple[str, ProductRow]]) -> tuple[list[ProductRow], Counter[str]]:
    grouped: dict[tuple[str, str] | int, list[ProductRow]] = {}
    for n, (group, row) in enumerate(parsed):
        grouped.setdefault((group, _image_key(row.image)) if group else n, []).append(row)
    rows: list[ProductRow] = []
    varies: Counter[str] = Counter()
    products_varying: dict[str, set[str]] = {}
    for key, members in grouped.items():
        values, differing = _agreed([m.values for m in members], "title")
        for column in differing:
            products_varying.setdefault(column, set()).add(key[0] if isinstance(key, tuple) else "")
        rows.append(ProductRow(members[0].id, members[0].image, members[0].line, values))
    for column, groups in products_varying.items():
        varies[column] = len(groups)
    return rows, varies


# ---------------------------------------------------------------- shared


def _finish(fmt: str, raw: _Raw, names: dict[tuple[str, str], str], filled: set[str], rows: list[ProductRow],
            skipped: list[RowIssue], notes: list[str], currency: str | None = None) -> ProductTable:
    """The table without the columns no source row fills (unused metafields…), and roles for those that remain."""
    kept = tuple(c for c in dict.fromkeys(names.values()) if c in filled)
    rows = [ProductRow(r.id, r.image, r.line, {c: r.values.get(c, "") for c in kept}) for r in rows]
    role_columns = {"name": "title", "description": "description", "category": "category", "price": "price",
                    "brand": "brand"}
    roles = {role: column for role, column in role_columns.items() if column in kept}
    return ProductTable(fmt, raw.path, kept, roles, rows, skipped, notes, currency)


def _check_unique(path: Path, rows: Iterable[ProductRow]) -> None:
    lines: dict[str, list[int]] = {}
    for row in rows:
        lines.setdefault(row.id, []).append(row.line)
    duplicates = [(item_id, at) for item_id, at in lines.items() if len(at) > 1]
    if duplicates:
        shown = "; ".join(f"{item_id!r} at lines {', '.join(map(str, at[:5]))}" for item_id, at in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise MetadataError(f"{path}: duplicate ids: {shown}{more}; every item needs its own id")
