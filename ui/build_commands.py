"""``circhat build``: a folder of product photos and its metadata file to a servable catalog with its own model.

``register(app)`` adds the command to the main ``circhat`` app; the work is ``training.build.build_catalog``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ui.store_commands import default_db


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _say(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, err=True)


def build_command(
    catalog_dir: Annotated[Path, typer.Argument(help="Folder of the catalog's product photos (walked recursively).")],
    metadata: Annotated[Path | None, typer.Option(help="Product metadata: a Shopify product export, a Google "
                                                       "Merchant feed or a plain CSV (id, file, attribute columns).")
                        ] = None,
    model: Annotated[str | None, typer.Option(help="A pretrained open_clip model name (e.g. ViT-B-32) to use as "
                                                   "the backbone; with --pretrained.")] = None,
    pretrained: Annotated[str | None, typer.Option(help="Its weights: a local checkpoint file (.safetensors, .pt) "
                                                        "or an open_clip pretrained tag already in the cache.")] = None,
    train_backbone: Annotated[bool, typer.Option("--train-backbone", help="Train the tiny backbone on the "
                                                                          "catalog's own photos and metadata "
                                                                          "(the default without --model).")] = False,
    db: Annotated[str | None, typer.Option(help="LanceDB folder to build the catalog in [default "
                                                "$CIRCHAT_HOME/catalog.lancedb].")] = None,
    table: Annotated[str, typer.Option(help="Catalog table name.")] = "catalog",
    work: Annotated[Path | None, typer.Option(help="Where the cached build steps go [default <db>.build/<table>].")
                    ] = None,
    registry: Annotated[Path | None, typer.Option("--registry", help="Model registry folder [default "
                                                                     "$CIRCHAT_HOME/models].")] = None,
    format: Annotated[str | None, typer.Option("--format", help="csv, shopify or merchant [default: detected].")
                      ] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding of the metadata file.")] = None,
    backbone_pairs: Annotated[int | None, typer.Option(help="Image-caption pairs the tiny backbone trains on.")
                              ] = None,
    augment_from_views: Annotated[float | None, typer.Option(
        help="Zoom out and mirror the tiny backbone's photos when it would see each at least this many times (0: "
             "always) [default: the build's, in docs/catalog.md].")] = None,
    triplets: Annotated[int | None, typer.Option(help="Synthetic triplets from pairs of the catalog's items.")
                        ] = None,
    text_triplets: Annotated[int | None, typer.Option(help="Text-only triplets from the schema alone (0: none).")
                             ] = None,
    stage1_steps: Annotated[int | None, typer.Option(help="Stage-1 (mapper) training steps.")] = None,
    stage2_steps: Annotated[int | None, typer.Option(help="Stage-2 (adapter) training steps.")] = None,
    sessions: Annotated[int | None, typer.Option(help="Simulated shoppers run through the assistant at the end.")
                        ] = None,
    eval_queries: Annotated[int | None, typer.Option(help="Held-out queries per evaluation set.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every step: same catalog and seed, same model.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Build a shop's catalog end to end: ingest, backbone, stage 1, triplets, stage 2, evaluation, model version.

    Each step is cached by its inputs; a killed build resumes where it stopped, a rerun with nothing changed
    trains nothing. Then `circhat serve --db DB` serves it.
    """
    from assistant.turns import Assistant
    from retrieval.backbone import BackboneSpec, BackboneUnavailable
    from retrieval.errors import MetadataError, SchemaError
    from retrieval.ingest import IngestBusy
    from retrieval.metadata_formats import FORMATS
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import LayoutMismatch
    from training.build import BuildConfig, build_catalog
    from training.registry import Registry

    if format is not None and format not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}")
    if model is not None and train_backbone:
        raise _fail("give --model (a pretrained backbone) or --train-backbone, not both")
    if pretrained is not None and model is None:
        raise _fail("--pretrained needs --model (the open_clip architecture of those weights)")
    config = BuildConfig(seed=seed)
    if backbone_pairs is not None:
        config = replace(config, backbone=replace(config.backbone, pairs=backbone_pairs, seed=seed))
    if augment_from_views is not None:
        config = replace(config, backbone=replace(config.backbone, augment_from_views=augment_from_views))
    if triplets is not None:
        config = replace(config, triplets=triplets)
    if text_triplets is not None:
        config = replace(config, text_triplets=text_triplets)
    if stage1_steps is not None:
        config = replace(config, stage1=replace(config.stage1, steps=stage1_steps))
    if stage2_steps is not None:
        config = replace(config, stage2=replace(config.stage2, steps=stage2_steps))
    if sessions is not None:
        config = replace(config, sessions=sessions)
    if eval_queries is not None:
        config = replace(config, eval_queries=eval_queries)
    spec = BackboneSpec(model, pretrained) if model else None
    db_path = Path(db or default_db())
    try:
        report = build_catalog(catalog_dir, metadata, db_path, table, spec=spec, config=config, work=work,
                               registry=Registry(registry) if registry else None, format=format, encoding=encoding,
                               shop_assistant=Assistant.for_catalog, say=_say, progress=progress)
    except (BackboneUnavailable, ModelMismatch, LayoutMismatch, FileNotFoundError, IngestBusy, MetadataError,
            SchemaError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())


def register(app: typer.Typer) -> None:
    """Add ``build`` to the main command-line app."""
    app.command("build")(build_command)
