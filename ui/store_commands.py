"""``circhat ingest`` and ``circhat search``: the catalog store from the command line.

``register(app)`` adds both commands to the main ``circhat`` app; ``python -m
ui.store_commands`` runs them on their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from retrieval.data_home import default_data_dir

Db = Annotated[str | None, typer.Option(help="LanceDB directory or object-store URI (s3://bucket/path) [default "
                                             "$CIRCHAT_HOME/catalog.lancedb].")]
Table = Annotated[str, typer.Option(help="Catalog table name.")]
Model = Annotated[str | None, typer.Option(help="open_clip model name or local-dir:/folder [default: the backbone "
                                                "the table was built with].")]
Pretrained = Annotated[str | None, typer.Option(help="Pretrained tag or checkpoint file for --model.")]


def default_db() -> str:
    """The catalog store unless told otherwise: ``$CIRCHAT_HOME/catalog.lancedb``."""
    return str(default_data_dir() / "catalog.lancedb")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _backbone(model: str | None, pretrained: str | None, db: str, table: str):
    """The backbone named on the command line, else the one recorded in the table."""
    from retrieval.backbone import BackboneSpec, load_backbone
    from retrieval.store import CatalogStore

    if model is None:
        if not CatalogStore.exists(db, table):
            raise _fail(f"no catalog table {table!r} in {db} yet: pass --model (an open_clip name or "
                        f"local-dir:/folder, e.g. the demo backbone from `circhat world build`)")
        recorded = CatalogStore.open(db, table).backbone_spec
        if not recorded.get("model"):
            raise _fail(f"catalog {table!r} does not record its backbone; pass --model")
        model, pretrained = recorded["model"], recorded.get("pretrained")
    return load_backbone(BackboneSpec(model, pretrained))


def ingest_command(
    folder: Annotated[Path, typer.Argument(help="Folder of catalog images (walked recursively).")],
    metadata: Annotated[Path | None, typer.Option(help="Product metadata: a plain CSV (id, file, attribute "
                                                       "columns...), a Shopify product export or a Google Merchant "
                                                       "feed; images are found by name under FOLDER.")] = None,
    format: Annotated[str | None, typer.Option("--format", help="csv, shopify or merchant [default: detected from "
                                                                "the header].")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding of the metadata file [default: UTF-8, "
                                                      "else UTF-16 with a BOM, else Shift_JIS].")] = None,
    model: Model = None,
    pretrained: Pretrained = None,
    db: Db = None,
    table: Table = "catalog",
    sync: Annotated[bool, typer.Option(help="Also remove rows whose files (or CSV rows) are gone.")] = False,
    reembed: Annotated[bool, typer.Option(help="Rebuild a table embedded with another backbone.")] = False,
    engine: Annotated[str, typer.Option(help="local, or ray (decode+embed on Ray Data actors).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address for --engine ray "
                                                     "[default: start a local Ray].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per embedding batch and per atomic upsert.")] = 128,
    patches: Annotated[bool, typer.Option(help="Store patch features so catalog references need no "
                                               "decode (costs patches*width*4 bytes a row).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Add a folder of images to the catalog: incremental, idempotent, safe to kill and rerun."""
    from retrieval.backbone import BackboneUnavailable
    from retrieval.errors import MetadataError, SchemaError
    from retrieval.ingest import ENGINES, IngestBusy, ingest
    from retrieval.metadata_formats import FORMATS
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import LayoutMismatch

    if engine not in ENGINES:
        raise _fail(f"--engine must be one of {', '.join(ENGINES)}")
    if format is not None and format not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}")
    db = db or default_db()
    try:
        backbone = _backbone(model, pretrained, db, table)
        report = ingest(folder, backbone, db, table, metadata, format=format, encoding=encoding, sync=sync,
                        reembed=reembed, engine=engine, address=address, batch_size=batch_size, patches=patches,
                        progress=progress)
    except (BackboneUnavailable, ModelMismatch, LayoutMismatch, FileNotFoundError, IngestBusy, MetadataError,
            SchemaError) as err:
        raise _fail(str(err)) from None
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else report.summary())


def search_command(
    ref: Annotated[str | None, typer.Option(help="Reference: a catalog id or an image file.")] = None,
    say: Annotated[list[str] | None, typer.Option(help="An instruction; repeat for several, in order.")] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on metadata, e.g. \"category = 'dress' AND "
                                                   "price < 40\".")] = None,
    k: Annotated[int, typer.Option(help="How many items to return.")] = 10,
    exclude: Annotated[list[str] | None, typer.Option(help="A catalog id to leave out; repeatable.")] = None,
    composer: Annotated[Path | None, typer.Option(help="Composer checkpoint folder (stage 1/2); without it a "
                                                       "--ref plus --say uses image+text sum.")] = None,
    model: Model = None,
    pretrained: Pretrained = None,
    db: Db = None,
    table: Table = "catalog",
    exact: Annotated[bool, typer.Option(help="Brute-force search even if an index exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the query and hits as JSON.")] = False,
) -> None:
    """Search the catalog: a reference and/or instructions, optional filters; prints the ranked items."""
    from retrieval.backbone import BackboneUnavailable
    from retrieval.image_io import ImageRejected
    from retrieval.query_encoder import ModelMismatch, QueryEncoder
    from retrieval.search import ReferenceNotFound, search_catalog
    from retrieval.store import BadFilter, CatalogStore, StoreNotFound

    if not ref and not say:
        raise _fail("give --ref, --say, or both")
    db = db or default_db()
    try:
        backbone = _backbone(model, pretrained, db, table)
        store = CatalogStore.open(db, table, backbone.identity)
        encoder = QueryEncoder.load(composer, backbone) if composer else QueryEncoder(backbone, None)
        result = search_catalog(store, encoder, ref, say or [], where=where, k=k, exclude=exclude or [], exact=exact)
    except (BackboneUnavailable, ModelMismatch, StoreNotFound, BadFilter, ReferenceNotFound, ImageRejected,
            FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"query: {result.query}  [{result.mode}]")
    if result.note:
        typer.secho(f"note: {result.note}", fg=typer.colors.YELLOW, err=True)
    for rank, hit in enumerate(result.hits, start=1):
        label = hit.metadata.get("name") or hit.id
        details = ", ".join(f"{key}={value}" for key, value in hit.metadata.items()
                            if key not in ("name", "caption", "combo") and value not in (None, "none"))
        typer.echo(f"{rank:3d}. {hit.score:.4f}  {hit.id}  {label}  ({details})  {hit.path}")


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and ``search`` to the main command-line app."""
    app.command("ingest")(ingest_command)
    app.command("search")(search_command)


app = typer.Typer(help="circhat catalog store: ingest images, search them.", no_args_is_help=True,
                  add_completion=False)
register(app)

if __name__ == "__main__":
    app()
