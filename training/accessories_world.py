"""The second catalog: bags, shoes and hats, written out only as a shop's files.

It is the proof that circhat works on a shop's own catalog. Nothing on the
ingest or serve path imports this module: it writes a folder of product photos
(``images/``) and a Shopify product CSV export (``products.csv``, the 2024+
header or the legacy one), which are then read the way any shop's are.

The schema is unlike the demo's. Variant options: Color (8 colours, no grey
and no green), Size (S, M, L, drawn at visibly different scales, each size with
its own variant image) and Material (leather, canvas, suede, straw, drawn as
textures). Product metafields: strap (bags), heel height and toe shape (shoes),
buckle (bags and shoes), brim (hats); a metafield that does not apply to a
category is empty on its rows. Products come in families of two or three that
share a style and a variant grid (same attributes, other vendor, title and
price), so several distinct images share each attribute combination. A few
products are drafts, which a reader must skip. Everything is deterministic
from the config: the same config gives the same bytes.

>>> from pathlib import Path
>>> csv_path = write_accessories_catalog(Path("/tmp/shop"), AccessoriesConfig(), progress=False)  # doctest: +SKIP
>>> len(expected_items(AccessoriesConfig()))                                                    # doctest: +SKIP
567
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.generated_files import config_marker, replace_file
from training.render_accessories import Look, render_accessory, render_swatch

ACCESSORIES_VERSION = 1
IMAGES_DIR = "images"
CSV_NAME = "products.csv"
MARKER_NAME = ".accessories-catalog.json"
CDN_PREFIX = "https://cdn.shopify.com/s/files/1/0764/2207/3901/files/"

CATEGORIES = ("Bag", "Shoe", "Hat")
COLOURS = ("Black", "Brown", "Tan", "Olive", "Burgundy", "Cream", "Navy", "Red")
SIZES = ("S", "M", "L")
MATERIALS = ("Leather", "Canvas", "Suede", "Straw")
STRAPS = ("None", "Short", "Long")
HEEL_HEIGHTS = ("Flat", "Low", "High")
TOE_SHAPES = ("Round", "Pointed", "Square")
BUCKLES = ("Yes", "No")
BRIMS = ("Narrow", "Wide")

ATTRIBUTES = ("category", "colour", "size", "material", "strap", "heel_height", "toe_shape", "buckle", "brim")
VALUES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES, "colour": COLOURS, "size": SIZES, "material": MATERIALS, "strap": STRAPS,
    "heel_height": HEEL_HEIGHTS, "toe_shape": TOE_SHAPES, "buckle": BUCKLES, "brim": BRIMS,
}
APPLIES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES, "colour": CATEGORIES, "size": CATEGORIES, "material": CATEGORIES,
    "strap": ("Bag",), "heel_height": ("Shoe",), "toe_shape": ("Shoe",), "buckle": ("Bag", "Shoe"), "brim": ("Hat",),
}
OPTIONS = (("Color", "colour"), ("Size", "size"), ("Material", "material"))
METAFIELDS = (
    ("Strap (product.metafields.custom.strap)", "strap"),
    ("Heel height (product.metafields.custom.heel_height)", "heel_height"),
    ("Toe shape (product.metafields.custom.toe_shape)", "toe_shape"),
    ("Buckle (product.metafields.custom.buckle)", "buckle"),
    ("Brim (product.metafields.custom.brim)", "brim"),
)
STYLE_ATTRIBUTES = tuple(key for _, key in METAFIELDS)

TAXONOMY = {
    "Bag": "Apparel & Accessories > Handbags, Wallets & Cases > Handbags",
    "Shoe": "Apparel & Accessories > Shoes",
    "Hat": "Apparel & Accessories > Clothing Accessories > Hats",
}
BASE_PRICE = {"Bag": 89.0, "Shoe": 74.0, "Hat": 39.0}
MATERIAL_PRICE = {"Leather": 1.3, "Canvas": 0.8, "Suede": 1.15, "Straw": 0.75}
BASE_GRAMS = {"Bag": 650, "Shoe": 800, "Hat": 180}
SIZE_GRAMS = {"S": 0.8, "M": 1.0, "L": 1.2}
CODE = {
    "Bag": "BAG", "Shoe": "SHO", "Hat": "HAT",
    "Black": "BLK", "Brown": "BRN", "Tan": "TAN", "Olive": "OLV", "Burgundy": "BUR", "Cream": "CRM",
    "Navy": "NVY", "Red": "RED", "Leather": "LEA", "Canvas": "CNV", "Suede": "SUE", "Straw": "STR",
}
VENDORS = ("Marlow & Finch", "Atelier Nord", "Cobble Lane", "Sunhaven Goods", "Kestrel Studio", "Paloma House")
NAMES = (
    "Harbor", "Juniper", "Marlowe", "Sierra", "Linden", "Aurora", "Bristol", "Cedar", "Delphine", "Everly",
    "Fenwick", "Hollis", "Isla", "Kingsley", "Larkin", "Mercer", "Nolan", "Orla", "Prescott", "Quincy",
    "Rowan", "Selby", "Tamsin", "Ulla", "Verity", "Wren", "Yara", "Zadie", "Ashby", "Blythe",
)
FEEL = {"Leather": "Supple", "Canvas": "Sturdy", "Suede": "Soft", "Straw": "Airy"}

# (header, field) in export order; a field of None is a column a real export carries that this shop leaves empty.
HEADER_2024: tuple[tuple[str, str | None], ...] = (
    ("Title", "title"), ("URL handle", "handle"), ("Description", "body"), ("Vendor", "vendor"),
    ("Product category", "product_category"), ("Type", "type"), ("Tags", "tags"),
    ("Published on online store", "published"), ("Status", "status"), ("SKU", "sku"), ("Barcode", None),
    ("Option1 name", "option1_name"), ("Option1 value", "option1_value"), ("Option1 Linked To", None),
    ("Option2 name", "option2_name"), ("Option2 value", "option2_value"), ("Option2 Linked To", None),
    ("Option3 name", "option3_name"), ("Option3 value", "option3_value"), ("Option3 Linked To", None),
    ("Price", "price"), ("Compare-at price", "compare_at_price"), ("Cost per item", "cost"),
    ("Charge tax", "taxable"), ("Tax code", None), ("Unit price total measure", None),
    ("Unit price total measure unit", None), ("Unit price base measure", None), ("Unit price base measure unit", None),
    ("Inventory tracker", "inventory_tracker"), ("Inventory quantity", "inventory_qty"),
    ("Continue selling when out of stock", "inventory_policy"), ("Weight value (grams)", "grams"),
    ("Weight unit for display", "weight_unit"), ("Requires shipping", "requires_shipping"),
    ("Fulfillment service", "fulfillment"), ("Product image URL", "image_src"), ("Image position", "image_position"),
    ("Image alt text", "image_alt"), ("Variant image URL", "variant_image"), ("Gift card", "gift_card"),
    ("SEO title", "seo_title"), ("SEO description", "seo_description"),
    ("Color (product.metafields.shopify.color-pattern)", None), *METAFIELDS,
    ("Google Shopping / Google product category", None), ("Google Shopping / Gender", None),
    ("Google Shopping / Age group", None), ("Google Shopping / Manufacturer part number (MPN)", None),
    ("Google Shopping / Ad group name", None), ("Google Shopping / Ads labels", None),
    ("Google Shopping / Condition", None), ("Google Shopping / Custom product", None),
    ("Google Shopping / Custom label 0", None), ("Google Shopping / Custom label 1", None),
    ("Google Shopping / Custom label 2", None), ("Google Shopping / Custom label 3", None),
    ("Google Shopping / Custom label 4", None),
)
HEADER_LEGACY: tuple[tuple[str, str | None], ...] = (
    ("Handle", "handle"), ("Title", "title"), ("Body (HTML)", "body"), ("Vendor", "vendor"),
    ("Product Category", "product_category"), ("Type", "type"), ("Tags", "tags"), ("Published", "published"),
    ("Option1 Name", "option1_name"), ("Option1 Value", "option1_value"), ("Option2 Name", "option2_name"),
    ("Option2 Value", "option2_value"), ("Option3 Name", "option3_name"), ("Option3 Value", "option3_value"),
    ("Variant SKU", "sku"), ("Variant Grams", "grams"), ("Variant Inventory Tracker", "inventory_tracker"),
    ("Variant Inventory Qty", "inventory_qty"), ("Variant Inventory Policy", "inventory_policy"),
    ("Variant Fulfillment Service", "fulfillment"), ("Variant Price", "price"),
    ("Variant Compare At Price", "compare_at_price"), ("Variant Requires Shipping", "requires_shipping"),
    ("Variant Taxable", "taxable"), ("Variant Barcode", None), ("Image Src", "image_src"),
    ("Image Position", "image_position"), ("Image Alt Text", "image_alt"), ("Gift Card", "gift_card"),
    ("SEO Title", "seo_title"), ("SEO Description", "seo_description"),
    ("Google Shopping / Google Product Category", None), ("Google Shopping / Gender", None),
    ("Google Shopping / Age Group", None), ("Google Shopping / MPN", None),
    ("Google Shopping / Condition", None), ("Google Shopping / Custom Product", None),
    ("Google Shopping / Custom Label 0", None), ("Google Shopping / Custom Label 1", None),
    ("Google Shopping / Custom Label 2", None), ("Google Shopping / Custom Label 3", None),
    ("Google Shopping / Custom Label 4", None), *METAFIELDS,
    ("Variant Image", "variant_image"), ("Variant Weight Unit", "weight_unit"), ("Variant Tax Code", None),
    ("Cost per item", "cost"), ("Price / International", None), ("Compare At Price / International", None),
    ("Status", "status"),
)
DIALECTS = {"2024": HEADER_2024, "legacy": HEADER_LEGACY}


@dataclass(frozen=True)
class AccessoriesConfig:
    """Everything that determines the catalog's bytes."""

    seed: int = 0
    n_products: int = 60
    image_size: int = 64
    render_scale: int = 3
    dialect: str = "2024"
    n_drafts: int = 2
    detail_images: bool = True
    version: int = ACCESSORIES_VERSION


