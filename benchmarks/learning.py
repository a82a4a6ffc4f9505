"""`python -m benchmarks.learning`: do rounds of harvest + fine-tune make the assistant better, without forgetting?

On the cached demo world (10k images, its backbone, the shipped two-stage
composer, its LanceDB store): fresh simulated customers who speak French (a
vocabulary neither the parser nor the training templates know) are measured
with the parent model. Then, per round, other customers (seed ``seed + round -
1``) shop with the version being served and add their picks to one growing pick
log; ``finetune_from_log`` trains a candidate from the version served on the
whole log; the fresh customers are measured again with the candidate, and the
candidate is served in the next round if the verdict (held-out picks and the
forgetting guard) activated it. Unless ``--no-words``, each round also learns
the customers' words from the whole log (``assistant.word_learning``, what
``circhat words learn`` does), so the next round's assistant slots them; the
fresh customers are measured with the served version and the new words before
the fine-tune too with ``--words-alone``, to tell the two apart. English-speaking customers (the training
phrasing) are the control for forgetting, beside the guard's own figure, R@1 on
the fixed synthetic benchmark queries.

``--ablate`` also tries changes to the fine-tune recipe on the round-1 log
(each a candidate from the parent, measured on the same customers, beside
round 1's own candidate) and reports them in the same files.

Writes docs/benchmarks/learning.json, learning.md (included in BENCHMARKS.md by
``benchmarks.report``) and learning.png. Everything runs in a scratch folder:
the user's registry and log are untouched.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from assistant.parser import RuleParser
from assistant.vocabulary import Vocabulary
from assistant.word_learning import catalog_values, learn_into
from retrieval.jsonl_log import read_log
from training.finetune import GUARD_FIGURE, FinetuneConfig, finetune_from_log, load_store_backbone
from training.simulated_customers import VOCABULARIES, CustomerCatalog, CustomerConfig, simulate_customers

OUT_DIR = Path("docs/benchmarks")
SALT = b"bench-learning"
CONTROL = "english"
EVAL_SEED_OFFSET = 1000

ABLATION: dict[str, dict[str, Any]] = {
    "the previous recipe (1:2 synthetic, 3 negatives)": {"synthetic_per_pick": 2.0, "hard_negatives": 3},
    "3 negatives (passed-over items up to 3)": {"hard_negatives": 3},
    "harvested:synthetic 1:2": {"synthetic_per_pick": 2.0},
    "lr 1e-3 (double)": {"lr": 1e-3},
    "+ 2000 text-only composition triplets": {"text_triplets": 2000},
}


@dataclass(frozen=True)
class LearningBenchConfig:
    """What one run simulates and trains; measured customers use ``seed + 1000``, round r's harvest ``seed + r - 1``."""

    seed: int = 0
    n_images: int = 10_000
    backbone_pairs: int | None = None  # the demo's recipe (training.pipeline.DEMO_PAIRS): the model circhat demo serves
    style: str = "french"
    rounds: int = 3
    harvest_sessions: int = 600
    eval_sessions: int = 200
    control_sessions: int = 200
    turns: int = 5
    learn_words: bool = True
    words_alone: bool = False
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


