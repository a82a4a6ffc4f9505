"""Load run: many concurrent ``gradio_client`` sessions against a real ``circhat serve`` process.

``python -m benchmarks.load --sessions 20 --turns 10`` serves the demo world (or ``--db``) from a subprocess,
then drives N sessions × M turns at once: text turns, picks, undo and "none of these". Each session states
its own value of the catalog's most varied attribute (the demo's colour) and its own category plus a nonce
word, refines with the other attributes' edits, all taken from the served catalog's schema, filters by its
category, and replays its own actions on a
shadow ``Conversation`` (the same rules the server runs); after every turn the server's chips, state line,
chat transcript, result categories and logged pick must equal the shadow's, so a state that crossed sessions
is counted as a leak, not missed. Afterwards every acknowledged pick must be in the triplet log exactly once,
under its own session's hash. A burst larger than the queue then checks that overload is answered at once
with "busy, try again" (``QueueError``) rather than a timeout. Writes ``docs/benchmarks/load.{json,md}``.
The server subprocess and the client sessions are ``tests/server_harness.py``'s, which the tests share.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import typer

from assistant.conversation import Conversation, ShownItem
from assistant.parser import NONE_OF_THESE, UNDO, Parsed, RuleParser, clean_text
from assistant.triplet_log import hash_session, scan_log
from assistant.vocabulary import Vocabulary
from retrieval.catalog_schema import CatalogSchema
from retrieval.store import CatalogStore
from tests.server_harness import ServerProcess, connect, reply_details

PLAN = ("text", "pick", "text", "undo", "text", "pick", NONE_OF_THESE, "text", "pick", UNDO)
COMMAND_WORDS = {UNDO: "undo", NONE_OF_THESE: "none of these"}


def message_text(content: Any) -> str:
    """The text of a chat message as the client receives it (a string, a text part, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, list):
        return " ".join(message_text(c) for c in content)
    return ""


@dataclass
class Turn:
    """One finished turn: what was done, how long the client waited, and what went wrong, if anything."""

    kind: str
    seconds: float
    error: str | None = None
    leak: str | None = None


@dataclass
class LoadSession:
    """One simulated shopper with a shadow of its own conversation; ``check`` compares a reply with the shadow."""

    index: int
    value: str
    category: str
    nonce: str
    salt: bytes
    seed: int
    parser: RuleParser
    phrases: tuple[str, ...]
    category_column: str = "category"
    session_hash: str = ""
    shadow: Conversation = field(default_factory=lambda: Conversation("shadow"))
    said: list[str] = field(default_factory=list)
    acked: list[dict] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def action(self, t: int) -> tuple[str, str]:
        """(kind, argument) of turn ``t``: the opening sentence, a phrase, a pick rank, or a command."""
        kind = PLAN[t % len(PLAN)]
        if kind == "text":
            text = (f"a {self.value} {self.category} {self.nonce}" if t % len(PLAN) == 0
                    else self.phrases[(t + self.index) % len(self.phrases)])
            return "text", text
        if kind == "pick":
            shown = self.shadow.shown
            if not shown:
                return "text", f"a {self.value} {self.category} {self.nonce}"
            rng = np.random.default_rng([self.seed, self.index, t])
            return "pick", shown[int(rng.integers(0, min(4, len(shown))))].id
        return kind, kind

    def expect(self, kind: str, argument: str) -> None:
        """Replay the action on the shadow exactly as ``assistant.turns.Assistant`` does on the server."""
        if kind == "text":
            self.shadow.apply(self.parser.parse(clean_text(argument), self.shadow.known()))
            self.said.append(argument.strip())
        elif kind == "pick":
            self.shadow.pick(self.shadow.find_shown(argument))
            self.said.append(f"I pick #{argument}")
        else:
            self.shadow.apply(Parsed(command=kind))
            self.said.append(COMMAND_WORDS[kind])

    def check(self, kind: str, argument: str, outputs: Sequence[Any]) -> str | None:
        """None if the reply is this session's own (chips, state, transcript, categories, logged pick)."""
        details = reply_details(outputs)
        if details["chips"] != self.shadow.chips():
            return f"chips {details['chips']} != expected {self.shadow.chips()}"
        if details["state"] != self.shadow.describe():
            return f"state {details['state']!r} != expected {self.shadow.describe()!r}"
        chat = outputs[0] or []
        users = [message_text(m.get("content")) for m in chat if isinstance(m, dict) and m.get("role") == "user"]
        if users != self.said[-len(users):] or not users:
            return f"chat transcript {users[-3:]} is not this session's {self.said[-3:]}"
        wrong = [r["id"] for r in details["results"] if r["metadata"].get(self.category_column) != self.category]
        if wrong:
            return f"results {wrong[:5]} are not {self.category}"
        if kind == "pick":
            logged = details.get("logged") or {}
            if (logged.get("picked") or {}).get("id") != argument:
                return f"logged pick {logged.get('picked')} is not #{argument}"
            if logged.get("session") != hash_session(self.session_hash, self.salt):
                return "logged pick carries another session's hash"
        return None

    def run(self, client, turns: int, start: threading.Barrier | None = None) -> None:
        """Play ``turns`` turns; stop at the first error (the shadow cannot follow a failed turn)."""
        self.session_hash = client.session_hash
        if start is not None:
            start.wait()
        for t in range(turns):
            kind, argument = self.action(t)
            began = time.perf_counter()
            try:
                outputs = call(client, kind, argument, self.category)
            except Exception as err:  # any client-side failure is an error of the run
                self.turns.append(Turn(kind, time.perf_counter() - began, error=f"{type(err).__name__}: {err}"))
                return
            seconds = time.perf_counter() - began
            details = reply_details(outputs)
            if not details["ok"]:
                self.turns.append(Turn(kind, seconds, error=f"not ok: {details['message']}"))
                return
            self.expect(kind, argument)
            leak = self.check(kind, argument, outputs)
            self.shadow.record_results(None, None, None, [ShownItem(r["id"], r["rank"], r["score"], "",
                                                                    r["metadata"]) for r in details["results"]])
            if kind == "pick":
                self.acked.append(details["logged"])
            self.turns.append(Turn(kind, seconds, leak=leak))


