"""The ``circhat`` command line: build the demo world, train, serve.

The benchmarks are not part of the installed command: they run from a clone, ``./run.sh bench`` or
``python -m benchmarks.<name>`` (``benchmarks/``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer

app = typer.Typer(help="circhat: chat-style composed image search over a product catalog.",
                  no_args_is_help=True, add_completion=False)
world_app = typer.Typer(help="The offline demo world: procedural catalog + tiny backbone.", no_args_is_help=True)
backbone_app = typer.Typer(help="Backbones: check that an open_clip model loads here.", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(backbone_app, name="backbone")

DataDir = Annotated[Path | None, typer.Option(help="Where worlds and models are cached [env CIRCHAT_HOME, "
                                                     "default ~/.cache/circhat].")]
Seed = Annotated[int, typer.Option(help="Seed of the demo world; same seed, same bytes.")]
NImages = Annotated[int, typer.Option(help="Number of catalog images to render.")]
Pairs = Annotated[int | None, typer.Option(help="Image-caption pairs the demo backbone trains on [default: the "
                                                 "demo's recipe, training.pipeline.DEMO_PAIRS].")]


def _say(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, err=True)


@world_app.command("build")
def world_build(data_dir: DataDir = None, seed: Seed = 0, n_images: NImages = 10_000,
                pairs: Pairs = None) -> None:
    """Render the demo catalog, train its backbone and ingest it (cached; a rerun reuses all three)."""
    from training.pipeline import prepare_demo

    built = prepare_demo(data_dir, seed, n_images, pairs, say=_say)
    build = built.build
    summary = json.loads((built.world.root / "world.json").read_text())
    typer.echo(json.dumps({
        "world": str(built.world.root), "items": summary["n_items"], "combinations": summary["n_combos"],
        "db": str(build.db), "backbone": build.spec.model,
        "heldout_text_to_image": build.backbone_metrics.get("heldout_text_to_image"),
        "train_seconds": build.backbone_metrics.get("train_seconds"),
    }, indent=2))


@world_app.command("contact-sheet")
def world_contact_sheet(out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("docs/contact_sheet.png"),
                        data_dir: DataDir = None, seed: Seed = 0, n_images: NImages = 10_000,
                        rows: int = 6, cols: int = 10) -> None:
    """Write a grid of sample catalog images with their captions."""
    from training.contact_sheet import write_contact_sheet

    typer.echo(str(write_contact_sheet(out, data_dir, seed, n_images, rows, cols)))


@backbone_app.command("check")
def backbone_check(
    model: Annotated[str, typer.Option(help="open_clip model name, or local-dir:/folder.")],
    pretrained: Annotated[str | None, typer.Option(help="Pretrained tag or checkpoint file.")] = None,
) -> None:
    """Load an open_clip backbone and print its identity; a clear error if weights are not here."""
    from retrieval.backbone import BackboneSpec, BackboneUnavailable, load_backbone

    try:
        backbone = load_backbone(BackboneSpec(model, pretrained), "cpu")
    except BackboneUnavailable as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(backbone.describe(), indent=2))


@app.command()
def demo(data_dir: DataDir = None, seed: Seed = 0, n_images: NImages = 10_000, pairs: Pairs = None,
         host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="Port of the web UI.")] = 7860,
         auth: Annotated[str | None, typer.Option(help="Require a login: user:password, or a file of such lines "
                                                       "[env CIRCHAT_AUTH; a file keeps it out of `ps`].")] = None,
         serve: Annotated[bool, typer.Option(help="Start the web UI (with --no-serve: build everything, then "
                                                  "exit).")] = True) -> None:
    """The main job: the demo world built like any shop's catalog (`circhat build`), then the assistant on it.

    The page comes up as soon as the catalog is ingested; on a first run it answers with the image+text sum
    baseline while the two-stage model trains, then switches to it by itself.
    """
    from ui.serve import parse_auth

    try:
        logins = parse_auth(auth or os.environ.get("CIRCHAT_AUTH"))
    except (ValueError, OSError) as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    start = time.perf_counter()
    from assistant.turns import Assistant
    from training.pipeline import demo_registry, prepare_demo

    registry = demo_registry(data_dir)
    built = prepare_demo(data_dir, seed, n_images, pairs, say=_say, registry=registry,
                         shop_assistant=Assistant.for_catalog)
    typer.echo(f"demo catalog ready in {time.perf_counter() - start:.0f}s: {len(built.world.items)} images at "
               f"{built.world.root}, store {built.db}")
    if not serve:
        report = built.build.finish()
        typer.echo(report.summary())
        return
    from ui.serve import launch_demo

    launch_demo(built.build, registry, host=host, port=port, auth=logins, say=_say)


def main() -> None:
    app()


def _register_subcommands() -> None:
    from ui.assistant_commands import register as register_assistant
    from ui.build_commands import register as register_build
    from ui.model_commands import register as register_models
    from ui.store_commands import register as register_store

    register_store(app)
    register_assistant(app)
    register_models(app)
    register_build(app)


_register_subcommands()


if __name__ == "__main__":
    main()