@dataclass(frozen=True)
class Variant:
    """One purchasable variant: its options, SKU, own image and stock."""

    colour: str
    size: str
    material: str
    sku: str
    image: str
    grams: int
    inventory_qty: int


@dataclass(frozen=True)
class Product:
    """One listing: product-level fields, style metafields and its variant grid."""

    index: int
    family: int
    handle: str
    title: str
    category: str
    style: dict[str, str]
    vendor: str
    price: str
    compare_at_price: str
    cost: str
    tags: str
    body: str
    status: str
    variants: tuple[Variant, ...]
    detail_image: str
    image_version: int

    def look(self, variant: Variant) -> Look:
        return Look(self.category, variant.colour, variant.size, variant.material, **self.style)


def csv_header(dialect: str = "2024") -> list[str]:
    """The exact column names of one export dialect, in order, so tests and readers need not copy them."""
    return [name for name, _ in DIALECTS[dialect]]


def _style_for(category: str, k: int, orders: dict[str, np.ndarray]) -> dict[str, str]:
    """The k-th style of a category; the index pattern covers every value once k passes 3 (6 for bags' pairs)."""
    style = dict.fromkeys(STYLE_ATTRIBUTES, "")

    def pick(attribute: str, i: int) -> str:
        values = VALUES[attribute]
        return values[int(orders[attribute][i % len(values)])]

    if category == "Bag":
        style["strap"] = pick("strap", k)
        style["buckle"] = pick("buckle", k)
    elif category == "Shoe":
        style["heel_height"] = pick("heel_height", k)
        style["toe_shape"] = pick("toe_shape", k + k // 3)
        style["buckle"] = pick("buckle", k // 3 + k)
    else:
        style["brim"] = pick("brim", k)
    return style


def _noun(category: str, style: dict[str, str]) -> str:
    if category == "Bag":
        return {"None": "Clutch", "Short": "Tote", "Long": "Crossbody"}[style["strap"]]
    if category == "Shoe":
        return {"Flat": "Flat", "Low": "Loafer", "High": "Pump"}[style["heel_height"]]
    return {"Narrow": "Trilby", "Wide": "Sun Hat"}[style["brim"]]


def _features(category: str, style: dict[str, str]) -> str:
    if category == "Bag":
        words = {"None": "no strap, to carry in the hand", "Short": "short top handles",
                 "Long": "a long shoulder strap"}[style["strap"]]
    elif category == "Shoe":
        heel = {"Flat": "a flat sole", "Low": "a low block heel", "High": "a high heel"}[style["heel_height"]]
        words = f"{heel} and a {style['toe_shape'].lower()} toe"
    else:
        return f"a {style['brim'].lower()} brim"
    return words + (" and a polished buckle" if style["buckle"] == "Yes" else "")


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def _price(value: float) -> str:
    return f"{max(5.0, round(value / 5.0) * 5.0 - 0.05):.2f}"


def plan_catalog(config: AccessoriesConfig) -> list[Product]:
    """Every product, variant, price and file name, before any drawing; the ground truth of the files."""
    if config.dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {sorted(DIALECTS)}, not {config.dialect!r}")
    rng = np.random.default_rng([config.seed, 1])
    n_families = max(1, round(config.n_products / 2.5))
    orders = {a: rng.permutation(len(v)) for a, v in VALUES.items()}
    colour_cycle = {c: [COLOURS[int(i)] for i in rng.permutation(len(COLOURS))] for c in CATEGORIES}
    material_cycle = {c: [MATERIALS[int(i)] for i in rng.permutation(len(MATERIALS))] for c in CATEGORIES}
    cursors = {c: [0, 0] for c in CATEGORIES}
    families = []
    for j in range(n_families):
        category = CATEGORIES[j % len(CATEGORIES)]
        n_colours = int(rng.choice([2, 3]))
        n_materials = int(rng.choice([1, 1, 2]))
        cc, mc = cursors[category]
        colours = [colour_cycle[category][(cc + i) % len(COLOURS)] for i in range(n_colours)]
        materials = [material_cycle[category][(mc + i) % len(MATERIALS)] for i in range(n_materials)]
        cursors[category] = [cc + n_colours, mc + n_materials]
        families.append((category, _style_for(category, j // len(CATEGORIES), orders), colours, materials))

    n_drafts = min(config.n_drafts, max(0, config.n_products - n_families))
    drafts = {int(i) for i in rng.choice(np.arange(n_families, config.n_products), size=n_drafts, replace=False)}
    name_order = rng.permutation(len(NAMES))
    products, titles = [], set()
    for i in range(config.n_products):
        family = i % n_families
        category, style, colours, materials = families[family]
        noun = _noun(category, style)
        names = [f"{NAMES[int(name_order[(i + k) % len(NAMES)])]} {noun}" for k in range(len(NAMES))]
        title = next((t for t in names if t not in titles), f"{names[0]} {i}")
        titles.add(title)
        handle = _slug(title)
        price = BASE_PRICE[category] * MATERIAL_PRICE[materials[0]] * float(rng.uniform(0.85, 1.35))
        on_sale = rng.random() < 0.2
        variants = []
        for colour in colours:
            for size in SIZES:
                for material in materials:
                    sku = f"{CODE[category]}-{i:03d}-{CODE[colour]}-{size}-{CODE[material]}"
                    image = f"{handle}-{colour}-{size}-{material}.png".lower()
                    grams = int(round(BASE_GRAMS[category] * SIZE_GRAMS[size] / 10) * 10)
                    variants.append(Variant(colour, size, material, sku, image, grams, int(rng.integers(0, 40))))
        mats = " or ".join(m.lower() for m in materials)
        body = (f"<p>{FEEL[materials[0]]} {mats} {noun.lower()} with {_features(category, style)}.</p>"
                f"<p>In sizes S, M and L.</p>")
        tags = ", ".join([category.lower() + "s", _slug(noun), "accessories"] + (["sale"] if on_sale else []))
        products.append(Product(
            index=i, family=family, handle=handle, title=title, category=category, style=style,
            vendor=VENDORS[int(rng.integers(len(VENDORS)))], price=_price(price),
            compare_at_price=_price(price * 1.25) if on_sale else "", cost=f"{price * 0.45:.2f}",
            tags=tags, body=body, status="draft" if i in drafts else "active", variants=tuple(variants),
            detail_image=f"{handle}-detail.png" if config.detail_images and i % 4 == 1 else "",
            image_version=1714000000 + int(rng.integers(0, 9_000_000)),
        ))
    return products


def expected_items(
    config: AccessoriesConfig = AccessoriesConfig(), include_drafts: bool = False,
) -> list[dict[str, str]]:
    """One dict per variant with the attribute values exactly as the CSV writes them ("" where one does not apply).

    Keys: sku, handle, title, image (the file name in ``images/``), status, price and every name in ATTRIBUTES.
    Draft products are left out unless ``include_drafts``, as a reader must skip them.
    """
    items = []
    for product in plan_catalog(config):
        if product.status != "active" and not include_drafts:
            continue
        for v in product.variants:
            items.append({
                "sku": v.sku, "handle": product.handle, "title": product.title, "image": v.image,
                "status": product.status, "price": product.price, "category": product.category,
                "colour": v.colour, "size": v.size, "material": v.material, **product.style,
            })
    return items


def _cdn_url(name: str, version: int) -> str:
    return f"{CDN_PREFIX}{name}?v={version}"


def _product_rows(product: Product) -> list[dict[str, str]]:
    """The export's rows of one product: the first carries the product fields, the others only variant fields."""
    rows = []
    alt = product.title
    for n, v in enumerate(product.variants):
        row = {
            "handle": product.handle, "sku": v.sku,
            "option1_value": v.colour, "option2_value": v.size, "option3_value": v.material,
            "price": product.price, "compare_at_price": product.compare_at_price, "cost": product.cost,
            "taxable": "TRUE", "inventory_tracker": "shopify", "inventory_qty": str(v.inventory_qty),
            "inventory_policy": "deny", "grams": str(v.grams), "weight_unit": "g", "requires_shipping": "TRUE",
            "fulfillment": "manual", "image_src": _cdn_url(v.image, product.image_version),
            "image_position": str(n + 1), "image_alt": f"{alt} - {v.colour} / {v.size} / {v.material}",
            "variant_image": _cdn_url(v.image, product.image_version),
        }
        if n == 0:
            row |= {
                "title": product.title, "body": product.body, "vendor": product.vendor,
                "product_category": TAXONOMY[product.category], "type": product.category, "tags": product.tags,
                "published": "TRUE" if product.status == "active" else "FALSE", "status": product.status,
                "option1_name": OPTIONS[0][0], "option2_name": OPTIONS[1][0], "option3_name": OPTIONS[2][0],
                "gift_card": "FALSE", "seo_title": f"{product.title} | {product.vendor}",
                "seo_description": f"{product.title} by {product.vendor}.",
            } | product.style
        rows.append(row)
    if product.detail_image:
        rows.append({
            "handle": product.handle, "image_src": _cdn_url(product.detail_image, product.image_version),
            "image_position": str(len(product.variants) + 1), "image_alt": f"{alt} - material close-up",
        })
    return rows


def catalog_csv_text(config: AccessoriesConfig, products: list[Product] | None = None) -> str:
    """The whole Shopify export as text (no drawing), in the config's dialect."""
    columns = DIALECTS[config.dialect]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    for product in products if products is not None else plan_catalog(config):
        for row in _product_rows(product):
            writer.writerow([row.get(key, "") if key else "" for _, key in columns])
    return buffer.getvalue()


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def write_accessories_catalog(
    folder: Path, config: AccessoriesConfig = AccessoriesConfig(), progress: bool = True,
) -> Path:
    """Write images/ and products.csv (the Shopify export) into folder; returns the CSV path.

    Deterministic: same config, same bytes. Images are written atomically and the
    CSV last, so a killed run is simply redone; a rerun with the same config over
    complete output reuses it without drawing anything.
    """
    folder = Path(folder)
    csv_path = folder / CSV_NAME
    marker = folder / MARKER_NAME
    products = plan_catalog(config)
    text = catalog_csv_text(config, products)
    images = folder / IMAGES_DIR
    names = [v.image for p in products for v in p.variants] + [p.detail_image for p in products if p.detail_image]
    if (marker.exists() and marker.read_text() == config_marker(config) and csv_path.exists()
            and csv_path.read_text(encoding="utf-8") == text and all((images / n).exists() for n in names)):
        return csv_path
    images.mkdir(parents=True, exist_ok=True)
    csv_path.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    size, scale = config.image_size, config.render_scale
    with tqdm(total=len(names), desc="rendering accessories", unit="img", disable=not progress) as bar:
        for product in products:
            for n, v in enumerate(product.variants):
                rng = np.random.default_rng([config.seed, 2, product.index, n])
                replace_file(images / v.image, _png(render_accessory(product.look(v), rng, size, scale)))
                bar.update()
            if product.detail_image:
                rng = np.random.default_rng([config.seed, 3, product.index])
                first = product.variants[0]
                replace_file(images / product.detail_image,
                              _png(render_swatch(first.colour, first.material, rng, size, scale)))
                bar.update()
    replace_file(marker, config_marker(config).encode())
    replace_file(csv_path, text.encode("utf-8"))
    return csv_path