def call(client, kind: str, argument: str, category: str) -> Sequence[Any]:
    """One action through the app's named API endpoints, with this session's category filter."""
    price = client.no_price_limit
    if kind == "text":
        return client.predict({"text": argument, "files": []}, category, price, api_name="/send")
    if kind == "pick":
        return client.predict(argument, category, price, False, api_name="/pick")
    return client.predict(category, price, api_name=f"/{kind}")


def make_sessions(n: int, salt: bytes, seed: int, schema: CatalogSchema) -> list[LoadSession]:
    """Sessions with distinct (value, category) pairs from the catalog's schema and a nonce word each.

    The value comes from the attribute with the most values (the demo's colour); the refinements are the
    edits of the other attributes, in the schema's own phrasing.
    """
    categories = schema.attribute(schema.category)
    if categories is None:
        raise ValueError("the load run filters by category: this catalog's schema has none")
    others = [a for a in schema.attributes if a.name != schema.category and a.values]
    if not others:
        raise ValueError("the load run needs an attribute besides the category")
    varied = max(others, key=lambda a: len(a.values))
    phrases = tuple(a.edit_phrase(v.name) for a in others if a is not varied for v in a.values) or \
        tuple(varied.edit_phrase(v.name) for v in varied.values)
    pairs = [(v.name, k.name) for v in varied.values for k in categories.values]
    order = np.random.default_rng(seed).permutation(len(pairs))
    parser = RuleParser(Vocabulary(schema))
    return [LoadSession(i, *pairs[int(order[i % len(pairs)])], nonce=f"zq{seed}x{i}", salt=salt, seed=seed,
                        parser=parser, phrases=phrases, category_column=schema.category,
                        shadow=Conversation("shadow", schema)) for i in range(n)]


def check_log(log: Path, sessions: Sequence[LoadSession]) -> dict[str, int]:
    """Every acknowledged pick in the log exactly once, under its own session's hash, and nothing else there."""
    scan = scan_log(log)
    by_session: dict[str, list[dict]] = {}
    for record in scan.records:
        by_session.setdefault(record.get("session"), []).append(record)
    counts = {"acknowledged": 0, "found_once": 0, "missing": 0, "duplicated": 0, "foreign": 0,
              "bad_lines": scan.bad_lines}
    for s in sessions:
        logged = by_session.get(hash_session(s.session_hash, s.salt), [])
        counts["acknowledged"] += len(s.acked)
        for record in s.acked:
            n = sum(r == record for r in logged)
            counts["found_once"] += n == 1
            counts["missing"] += n == 0
            counts["duplicated"] += n > 1
        counts["foreign"] += sum(not any(r == a for a in s.acked) for r in logged)
    return counts


def percentiles(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1), "mean_ms": round(float(ms.mean()), 1)}


