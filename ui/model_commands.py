"""``circhat models list|use``, ``circhat finetune``, ``circhat words`` and ``circhat simulate-customers``: learning
from use.

``register(app)`` adds them to the main ``circhat`` app; ``python -m
ui.model_commands`` runs them on their own. Without ``--db`` the commands work
on the demo world's catalog (built or reused like ``circhat demo`` does, which
also registers its model as a root version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer

RegistryDir = Annotated[Path | None, typer.Option("--registry", help="Model registry folder (default "
                                                                      "$CIRCHAT_HOME/models).")]
Db = Annotated[str | None, typer.Option(help="LanceDB folder of the catalog (default: the demo world's catalog).")]
Table = Annotated[str, typer.Option(help="Catalog table name.")]
LogPath = Annotated[Path | None, typer.Option("--log", help="Triplet log, JSON lines (default "
                                                            "$CIRCHAT_HOME/triplets/triplets.jsonl).")]
DataDir = Annotated[Path | None, typer.Option(help="Where the demo world is cached (with no --db; env "
                                                     "CIRCHAT_HOME).")]
Seed = Annotated[int, typer.Option(help="Seed of the demo world (with no --db).")]
NImages = Annotated[int, typer.Option(help="Images in the demo world (with no --db).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _registry(root: Path | None, data_dir: Path | None = None):
    from training.registry import Registry

    return Registry(root or (data_dir / "models" if data_dir else None))


def _store(db: str | None, table: str, registry, data_dir: Path | None, seed: int, n_images: int):
    """The catalog named, else the demo world's (built like any catalog, or reused; its version registered)."""
    from retrieval.store import CatalogStore

    if db is not None:
        return CatalogStore.open(db, table)
    from assistant.turns import Assistant
    from training.pipeline import prepare_demo

    built = prepare_demo(data_dir, seed, n_images, registry=registry, shop_assistant=Assistant.for_catalog)
    built.build.finish()
    return CatalogStore.open(built.db)


