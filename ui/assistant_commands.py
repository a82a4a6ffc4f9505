"""``circhat serve`` and ``circhat triplets export|stats``: the assistant and its harvested triplets.

``register(app)`` adds them to the main ``circhat`` app; ``python -m
ui.assistant_commands`` runs them on their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import typer

LogPath = Annotated[Path | None, typer.Option("--log", help="Triplet log, JSON lines (default "
                                                            "$CIRCHAT_HOME/triplets/triplets.jsonl).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _log_path(log: Path | None) -> Path:
    from assistant.triplet_log import default_log_path

    return log or default_log_path()


def triplets_export(
    out: Annotated[Path, typer.Argument(help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl (records as logged) or parquet (one flat row "
                                                      "per pick).")] = "jsonl",
    log: LogPath = None,
) -> None:
    """Export the logged picks (reference, instructions, picked target) for fine-tuning."""
    from assistant.triplet_log import export_log

    if fmt not in ("jsonl", "parquet"):
        raise _fail("--format must be jsonl or parquet")
    path = _log_path(log)
    if not path.exists():
        raise _fail(f"no triplet log at {path} yet (picks in the app write it)")
    rows = export_log(path, out, fmt)
    typer.echo(f"wrote {rows} picks to {out} ({fmt})")


def triplets_stats(
    log: LogPath = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise the log: sessions, picks, turns until a pick, rank of the picked item."""
    from assistant.triplet_log import log_stats

    stats = log_stats(_log_path(log))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"log: {stats['log']}")
    typer.echo(f"picks: {stats['picks']} in {stats['sessions']} sessions"
               + (f" ({stats['bad_lines']} unreadable lines skipped)" if stats["bad_lines"] else ""))
    for name in ("turns_until_pick", "picked_rank"):
        value = stats[name]
        if value:
            typer.echo(f"{name.replace('_', ' ')}: mean {value['mean']:.2f}, median {value['median']:.0f}, "
                       f"range {value['min']:.0f}-{value['max']:.0f}")
    if stats["picked_at_rank_1"] is not None:
        typer.echo(f"picked at rank 1: {stats['picked_at_rank_1']:.1%}; in top 5: {stats['picked_in_top_5']:.1%}")
    if stats["references"]:
        typer.echo("references: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["references"].items())))


def serve_command(
    db: Annotated[Path, typer.Option(help="LanceDB folder holding the ingested catalog (`circhat ingest`).")],
    model: Annotated[str | None, typer.Option(help="open_clip model or local-dir:/folder (default: the backbone "
                                                   "the catalog was embedded with).")] = None,
    pretrained: Annotated[str | None, typer.Option(help="Pretrained tag or checkpoint file for --model.")] = None,
    composer: Annotated[Path | None, typer.Option(help="Composer checkpoint folder (stages 1+2); without it a "
                                                       "photo plus words uses the image+text sum baseline.")] = None,
    table: Annotated[str, typer.Option(help="Catalog table name.")] = "catalog",
    log: LogPath = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the app to the network.")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    auth: Annotated[str | None, typer.Option(help="Require a login: user:password, or a file of such lines "
                                                  "(env CIRCHAT_AUTH).")] = None,
    llm: Annotated[str | None, typer.Option(help="Chat model for instruction parsing, module:Factory (rules "
                                                 "when absent or failing; env CIRCHAT_LLM).")] = None,
    llm_kwargs: Annotated[str | None, typer.Option(help="JSON keyword arguments for --llm (env "
                                                        "CIRCHAT_LLM_KWARGS).")] = None,
) -> None:
    """Serve the chat assistant on your own ingested catalog."""
    from retrieval.backbone import BackboneUnavailable
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import StoreNotFound
    from ui.serve import launch, parse_auth

    try:
        logins = parse_auth(auth or os.environ.get("CIRCHAT_AUTH"))
        typer.secho(f"circhat on http://{host}:{port} (catalog {db}, table {table})", fg=typer.colors.CYAN, err=True)
        launch(db, table=table, model=model, pretrained=pretrained, composer=composer, log=log, host=host,
               port=port, auth=logins, llm=llm, llm_kwargs=llm_kwargs)
    except (BackboneUnavailable, ModelMismatch, StoreNotFound, FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``triplets`` group to the main command-line app."""
    triplets = typer.Typer(help="Triplets harvested from picks in the app.", no_args_is_help=True)
    triplets.command("export")(triplets_export)
    triplets.command("stats")(triplets_stats)
    app.add_typer(triplets, name="triplets")
    app.command("serve")(serve_command)


app = typer.Typer(help="circhat assistant: serve the app, inspect harvested triplets.", no_args_is_help=True,
                  add_completion=False)
register(app)

if __name__ == "__main__":
    app()