class LearningWorld:
    """The demo catalog, a scratch registry rooted at the shipped composer, one pick log, and timers."""

    def __init__(self, config: LearningBenchConfig, data_dir: Path | None, scratch: Path, progress: bool):
        from assistant.uploads import UploadStore
        from retrieval.store import CatalogStore
        from training.pipeline import build_demo
        from training.registry import Registry

        self.config, self.progress = config, progress
        self.timings: dict[str, float] = {}
        clock = time.perf_counter()
        built, _, composer = build_demo(data_dir, config.seed, config.n_images, config.backbone_pairs,
                                        progress=progress)
        self.store = CatalogStore.open(built.db)
        self.timings["world, backbone, composer, store (built or cached)"] = time.perf_counter() - clock
        self.registry = Registry(scratch / "models")
        self.root = self.registry.use(self.registry.ensure_root(composer).id).id
        self.catalog = CustomerCatalog.from_store(self.store)
        self.schema = self.store.catalog_schema
        self.values = catalog_values(self.store)
        self.uploads = UploadStore(scratch / "uploads")
        self.log = scratch / "triplets" / "triplets.jsonl"

    def _assistant(self, version: str, logged: bool):
        from assistant.searcher import CatalogSearcher
        from assistant.triplet_log import TripletLog
        from assistant.turns import Assistant

        encoder = self.registry.load(version, load_store_backbone(self.store), self.store.identity)
        return Assistant(CatalogSearcher(self.store, encoder), RuleParser(Vocabulary(self.schema)),
                         TripletLog(self.log, salt=SALT) if logged else None, uploads=self.uploads)

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    def measure(self, version: str, name: str, control: bool = True) -> dict[str, dict]:
        """The held-out customers (and the control) with ``version``: success by turn, sessions that found."""
        clock = time.perf_counter()
        helper = self._assistant(version, logged=False)
        config = self.config
        out = {style: simulate_customers(helper, self.catalog, CustomerConfig(
            sessions=n, seed=config.seed + EVAL_SEED_OFFSET, style=style, turns=config.turns), self.progress)
            for style, n in ((config.style, config.eval_sessions), (CONTROL, config.control_sessions if control else 0))
            if n}
        self._timed(f"measure {name}", clock)
        return out

    def harvest(self, version: str, seed: int, name: str) -> dict[str, Any]:
        """Customers of ``seed`` shop with ``version``; their picks are appended to the log."""
        clock = time.perf_counter()
        config = self.config
        result = simulate_customers(self._assistant(version, logged=True), self.catalog, CustomerConfig(
            sessions=config.harvest_sessions, seed=seed, style=config.style, turns=config.turns), self.progress)
        self._timed(name, clock)
        return {k: result[k] for k in ("sessions", "picks", "found", "success@1", "success@10", "example", "model")}

    def learn_words(self) -> list[dict[str, Any]]:
        """The words the whole log teaches, kept for the assistants built from now on; returns those new or
        changed."""
        clock = time.perf_counter()
        before = self.schema.learned
        self.schema = learn_into(self.schema, read_log(self.log), self.values.get)
        self._timed("learn words", clock)
        return [w.model_dump() for w in self.schema.learned if w not in before]

    def finetune(self, parent: str, recipe: FinetuneConfig, name: str) -> dict[str, Any]:
        clock = time.perf_counter()
        report = finetune_from_log(self.store, self.log, self.registry, recipe, parent=parent,
                                   progress=self.progress)
        self._timed(name, clock)
        return report


def candidate(report: dict[str, Any]) -> dict[str, Any]:
    """What a fine-tune report says about its candidate, for the benchmark's tables."""
    return {k: report[k] for k in ("version", "parent", "verdict", "activated", "guard", "heldout_picks", "benchmark",
                                   "seconds")} | {"counts": report["training"]["counts"],
                                                  "stage2": report["training"]["stage2"]}