def models_list(registry: RegistryDir = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the model versions, oldest first; * marks the active version of its backbone. A fine-tuned version shows
    its parent's and its own choice@1 on held-out picks and R@1 on the fixed benchmark queries (the forgetting
    guard's figure)."""
    from training.registry import learning_figures

    reg = _registry(registry)
    versions, active = reg.versions(), set(reg.active_ids().values())
    if as_json:
        typer.echo(json.dumps([{**v.to_dict(), "active": v.id in active} for v in versions], indent=2))
        return
    if not versions:
        typer.echo(f"no model versions in {reg.root} yet (`circhat demo` or `circhat build` registers one)")
        return
    typer.echo(f"  {'version':<14} {'parent':<14} {'created':<20} {'verdict':<9} {'trained on':<32} "
               f"{'picks choice@1':<16} {'benchmark R@1':<22} backbone")
    for v in versions:
        counts = v.training.get("counts", {})
        figures = learning_figures(v.metrics)
        data = (f"{counts.get('train_picks', 0)} picks + {counts.get('synthetic', 0)} synthetic"
                if counts else v.training.get("kind", ""))
        typer.echo(f"{'*' if v.id in active else ' '} {v.id:<14} {v.parent or '-':<14} {v.created:<20} "
                   f"{v.verdict:<9} {data:<32} {figures['picks'] or '-':<16} {figures['benchmark'] or '-':<22} "
                   f"{v.backbone}")


def models_use(
    version: Annotated[str, typer.Argument(help="Version id (see `circhat models list`).")],
    registry: RegistryDir = None,
    force: Annotated[bool, typer.Option(help="Activate even a version that was worse than its parent.")] = False,
    db: Annotated[str | None, typer.Option(help="Check the version against this catalog's backbone.")] = None,
    table: Table = "catalog",
) -> None:
    """Make VERSION the active model for its backbone (what `circhat serve` and `circhat demo` load)."""
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import CatalogStore, StoreNotFound
    from training.registry import UnknownVersion, WorseVersion

    reg = _registry(registry)
    try:
        identity = CatalogStore.open(db, table).identity if db else None
        chosen = reg.use(version, force=force, store_identity=identity)
    except (UnknownVersion, WorseVersion, ModelMismatch, StoreNotFound) as err:
        raise _fail(str(err)) from None
    typer.echo(f"active for backbone {chosen.backbone}: {chosen.id} (no re-embedding needed; restart the app)")


def finetune_command(
    from_triplets: Annotated[bool, typer.Option("--from-triplets", help="Learn from the picks in the triplet "
                                                                        "log (the only source so far).")] = False,
    log: LogPath = None,
    since: Annotated[str | None, typer.Option(help="Only picks from this date/time on (ISO, UTC).")] = None,
    force: Annotated[bool, typer.Option(help="Activate the new version even if it is worse on held-out "
                                             "picks or forgets.")] = False,
    parent: Annotated[str | None, typer.Option(help="Version to continue from (default: the active one).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (default 600).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the adapters (default 1e-3).")] = None,
    heldout_share: Annotated[float | None, typer.Option(help="Share of sessions held out for evaluation "
                                                             "(default 0.2).")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default 0).")] = None,
    forgetting_tolerance: Annotated[float | None, typer.Option(
        help="Points of R@1 on the fixed synthetic benchmark queries the new version may lose to its parent and "
             "still be activated (default 1).")] = None,
    db: Db = None,
    table: Table = "catalog",
    registry: RegistryDir = None,
    data_dir: DataDir = None,
    world_seed: Seed = 0,
    n_images: NImages = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Continue stage 2 on harvested picks (+ synthetic triplets), compare with the parent on held-out picks and on
    fixed benchmark queries (the forgetting guard), register the result; exit 3 when it is not activated."""
    from assistant.triplet_log import default_log_path
    from retrieval.backbone import BackboneUnavailable
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import StoreNotFound
    from training.finetune import FinetuneConfig, NothingToLearn, finetune_from_log, format_report, parse_since
    from training.finetune import replace_config as with_overrides
    from training.registry import UnknownVersion

    if not from_triplets:
        raise _fail("say what to learn from: --from-triplets (the pick log)")
    reg = _registry(registry, data_dir)
    try:
        when = parse_since(since) if since else None
        config = with_overrides(FinetuneConfig(), steps=steps, lr=lr, heldout_share=heldout_share, seed=seed,
                                forgetting_tolerance=forgetting_tolerance)
        store = _store(db, table, reg, data_dir, world_seed, n_images)
        report = finetune_from_log(store, log or default_log_path(), reg, config, when, parent, force, progress)
    except (NothingToLearn, UnknownVersion, ModelMismatch, StoreNotFound, BackboneUnavailable, FileNotFoundError,
            LookupError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if not report["activated"]:
        raise typer.Exit(3)


def simulate_customers_command(
    sessions: Annotated[int, typer.Option(help="How many simulated customers.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the customers (targets, phrasings, consent).")] = 0,
    style: Annotated[str, typer.Option(help="Vocabulary: french (not known to the parser or the training "
                                            "templates) or english (the training phrasing).")] = "french",
    log: LogPath = None,
    turns: Annotated[int, typer.Option(help="Turns per customer.")] = 5,
    db: Db = None,
    table: Table = "catalog",
    registry: RegistryDir = None,
    data_dir: DataDir = None,
    world_seed: Seed = 0,
    n_images: NImages = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Drive simulated shoppers through the assistant (Assistant.say / pick) with the active model; fills the log."""
    from assistant.searcher import CatalogSearcher
    from assistant.triplet_log import TripletLog, default_log_path
    from assistant.turns import Assistant
    from retrieval.query_encoder import ModelMismatch
    from retrieval.store import StoreNotFound
    from training.finetune import load_store_backbone
    from training.simulated_customers import STYLES, CustomerCatalog, CustomerConfig, check_style, simulate_customers

    if style not in STYLES:
        raise _fail(f"--style must be one of {', '.join(STYLES)}")
    reg = _registry(registry, data_dir)
    try:
        store = _store(db, table, reg, data_dir, world_seed, n_images)
        active = reg.active(store.identity)
        if active is None:
            raise LookupError(f"no active model version for backbone {store.identity}; `circhat models use ID`")
        encoder = reg.load(active, load_store_backbone(store), store.identity)
        catalog = CustomerCatalog.from_store(store)
        check_style(catalog.labels, style)
    except (ModelMismatch, StoreNotFound, LookupError, ValueError) as err:
        raise _fail(str(err)) from None
    path = log or default_log_path()
    assistant = Assistant(CatalogSearcher(store, encoder), None, TripletLog(path))
    result = simulate_customers(assistant, catalog, CustomerConfig(sessions=sessions, seed=seed, style=style,
                                                                   turns=turns))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['sessions']} {style} customers on model {result['model']}: {result['picks']} picks logged to "
               f"{path}; {result['found']:.1f}% found their target")
    for k in ("success@1", "success@10"):
        typer.echo(f"{k} by turn: " + "  ".join(f"{v:.1f}" for v in result[k]))


def _catalog(db: str | None, table: str, registry: Path | None, data_dir: Path | None, world_seed: int,
             n_images: int):
    """The catalog whose learned words a ``words`` command reads or changes; a clear exit when it is not there."""
    from retrieval.store import StoreNotFound

    try:
        return _store(db, table, _registry(registry, data_dir), data_dir, world_seed, n_images)
    except StoreNotFound as err:
        raise _fail(str(err)) from None


