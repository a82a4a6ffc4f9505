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
Pairs = Annotated[int, typer.Option(help="Image-caption pairs the demo backbone trains on.")]


def _say(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, err=True)


@world_app.command("build")
def world_build(data_dir: DataDir = None, seed: Seed = 0, n_images: NImages = 10_000,
                pairs: Pairs = 100_000) -> None:
    """Render the demo catalog and train its backbone (cached; a rerun reuses both)."""
    from training.pipeline import prepare_demo

    built = prepare_demo(data_dir, seed, n_images, pairs, say=_say)
    world, spec, metrics = built.world, built.spec, built.metrics
    summary = json.loads((world.root / "world.json").read_text())
    typer.echo(json.dumps({
        "world": str(world.root), "items": summary["n_items"], "combinations": summary["n_combos"],
        "heldout_items": summary["n_heldout_items"], "backbone": spec.model,
        "heldout_text_to_image": metrics["heldout_text_to_image"], "train_seconds": metrics["train_seconds"],
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
def demo(data_dir: DataDir = None, seed: Seed = 0, n_images: NImages = 10_000, pairs: Pairs = 100_000,
         host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="Port of the web UI.")] = 7860,
         auth: Annotated[str | None, typer.Option(help="Require a login: user:password, or a file of such lines "
                                                       "[env CIRCHAT_AUTH; a file keeps it out of `ps`].")] = None,
         serve: Annotated[bool, typer.Option(help="Start the web UI once everything is built.")] = True) -> None:
    """The main job: build whatever the demo is missing, then start the assistant on it."""
    from ui.serve import parse_auth

    try:
        logins = parse_auth(auth or os.environ.get("CIRCHAT_AUTH"))
    except (ValueError, OSError) as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    start = time.perf_counter()
    from training.pipeline import prepare_demo

    built = prepare_demo(data_dir, seed, n_images, pairs, composer=True, say=_say)
    world, spec, metrics, composer = built.world, built.spec, built.metrics, built.composer
    from training.registry import Registry, demo_version

    registry = Registry(data_dir / "models" if data_dir else None)
    version = demo_version(registry, composer)
    composer = registry.composer_dir(version)
    _say(f"      model version {version.id} (the active one for this backbone; `circhat models list`)")
    recall = metrics["heldout_text_to_image"]
    typer.echo(f"demo world ready in {time.perf_counter() - start:.0f}s: {len(world.items)} images at "
               f"{world.root}; backbone held-out text->image R@1 {recall['R@1']:.1f} R@10 {recall['R@10']:.1f}")
    if not serve:
        return
    from ui.serve import launch_demo

    _say("[4/4] catalog store (LanceDB) and web UI")
    launch_demo(world, spec, composer, host=host, port=port, auth=logins)


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