def run_load(url: str, sessions: int, turns: int, salt: bytes, schema: CatalogSchema, log: Path | None = None,
             seed: int = 0, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Drive ``sessions`` concurrent sessions × ``turns`` turns; errors, leaks, latency and the log check."""
    players = make_sessions(sessions, salt, seed, schema)
    clients = [connect(url, auth) for _ in players]
    start = threading.Barrier(len(players))
    threads = [threading.Thread(target=p.run, args=(c, turns, start), daemon=True)
               for p, c in zip(players, clients, strict=True)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    done = [t for p in players for t in p.turns]
    errors = [f"session {p.index} turn {i}: {t.error}" for p in players for i, t in enumerate(p.turns) if t.error]
    leaks = [f"session {p.index} turn {i}: {t.leak}" for p in players for i, t in enumerate(p.turns) if t.leak]
    kinds = sorted({t.kind for t in done})
    result = {
        "sessions": sessions, "turns_per_session": turns, "turns_done": len(done),
        "turns_expected": sessions * turns, "errors": len(errors), "leaks": len(leaks),
        "error_examples": errors[:5], "leak_examples": leaks[:5], "wall_seconds": round(wall, 2),
        "turns_per_second": round(len(done) / wall, 2) if wall else 0.0,
        "latency": percentiles([t.seconds for t in done if not t.error]),
        "latency_by_kind": {k: percentiles([t.seconds for t in done if t.kind == k and not t.error]) for k in kinds},
        "picks_acknowledged": sum(len(p.acked) for p in players),
        "distinct_session_hashes": len({p.session_hash for p in players}),
    }
    if log is not None:
        result["log"] = check_log(log, players)
    return result


def burst(url: str, n: int, auth: tuple[str, str] | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Submit ``n`` turns at once from one client: each must finish or be refused as busy, none may hang."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    client = Client(url, auth=auth, verbose=False, analytics_enabled=False, download_files=False, max_workers=n)
    price = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/send"]["parameters"]
    price = next(p["parameter_default"] for p in price if p["parameter_name"] == "price")
    began = time.perf_counter()
    finished: dict[int, float] = {}
    jobs = [client.submit({"text": f"something like item {i}", "files": []}, "any", price, api_name="/send")
            for i in range(n)]
    for i, job in enumerate(jobs):
        job.future.add_done_callback(lambda _, i=i: finished.setdefault(i, time.perf_counter() - began))
    outcome = {"submitted": n, "ok": 0, "busy": 0, "other_errors": 0, "hung": 0, "busy_messages": [],
               "errors": []}
    ok_seconds, busy_seconds = [], []
    for i, job in enumerate(jobs):
        try:
            reply_details(job.result(timeout=max(1.0, timeout - (time.perf_counter() - began))))
            outcome["ok"] += 1
            ok_seconds.append(finished.get(i, time.perf_counter() - began))
        except QueueError as err:
            outcome["busy"] += 1
            busy_seconds.append(finished.get(i, time.perf_counter() - began))
            if str(err) not in outcome["busy_messages"]:
                outcome["busy_messages"].append(str(err))
        except TimeoutError:
            outcome["hung"] += 1
        except (AppError, ValueError, OSError) as err:
            outcome["other_errors"] += 1
            outcome["errors"].append(f"{type(err).__name__}: {err}"[:200])
    outcome["last_ok_seconds"] = round(max(ok_seconds), 2) if ok_seconds else None
    outcome["first_busy_seconds"] = round(min(busy_seconds), 2) if busy_seconds else None
    outcome["median_busy_seconds"] = round(float(np.median(busy_seconds)), 2) if busy_seconds else None
    client.close()
    return outcome


def queue_settings() -> dict[str, int]:
    from ui.serve import QUEUE_CONCURRENCY, QUEUE_MAX_SIZE

    return {"concurrency": QUEUE_CONCURRENCY, "max_size": QUEUE_MAX_SIZE}


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``load.json`` (everything) and ``load.md`` (the headline table and the command)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "load.json", out / "load.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    load, log, over = report["load"], report["load"].get("log", {}), report.get("burst")
    lines = [
        "# Load run: concurrent sessions against a real server",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Server: `circhat serve` subprocess on {report['catalog']['items']} catalog images "
        f"({report['catalog']['composer']}); {report['queue']['concurrency']} turn(s) at a time across all events "
        f"(one concurrency group: the turns share one model), up to {report['queue']['max_size']} waiting; "
        f"{report['machine']}.",
        "",
        "| sessions × turns | turns done | errors | leaks | p50 ms | p95 ms | p99 ms | max ms | turns/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {load['sessions']} × {load['turns_per_session']} | {load['turns_done']} | {load['errors']} | "
        f"{load['leaks']} | {load['latency'].get('p50_ms')} | {load['latency'].get('p95_ms')} | "
        f"{load['latency'].get('p99_ms')} | {load['latency'].get('max_ms')} | {load['turns_per_second']} |",
        "",
        "| turn kind | n | p50 ms | p95 ms |",
        "|---|---|---|---|",
        *[f"| {k} | {v['n']} | {v.get('p50_ms')} | {v.get('p95_ms')} |" for k, v in load["latency_by_kind"].items()],
        "",
        f"Triplet log: {log.get('acknowledged')} acknowledged picks, {log.get('found_once')} found exactly once, "
        f"{log.get('missing')} missing, {log.get('duplicated')} duplicated, {log.get('foreign')} records under a "
        f"session hash that did not make them, {log.get('bad_lines')} unreadable lines.",
        "",
        "A leak is any turn whose chips, state line, chat transcript, result categories or logged pick differ from "
        "the session's own shadow conversation (each session has its own colour, category and nonce word).",
    ]
    if over:
        lines += ["", f"Overload burst: {over['submitted']} turns submitted at once: {over['ok']} answered, "
                      f"{over['busy']} refused as busy (first after {over['first_busy_seconds']} s; the client "
                      f"raised {over['busy_messages'][:1]}), {over['hung']} hung, {over['other_errors']} other "
                      f"errors; the last accepted turn finished after {over['last_ok_seconds']} s. The browser "
                      f"shows \"This application is currently busy. Please try again.\" for a refused turn."]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def demo_catalog(data_dir: Path | None, seed: int, n_images: int, pairs: int | None) -> tuple[Path, Path | None, int]:
    """(LanceDB folder, composer folder, items) of the demo world, built the first time like ``circhat demo``."""
    from training.pipeline import build_demo

    built, _, composer = build_demo(data_dir, seed, n_images, pairs)
    return built.db, composer, len(built.world.items)


app = typer.Typer(add_completion=False)


@app.command()
def main(
    sessions: Annotated[int, typer.Option(help="Concurrent gradio_client sessions.")] = 20,
    turns: Annotated[int, typer.Option(help="Turns per session (text, pick, undo, none of these).")] = 10,
    db: Annotated[Path | None, typer.Option(help="LanceDB catalog to serve [default: the demo world's].")] = None,
    composer: Annotated[Path | None, typer.Option(help="Composer folder for --db.")] = None,
    burst_size: Annotated[int, typer.Option("--burst", help="Turns submitted at once after the load run, to "
                                                            "overflow the queue (0: skip).")] = 150,
    data_dir: Annotated[Path | None, typer.Option(help="Demo world cache [env CIRCHAT_HOME].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the demo world and of the sessions' choices.")] = 0,
    n_images: Annotated[int, typer.Option(help="Demo world size.")] = 10_000,
    out: Annotated[Path, typer.Option(help="Folder for load.json and load.md.")] = Path("docs/benchmarks"),
) -> None:
    """Serve a catalog from a subprocess and run the concurrent-session load check against it."""
    if db is None:
        db, composer, items = demo_catalog(data_dir, seed, n_images, None)
    else:
        items = len(CatalogStore.open(db))
    schema = CatalogStore.open(db).catalog_schema
    salt = secrets.token_hex(16)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="circhat-load-") as folder:
        log = Path(folder) / "triplets.jsonl"
        typer.secho(f"starting circhat serve on {db}", fg=typer.colors.CYAN, err=True)
        server = ServerProcess.start(db, log=log, composer=composer, env={"CIRCHAT_LOG_SALT": salt})
        try:
            typer.secho(f"{sessions} sessions x {turns} turns against {server.url}", fg=typer.colors.CYAN, err=True)
            load = run_load(server.url, sessions, turns, salt.encode(), schema, log, seed)
            over = burst(server.url, burst_size) if burst_size else None
        finally:
            server.stop()
    command = " ".join(["python -m benchmarks.load", *(shlex.quote(a) for a in sys.argv[1:])])
    report = {
        "command": command, "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python "
                                       f"{platform.python_version()}, load average {load_before:.1f} before and "
                                       f"{os.getloadavg()[0]:.1f} after the run",
        "catalog": {"db": str(db), "items": items, "composer": "two-stage composer" if composer else "no composer"},
        "queue": queue_settings(), "load": load, "burst": over,
    }
    json_path, md_path = write_report(report, out)
    latency = load["latency"]
    typer.echo(f"{load['turns_done']}/{load['turns_expected']} turns, {load['errors']} errors, {load['leaks']} leaks; "
               f"p50 {latency.get('p50_ms')} ms, p95 {latency.get('p95_ms')} ms; log {load.get('log')}")
    if over:
        typer.echo(f"burst of {over['submitted']}: {over['ok']} ok, {over['busy']} busy, {over['hung']} hung")
    typer.echo(f"wrote {json_path} and {md_path}")
    failed = load["errors"] or load["leaks"] or load["log"]["missing"] or load["log"]["duplicated"] or (
        load["log"]["foreign"] or load["log"]["bad_lines"] or (over and (over["hung"] or over["other_errors"])))
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