def run_ablation(world: LearningWorld, parent: str, base: FinetuneConfig,
                 variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each recipe change as a candidate from ``parent`` on the log as it is, measured on the held-out customers."""
    out = []
    for name, changes in variants.items():
        report = world.finetune(parent, replace(base, **changes), "ablation fine-tunes")
        out.append({"variant": name, "changes": changes, **candidate(report),
                    "customers": world.measure(report["version"], "ablation candidates")})
    return out


def run_learning_bench(config: LearningBenchConfig, data_dir: Path | None = None, workdir: Path | None = None,
                       progress: bool = True, ablation: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Parent measured, then per round harvest, fine-tune, candidate measured; returns every figure."""
    scratch = Path(workdir or tempfile.mkdtemp(prefix="circhat-bench-learning-"))
    world = LearningWorld(config, data_dir, scratch, progress)
    started = time.perf_counter()
    parent = world.measure(world.root, "parent")
    serving, rounds, ablated = world.root, [], None
    for number in range(1, config.rounds + 1):
        harvest = world.harvest(serving, config.seed + number - 1, "harvest sessions")
        words, words_alone = [], None
        if config.learn_words:
            words = world.learn_words()
            if config.words_alone:
                words_alone = world.measure(serving, "served version with the new words", control=False)
        if number == 1 and ablation:
            ablated = run_ablation(world, serving, config.finetune, ablation)
        report = world.finetune(serving, config.finetune, "fine-tunes (incl. before/after scoring)")
        customers = world.measure(report["version"], "candidates")
        rounds.append({"round": number, "served": serving, "harvest": harvest, **candidate(report),
                       "customers": customers, "words": words, "learned_words": len(world.schema.learned),
                       "served_with_words": words_alone})
        if report["activated"]:
            serving = report["version"]
    seconds = time.perf_counter() - started
    if workdir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "config": asdict(config), "parent": world.root, "served_after": serving,
        "customers": parent, "rounds": rounds, "ablation": ablated,
        "timings_s": {k: round(v, 1) for k, v in world.timings.items()} | {"rounds in all": round(seconds, 1)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def word_check(words: list[dict[str, Any]], style: str) -> dict[str, int]:
    """Learned words against what the customers meant (their style's vocabulary, which the learner never sees):
    the right value or edit, another of the same attribute, or a wrong attribute."""
    meant = VOCABULARIES[style].meanings() if style in VOCABULARIES else {}
    out = {"right": 0, "same attribute": 0, "wrong": 0}
    for word in words:
        attribute, value = meant.get(word["phrase"], ("", ""))
        out["right" if (attribute, value) == (word["attribute"], word["value"])
            else "same attribute" if attribute == word["attribute"] else "wrong"] += 1
    return out


def words_markdown(results: dict[str, Any]) -> list[str]:
    style, rounds = results["config"]["style"], results["rounds"]
    if not results["config"].get("learn_words") or not rounds:
        return []
    parent = final(results["customers"][style])
    lines = ["## Words learned from the picks", "",
             f"After each harvest the whole log teaches words (`assistant.word_learning`, as `circhat words learn`): "
             f"a phrase the rules could not place becomes a word for the change its picks show. Checked against "
             f"the {style} customers' vocabulary, which the learner never sees.", ""]
    alone = any(entry.get("served_with_words") for entry in rounds)
    lines += ["| round | new words | words in all | right / same attribute, other value / wrong | "
              + (f"{style} success@10: served version + words | " if alone else "")
              + f"{style} success@10: candidate + words |", "|---:|---:|---:|---|" + "---:|" * (1 + alone)]
    for entry in rounds:
        learned = [w for e in rounds[:entry["round"]] for w in e["words"]]
        check = word_check(list({w["phrase"]: w for w in learned}.values()), style)
        served = entry.get("served_with_words") or {}
        before = f"{final(served[style]):.1f} ({final(served[style]) - parent:+.1f}) | " if style in served else ""
        after = final(entry["customers"][style])
        lines.append(f"| {entry['round']} | {len(entry['words'])} | {entry['learned_words']} | {check['right']} / "
                     f"{check['same attribute']} / {check['wrong']} | {before if alone else ''}{after:.1f} "
                     f"({after - parent:+.1f}) |")
    last = {w["phrase"]: w for e in rounds for w in e["words"]}
    lines += ["", "Words after the last round: " + "; ".join(
        f"“{w['phrase']}” → {w['attribute']} {w['value']} ({w['agreeing']}/{w['picks']})"
        for w in sorted(last.values(), key=lambda w: (w["attribute"], w["value"], w["phrase"]))) + ".", ""]
    return lines


def final(result: dict[str, Any], metric: str = "success@10") -> float:
    return result[metric][-1]


def acceptance(results: dict[str, Any], gain: float = 15.0, tolerance: float = 1.0) -> dict[str, Any]:
    """The issue's bar, against the parent (the shipped composer): the first round whose candidate lifts the
    held-out unseen-vocabulary customers' success@10 by ``gain`` points while the control and the benchmark R@1
    stay within ``tolerance`` points of the parent's."""
    style = results["config"]["style"]
    parent = results["customers"]
    base_r1 = results["rounds"][0]["guard"]["parent"] if results["rounds"] else None
    rows = []
    for entry in results["rounds"]:
        customers = entry["customers"]
        row = {"round": entry["round"], "version": entry["version"], "activated": entry["activated"],
               "gain": round(final(customers[style]) - final(parent[style]), 2),
               "control change": round(final(customers[CONTROL]) - final(parent[CONTROL]), 2)
               if CONTROL in customers else None,
               "benchmark R@1 change": round(entry["guard"]["new"] - base_r1, 2)
               if base_r1 is not None and entry["guard"]["new"] is not None else None}
        row["met"] = bool(row["gain"] >= gain and all(
            change is not None and change >= -tolerance for change in (row["control change"],
                                                                      row["benchmark R@1 change"])))
        rows.append(row)
    met = next((row for row in rows if row["met"]), None)
    return {"gain": gain, "tolerance": tolerance, "rounds": rows, "met": met is not None,
            "met_at_round": met["round"] if met else None}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style, turns = results["config"]["style"], results["config"]["turns"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    series = [("parent", results["customers"])] + [(f"round {e['round']}" + ("" if e["activated"] else " (refused)"),
                                                    e["customers"]) for e in results["rounds"]]
    for n, (label, customers) in enumerate(series):
        colour = plt.cm.viridis(n / max(1, len(series) - 1))
        for who, line in ((style, "-o"), (CONTROL, ":s")):
            if who in customers:
                axes[0].plot(range(1, turns + 1), customers[who]["success@10"], line, color=colour, markersize=4,
                             label=f"{label}, {who}")
    axes[0].set_xticks(range(1, turns + 1))
    axes[0].set_xlabel("turn (one stated attribute per turn)")
    axes[0].set_ylabel("held-out sessions (%)")
    axes[0].set_title("success@10 by turn")
    axes[0].legend(fontsize=6, ncol=2)
    rounds = [0, *(e["round"] for e in results["rounds"])]
    customers = [results["customers"], *(e["customers"] for e in results["rounds"])]
    axes[1].plot(rounds, [final(c[style]) for c in customers], "-o", label=f"{style} success@10 after turn {turns}")
    if CONTROL in results["customers"]:
        axes[1].plot(rounds, [final(c[CONTROL]) for c in customers], ":s",
                     label=f"{CONTROL} (control) success@10 after turn {turns}")
    if results["rounds"]:
        r1 = [results["rounds"][0]["guard"]["parent"], *(e["guard"]["new"] for e in results["rounds"])]
        axes[1].plot(rounds, r1, "--^", label=f"{GUARD_FIGURE} (fixed synthetic queries)")
    axes[1].set_xticks(rounds)
    axes[1].set_xticklabels(["parent", *(str(r) for r in rounds[1:])])
    axes[1].set_xlabel("round of harvest + fine-tune (candidate of that round)")
    axes[1].set_ylabel("%")
    axes[1].set_title("per round")
    axes[1].legend(fontsize=7, loc="center right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _by_turn_table(results: dict[str, Any], who: str) -> list[str]:
    rounds = results["rounds"]
    lines = ["| turn | parent | " + " | ".join(f"round {e['round']}" for e in rounds) + " |",
             "|---:|---:|" + "---:|" * len(rounds)]
    for t in range(results["config"]["turns"]):
        lines.append(f"| {t + 1} | {results['customers'][who]['success@10'][t]:.1f} | "
                     + " | ".join(f"{e['customers'][who]['success@10'][t]:.1f}" for e in rounds) + " |")
    return lines


def _recipe(config: dict[str, Any]) -> str:
    return (f"{config['steps']} steps at lr {config['lr']:g}, batch {config['batch_size']}, {config['hard_negatives']} "
            f"negatives per triplet (for a pick: the items shown beside it that the customer passed over, then "
            f"random others), {config['synthetic_per_pick']:g} synthetic triplets per harvested one (at least "
            f"{config['min_synthetic']}), {config['text_triplets']} text-only triplets, "
            f"{config['heldout_share']:.0%} of sessions held out")


def markdown(results: dict[str, Any], command: str) -> str:
    config, rounds = results["config"], results["rounds"]
    style, turns = config["style"], config["turns"]
    verdicts = acceptance(results)
    tolerance = config["finetune"]["forgetting_tolerance"]
    lines = [
        "# Learning from use: simulated customers, rounds of harvest + fine-tune",
        "",
        f"Measured {results['measured']} on {results['machine']['cpus']} CPUs (load average "
        f"{results['machine']['load_average'][0]} at the end). Command: `{command}` (seed {config['seed']}: round r's "
        f"harvest customers use seed {config['seed']} + r - 1, the measured customers seed "
        f"{config['seed'] + EVAL_SEED_OFFSET}, so no measured session was harvested).",
        "",
        f"Demo world of {config['n_images']} images with its backbone, the shipped two-stage composer as parent "
        f"(`{results['parent']}`) and its LanceDB catalog. Customers hold a hidden target, upload a photo of an item "
        f"that differs from it in {CustomerConfig().differing} attributes, state one differing attribute per turn in "
        f"their vocabulary through `Assistant.say`, and `Assistant.pick` the best shown item among those that show "
        f"something they asked for and are closer to the target than their reference "
        f"(`training/simulated_customers.py`). The **{style}** vocabulary is covered neither by the synthetic "
        "training templates nor by the rule parser, so it reaches the composer as free text until words are learned "
        "from the picks; the "
        f"**{CONTROL}** customers use the training phrasing and are the control for forgetting.",
        "",
        f"Each round: {config['harvest_sessions']} new {style} customers shop with the version served and their "
        "picks join one growing log; "
        + ("the whole log teaches words (below), which the assistants of later measurements and rounds slot; "
           if config.get("learn_words") else "")
        + "`finetune_from_log` trains a candidate from the served version on the whole "
        f"log ({_recipe(config['finetune'])}); the candidate is measured on the same {config['eval_sessions']} "
        f"held-out {style} and {config['control_sessions']} {CONTROL} customers, and served in the next round only "
        f"if it was activated: not worse on held-out picks (choice@1) and through the forgetting guard "
        f"({GUARD_FIGURE} over the fixed synthetic 1- and 2-attribute held-out-combination queries, "
        f"{config['finetune']['benchmark_queries']} each, may fall at most {tolerance:g} point below its parent's).",
        "",
        f"## Per round (success@10 after turn {turns}, %; change from the parent)",
        "",
        f"| round | served | candidate | {style} success@10 | {CONTROL} success@10 | {GUARD_FIGURE} | "
        "held-out picks choice@1 | verdict | picks in log (train/held-out) |",
        "|---:|---|---|---:|---:|---:|---:|---|---:|",
        f"| parent | | `{results['parent']}` | {final(results['customers'][style]):.1f} | "
        f"{final(results['customers'][CONTROL]):.1f} | "
        f"{rounds[0]['guard']['parent']:.1f} | | | |" if rounds else "",
    ]
    for entry, row in zip(rounds, verdicts["rounds"], strict=True):
        picks, guard, counts = entry["heldout_picks"], entry["guard"], entry["counts"]
        lines.append(
            f"| {entry['round']} | `{entry['served']}` | `{entry['version']}` | "
            f"{final(entry['customers'][style]):.1f} ({row['gain']:+.1f}) | "
            f"{final(entry['customers'][CONTROL]):.1f} ({row['control change']:+.1f}) | "
            f"{guard['new']:.1f} ({row['benchmark R@1 change']:+.1f}; {guard['change']:+.1f} vs its parent) | "
            f"{picks['parent']['choice@1']:.1f} → {picks['new']['choice@1']:.1f} | **{entry['verdict']}**, "
            f"{'activated' if entry['activated'] else 'not activated'} | "
            f"{counts['train_picks']}/{counts['heldout_picks']} |")
    met = verdicts["met_at_round"]
    best = max(verdicts["rounds"], key=lambda row: row["gain"], default=None)
    shortfall = (f"**not met**: the best {style} gain is {best['gain']:+.1f} points (round {best['round']}), with the "
                 f"{CONTROL} control at {best['control change']:+.1f} and {GUARD_FIGURE} at "
                 f"{best['benchmark R@1 change']:+.1f}." if best else "**not met**: no round ran.")
    lines += ["", f"**Acceptance** (≥ +{verdicts['gain']:g} points {style} success@10 over the parent within "
                  f"{config['rounds']} rounds, {CONTROL} control and {GUARD_FIGURE} each no more than "
                  f"{verdicts['tolerance']:g} point below the parent's): "
                  + (f"met at round {met}." if met else shortfall),
              "", f"## Held-out {style} customers, success@10 after each turn (%)", "",
              *_by_turn_table(results, style),
              "", f"## Control: {CONTROL} customers, success@10 after each turn (%)", "",
              *_by_turn_table(results, CONTROL),
              "", *words_markdown(results),
              "", "## The fine-tunes' own before/after figures (recall %, parent → candidate)", "",
              "| round | query set | queries | R@1 | R@10 |", "|---:|---|---:|---:|---:|"]
    for entry in rounds:
        for name, pair in [("held-out harvested picks", entry["heldout_picks"]), *entry["benchmark"].items()]:
            p, n = pair["parent"], pair["new"]
            lines.append(f"| {entry['round']} | {name} | {n['queries']} | {p['R@1']:.1f} → {n['R@1']:.1f} | "
                         f"{p['R@10']:.1f} → {n['R@10']:.1f} |")
    lines += ["", "Harvest per round: " + "; ".join(
        f"round {e['round']}: {e['harvest']['picks']} picks by {e['harvest']['sessions']} customers served by "
        f"`{e['served']}` ({e['harvest']['found']:.1f}% found their target), log kept {e['counts']['kept']} of "
        f"{e['counts']['records']} records" for e in rounds) + ".",
              "", "![success by turn and per round](learning.png)", "",
              "Held-out harvested picks are what customers chose among the served version's results (the best item "
              "shown, not the hidden target), so the served version's recall over the catalog on them is inflated "
              "by construction; choice among the shown items and the customers' success are the fair comparisons.",
              ""]
    if results.get("ablation"):
        lines += ablation_markdown(results)
    lines += ["Timings (s): " + ", ".join(f"{k} {v}" for k, v in results["timings_s"].items()) + "."]
    return "\n".join(line for line in lines if line is not None)


def ablation_markdown(results: dict[str, Any]) -> list[str]:
    style = results["config"]["style"]
    parent = results["customers"]
    lines = [f"## What was tried: recipe changes on the round-1 log (one candidate each from the parent, "
             f"{results['config']['harvest_sessions']} harvest sessions)", "",
             f"| change | {style} success@10 | {CONTROL} success@10 | {GUARD_FIGURE} | held-out picks choice@1 "
             "| verdict | fine-tune s |", "|---|---:|---:|---:|---:|---|---:|"]
    for entry in [{"variant": "none (round 1's candidate)", **results["rounds"][0]}, *results["ablation"]]:
        c, g = entry["customers"], entry["guard"]
        lines.append(f"| {entry['variant']} | {final(c[style]):.1f} ({final(c[style]) - final(parent[style]):+.1f})"
                     f" | {final(c[CONTROL]):.1f} ({final(c[CONTROL]) - final(parent[CONTROL]):+.1f}) | "
                     f"{g['new']:.1f} ({g['change']:+.1f}) | {entry['heldout_picks']['parent']['choice@1']:.1f} → "
                     f"{entry['heldout_picks']['new']['choice@1']:.1f} | {entry['verdict']} | {entry['seconds']} |")
    return [*lines, ""]


def main(
    seed: Annotated[int, typer.Option(help="Seed of the demo world and the customers.")] = 0,
    rounds: Annotated[int, typer.Option(help="Rounds of harvest + fine-tune.")] = 3,
    harvest: Annotated[int, typer.Option(help="Customers whose picks are harvested per round.")] =
        LearningBenchConfig().harvest_sessions,
    sessions: Annotated[int, typer.Option(help="Held-out customers measured per version.")] = 200,
    control: Annotated[int, typer.Option(help="English-speaking control customers measured (0: none).")] = 200,
    steps: Annotated[int, typer.Option(help="Fine-tuning steps.")] = FinetuneConfig().steps,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = FinetuneConfig().lr,
    synthetic_per_pick: Annotated[float, typer.Option(help="Synthetic triplets per harvested one.")] =
        FinetuneConfig().synthetic_per_pick,
    negatives: Annotated[int, typer.Option(help="Negatives per triplet (a pick's passed-over items first).")] =
        FinetuneConfig().hard_negatives,
    text_triplets: Annotated[int, typer.Option(help="Text-only composition triplets mixed in.")] =
        FinetuneConfig().text_triplets,
    ablate: Annotated[bool, typer.Option(help="Also try recipe changes on the round-1 log.")] = False,
    words: Annotated[bool, typer.Option(help="Learn the customers' words from the log each round.")] = True,
    words_alone: Annotated[bool, typer.Option(help="Also measure the served version with the new words before each "
                                                   "fine-tune (the words' share of the gain; ~100 s).")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Where worlds are cached.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for learning.json, learning.md and learning.png.")] = OUT_DIR,
) -> None:
    """Measure rounds of learning from use and write docs/benchmarks/learning.{json,md,png}."""
    recipe = replace(FinetuneConfig(), steps=steps, lr=lr, synthetic_per_pick=synthetic_per_pick,
                     hard_negatives=negatives, text_triplets=text_triplets, seed=seed)
    config = LearningBenchConfig(seed=seed, rounds=rounds, harvest_sessions=harvest, eval_sessions=sessions,
                                 control_sessions=control, learn_words=words, words_alone=words_alone,
                                 finetune=recipe)
    results = run_learning_bench(config, data_dir, ablation=ABLATION if ablate else None)
    defaults, given = LearningBenchConfig(), FinetuneConfig()
    flags = [f"--{name} {value}" for name, value, default in (
        ("seed", seed, 0), ("rounds", rounds, defaults.rounds), ("harvest", harvest, defaults.harvest_sessions),
        ("sessions", sessions, defaults.eval_sessions), ("control", control, defaults.control_sessions),
        ("steps", steps, given.steps), ("lr", lr, given.lr), ("synthetic-per-pick", synthetic_per_pick,
                                                               given.synthetic_per_pick),
        ("negatives", negatives, given.hard_negatives), ("text-triplets", text_triplets, given.text_triplets))
        if value != default] + (["--ablate"] if ablate else []) + ([] if words else ["--no-words"]) \
        + (["--words-alone"] if words_alone else [])
    command = " ".join(["python -m benchmarks.learning", *flags])
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "learning.png")
    (out / "learning.md").write_text(markdown(results, command) + "\n")
    typer.echo(markdown(results, command))


if __name__ == "__main__":
    typer.run(main)