def _word_lines(words) -> list[str]:
    return [f"  {w.phrase!r} -> {w.attribute} {w.value}  ({w.agreeing} of {w.picks} picks agree)" for w in words]


def words_list(db: Db = None, table: Table = "catalog", registry: RegistryDir = None, data_dir: DataDir = None,
               world_seed: Seed = 0, n_images: NImages = 10_000,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the words learned from this catalog's customers, with the picks that taught them."""
    learned = _catalog(db, table, registry, data_dir, world_seed, n_images).catalog_schema.learned
    if as_json:
        typer.echo(json.dumps([w.model_dump() for w in learned], indent=2, ensure_ascii=False))
        return
    typer.echo(f"{len(learned)} learned words" + (":" if learned else " (`circhat words learn` reads the pick log)"))
    for line in _word_lines(learned):
        typer.echo(line)


def words_learn(
    log: LogPath = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be learned; change nothing.")] = False,
    min_picks: Annotated[int | None, typer.Option(help="Picks a phrase needs with its meaning (default 4).")] = None,
    min_share: Annotated[float | None, typer.Option(help="Share of a phrase's picks that must agree (default "
                                                         "0.6).")] = None,
    db: Db = None,
    table: Table = "catalog",
    registry: RegistryDir = None,
    data_dir: DataDir = None,
    world_seed: Seed = 0,
    n_images: NImages = 10_000,
) -> None:
    """Learn what customers mean by the words the assistant could not place, from what they picked after saying them;
    the catalog keeps them (restart the app to use them)."""
    from assistant.triplet_log import default_log_path
    from assistant.word_learning import catalog_values, learn_into
    from retrieval.jsonl_log import read_log

    path = log or default_log_path()
    if not path.is_file():
        raise _fail(f"no pick log at {path}: picks are logged as customers use the assistant")
    thresholds = {k: v for k, v in (("min_picks", min_picks), ("min_share", min_share)) if v is not None}
    store = _catalog(db, table, registry, data_dir, world_seed, n_images)
    before = store.catalog_schema
    try:
        after = learn_into(before, read_log(path), catalog_values(store).get, **thresholds)
    except ValueError as err:
        raise _fail(str(err)) from None
    new = [w for w in after.learned if w not in before.learned]
    typer.echo(f"{len(new)} words learned or relearned from {path}" + (":" if new else ""))
    for line in _word_lines(new):
        typer.echo(line)
    if dry_run or after == before:
        return
    store.save_catalog_schema(after)
    typer.echo(f"{len(after.learned)} learned words kept with catalog {table!r} (restart the app to use them; "
               "`circhat words forget PHRASE` removes one)")


def words_forget(
    phrases: Annotated[list[str], typer.Argument(help="Learned phrases to forget.")],
    db: Db = None,
    table: Table = "catalog",
    registry: RegistryDir = None,
    data_dir: DataDir = None,
    world_seed: Seed = 0,
    n_images: NImages = 10_000,
) -> None:
    """Forget learned words (a later `circhat words learn` may learn them again from the same picks)."""
    from retrieval.lexicon import normal

    store = _catalog(db, table, registry, data_dir, world_seed, n_images)
    schema = store.catalog_schema
    unwanted = {normal(p) for p in phrases}
    unknown = sorted(unwanted - {normal(w.phrase) for w in schema.learned})
    if unknown:
        raise _fail(f"not a learned word: {', '.join(unknown)} (`circhat words list` shows them)")
    store.save_catalog_schema(schema.model_copy(update={
        "learned": [w for w in schema.learned if normal(w.phrase) not in unwanted]}))
    typer.echo(f"forgot {len(unwanted)} learned words (restart the app)")


def register(app: typer.Typer) -> None:
    """Add ``models``, ``finetune``, ``words`` and ``simulate-customers`` to the main command-line app."""
    models = typer.Typer(help="Model versions: list them, choose the active one.", no_args_is_help=True)
    models.command("list")(models_list)
    models.command("use")(models_use)
    app.add_typer(models, name="models")
    words = typer.Typer(help="Words learned from customers' picks: list, learn, forget.", no_args_is_help=True)
    words.command("list")(words_list)
    words.command("learn")(words_learn)
    words.command("forget")(words_forget)
    app.add_typer(words, name="words")
    app.command("finetune")(finetune_command)
    app.command("simulate-customers")(simulate_customers_command)


app = typer.Typer(help="circhat learning from use: model versions, fine-tuning, simulated customers.",
                  no_args_is_help=True, add_completion=False)
register(app)

if __name__ == "__main__":
    app()
