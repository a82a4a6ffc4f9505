"""``circhat serve`` and ``circhat triplets export|stats|prune|delete-session``: the assistant and its logs.

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
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder to write daily.png, models.png and "
                                                               "ranks.png into.")] = None,
) -> None:
    """Summarise the pick and turn logs: sessions, pick rate, turns until a pick, rank of the picked item,
    triplets harvested, per model version and per day."""
    from assistant.log_figures import TABLE_COLUMNS, compute_figures, headline_lines, save_plots, table_row
    from assistant.triplet_log import log_stats

    path = _log_path(log)
    stats = log_stats(path)
    figures = compute_figures(path)
    written = save_plots(figures, plots) if plots is not None else []
    if as_json:
        typer.echo(json.dumps({**stats, "figures": figures.to_dict(), "plots": [str(p) for p in written]},
                              indent=2))
        return
    typer.echo(f"log: {stats['log']} (turn log: {figures.turn_log})")
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
    for line in headline_lines(figures):
        typer.echo(line)
    for title, groups in (("per model version", figures.by_model), ("per day", figures.by_day)):
        if groups:
            typer.echo(f"\n{title}:")
            rows = [[g.key, *map(str, table_row(g))] for g in groups]
            header = [title.removeprefix("per "), *TABLE_COLUMNS]
            widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if written:
        typer.echo("\nplots: " + ", ".join(str(p) for p in written))


def _report(done, as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(json.dumps(done.to_dict(), indent=2))
        return
    verb = "would remove" if done.dry_run else "removed"
    typer.echo(f"{what}: {verb} {done.picks.removed} picks ({done.picks.kept} kept), {done.turns.removed} turn "
               f"records ({done.turns.kept} kept), {len(done.uploads_removed)} upload copies")
    unreadable = done.picks.unreadable_kept + done.turns.unreadable_kept
    undated = done.picks.undated_kept + done.turns.undated_kept
    if unreadable or undated:
        typer.echo(f"kept {unreadable} unreadable and {undated} undated lines (nothing to judge them by)")


def triplets_prune(
    older_than: Annotated[float, typer.Option("--older-than", help="Remove records older than this many days.",
                                              metavar="DAYS")],
    log: LogPath = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove picks and turn records older than DAYS, and consented upload copies no pick names any more."""
    from assistant.log_retention import prune

    if not older_than >= 0:
        raise _fail("--older-than takes a number of days >= 0")
    _report(prune(_log_path(log), older_than, dry_run=dry_run), as_json, f"older than {older_than:g} days")


def triplets_delete_session(
    session_id: Annotated[str, typer.Argument(help="The session id (hashed with the log's salt before matching).")],
    log: LogPath = None,
    hashed: Annotated[bool, typer.Option("--hashed", help="SESSION_ID is already the stored hash (as in the "
                                                          "log or an export).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete every pick and turn record of one session, and the upload copies only its picks named."""
    from assistant.log_retention import delete_session, delete_session_hash
    from assistant.triplet_log import load_salt

    path = _log_path(log)
    try:
        done = (delete_session_hash(path, session_id.strip().lower(), dry_run=dry_run) if hashed else
                delete_session(path, session_id, load_salt(), dry_run=dry_run))
    except ValueError as err:
        raise _fail(str(err)) from None
    _report(done, as_json, "session")
    if not done.picks.removed and not done.turns.removed and not as_json:
        typer.echo("no records of that session (check the id, and that the salt is the one the app used)")


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
    triplets.command("prune")(triplets_prune)
    triplets.command("delete-session")(triplets_delete_session)
    app.add_typer(triplets, name="triplets")
    app.command("serve")(serve_command)


app = typer.Typer(help="circhat assistant: serve the app, inspect harvested triplets.", no_args_is_help=True,
                  add_completion=False)
register(app)

if __name__ == "__main__":
    app()
