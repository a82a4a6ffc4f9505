"""Renders a benchmark's JSON into BENCHMARKS.md tables and matplotlib plots.

BENCHMARKS.md is the composed-retrieval report (from ``docs/benchmarks/cir.json``)
followed by the reports other benchmark commands write beside it (store scale,
learning from use, server load), so every figure lives in one file while each
command reruns only its own part:

    python -m benchmarks.report      # re-render BENCHMARKS.md from the JSON and .md files already there
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import typer

KS = (1, 5, 10, 50)
INCLUDED = (("build.md", "python -m benchmarks.build"),
            ("store.md", "python -m benchmarks.store --sizes 10000,100000,1000000"),
            ("learning.md", "python -m benchmarks.learning"),
            ("load.md", "python -m benchmarks.load"),
            ("details.md", "python -m benchmarks.details"))
STAGE2_BUDGET_S = 120.0
BENCH_BUDGET_MIN = 30


def _recall_table(rows: dict[str, dict], set_name: str, image: bool = False) -> list[str]:
    suffix = " (image)" if image else ""
    lines = [f"| method | {' | '.join(f'R@{k}' for k in KS)} |", "|---|" + "---|" * len(KS)]
    for method, sets in rows.items():
        values = " | ".join(f"{sets[set_name][f'R@{k}{suffix}']:.1f}" for k in KS)
        lines.append(f"| {method} | {values} |")
    return lines


CURVE_STYLES = {"clean": "-o", "noisy": "--s", "clean + text-only": "-^", "noisy + text-only": "--v"}
TEXT_ONLY_KINDS = ("clean + text-only", "noisy + text-only")
BEFORE_TEXT_ONLY_R10 = 97.4  # 2-attr held-out R@10 of 5000 image triplets before text-only data (issue 15)


def _plot_data_efficiency(curve: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("R@1", "R@10"), strict=True):
        for kind, style in CURVE_STYLES.items():
            if kind not in curve:
                continue
            points = sorted((int(n), v) for n, v in curve[kind].items())
            for set_name in next(iter(curve[kind].values())):
                xs = [max(n, 50) for n, _ in points]
                ax.plot(xs, [v[set_name][metric] for _, v in points], style, label=f"{set_name}, {kind}")
        ax.set_xscale("log")
        ax.set_xlabel("stage-2 triplets (0 plotted at 50)")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_multi_turn(multi: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("success@1", "success@10"), strict=True):
        for name, result in multi.items():
            ax.plot(range(1, len(result[metric]) + 1), result[metric], "-o", label=name)
        ax.set_xlabel("turn")
        ax.set_title(metric)
        ax.set_xticks(range(1, len(next(iter(multi.values()))[metric]) + 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("sessions with the target shown (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, out_dir: Path, markdown: Path, command: str) -> None:
    """BENCHMARKS.md with every table, plus the plots it links."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_data_efficiency(results["data_efficiency"], out_dir / "data_efficiency.png")
    _plot_multi_turn(results["multi_turn"], out_dir / "multi_turn.png")
    config = results["config"]
    bb = results["backbone"]
    lines = [
        "# Benchmarks",
        "",
        "Composed image retrieval on the offline demo world (`training/world.py`). These numbers compare "
        "methods on the same synthetic catalog; they are **not** estimates of accuracy on real product photos.",
        "",
        f"Reproduce: `{command}` (seed {config['seed']}; JSON: `docs/benchmarks/cir.json`). "
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} threads, "
        f"{results['machine']['device']}; load average {results['machine'].get('load_avg_start', '?')} at start, "
        f"{results['machine'].get('load_avg_end', '?')} at the end (wall times grow with load; recalls do not); "
        f"the whole run took {results.get('wall_s', float('nan')) / 60:.1f} min.",
        "",
        f"Catalog: {config['n_images']} images; backbone `circhat-tiny-rn` trained on {bb['pairs']} pairs "
        f"(held-out text→image R@1 {bb['heldout_text_to_image']['R@1']:.1f}, "
        f"R@10 {bb['heldout_text_to_image']['R@10']:.1f}). Correct = any catalog image with the target's "
        "attribute combination, the reference excluded; *(image)* tables count only the one designated target "
        f"image. Two-stage = stage 1 (patch injection + soft alignment) + stage 2 on "
        f"{config['main_triplets']} clean synthetic image triplets"
        + (f" and {config['text_triplets']} text-only ones" if config.get("text_triplets") else "")
        + f". {config['eval_queries']} queries per set.",
        "",
        "## Acceptance checks (issues 3 and 15)",
        "",
        "| check | target | measured | met |",
        "|---|---|---|---|",
        *[f"| {name} | {target} | {measured} | {'—' if met is None else 'yes' if met else '**no**'} |"
          for name, target, measured, met in acceptance(results)],
        "",
        "## Methods",
    ]
    methods = results["methods"]
    for set_name in next(iter(methods.values())):
        lines += ["", f"### {set_name}", "", *_recall_table(methods, set_name)]
    lines += ["", "### Designated target image (FashionIQ/CIRR style), 2-attr held-out", "",
              *_recall_table(methods, "2-attr held-out", image=True)]
    lines += ["", "## Ablations", "", *ablation_reading(results["ablations"]), ""]
    for set_name in ("1-attr held-out", "2-attr held-out"):
        lines += [f"### {set_name}", "", *_recall_table(results["ablations"], set_name), ""]
    curve = results["data_efficiency"]
    kinds = [k for k in CURVE_STYLES if k in curve]
    lines += ["## Data efficiency (stage 2 image triplets, clean and 30% noisy, with and without text-only data)",
              "",
              f"*+ text-only*: the same image triplets plus {config.get('text_triplets', 0)} text-only triplets made "
              "from the world's attributes alone (reference = a caption, no image), weighing as "
              f"{config['stage2'].get('text_weight', 500):.0f} image triplets when a batch is drawn (half of "
              "it at 500 image triplets, a tenth at 5000). "
              "2-attr held-out recall.", "",
              "![data efficiency](docs/benchmarks/data_efficiency.png)", "",
              "| image triplets | " + " | ".join(f"{k} {m}" for k in kinds for m in ("R@1", "R@10")) + " |",
              "|---|" + "---|" * (2 * len(kinds))]
    for n in sorted(curve["clean"], key=int):
        cells = [f"{curve[k][n]['2-attr held-out'][m]:.1f}" if n in curve[k] else "—"
                 for k in kinds for m in ("R@1", "R@10")]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Simulated multi-turn sessions", "",
              f"{config['sessions']} sessions; the start image differs from the hidden target in 3 attributes; "
              "the simulated user states one differing attribute per turn and picks the shown image (top 10) "
              "that agrees with the target on most attributes. *from first*: the start image + every "
              "instruction so far; *from latest*: the latest pick + the newest instruction.", "",
              "![multi-turn](docs/benchmarks/multi_turn.png)", "",
              "| method | metric | turn 1 | turn 2 | turn 3 | turn 4 |", "|---|---|---|---|---|---|"]
    for name, result in results["multi_turn"].items():
        for metric, values in result.items():
            lines.append(f"| {name} | {metric} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    lines += ["", "## Wall time of each training phase (this run)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["timings_s"].items()]
    lines += included_sections(out_dir)
    markdown.write_text("\n".join(lines) + "\n")


def acceptance(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """Issue 3's acceptance targets, each as (check, target, measured, met), from one benchmark run."""
    held = {name: sets["2-attr held-out"] for name, sets in results["methods"].items()}
    ours = held["two-stage (ours)"]
    sum_r1, p2w_r1 = held["image + text (sum)"]["R@1"], held["Pic2Word-style (single stage)"]["R@1"]
    beats = all(ours[m] > held[name][m] for name in held if name != "two-stage (ours)" for m in ("R@1", "R@10"))
    curve = results["data_efficiency"]
    with_text = TEXT_ONLY_KINDS[0] in curve
    clean_kind, noisy_kind = TEXT_ONLY_KINDS if with_text else ("clean", "noisy")
    clean = {int(n): v["2-attr held-out"]["R@10"] for n, v in curve[clean_kind].items()}
    noisy = {int(n): v["2-attr held-out"]["R@10"] for n, v in curve[noisy_kind].items()}
    top = max(clean)
    ratio_500 = clean[500] / clean[top] if 500 in clean and clean[top] else 0.0
    noisy_500 = noisy[500] / clean[500] if 500 in noisy and clean.get(500) else 0.0
    main = int(results["config"]["main_triplets"])
    noisy_main = noisy[main] / clean[main]
    noisy_worst = min(noisy[n] / clean[n] for n in noisy if n and clean.get(n))
    recipe = " + text-only" if with_text else ""
    turn3 = {mode: results["multi_turn"][f"two-stage (ours), from {mode}"]["success@10"][2]
             for mode in ("latest", "first")}
    stage2_s = next((v for k, v in results["timings_s"].items() if k.startswith("stage 2:")
                     and "(1000 triplets" in k and "noisy" not in k and ("text-only" in k) == with_text),
                    float("nan"))
    wall_min = results.get("wall_s", float("nan")) / 60
    return [
        ("two-stage beats every baseline, 2-attr held-out R@1 and R@10", "all", "yes" if beats else "no", beats),
        ("R@1 gain over sum, 2-attr held-out", "≥ 20 points", f"{ours['R@1'] - sum_r1:+.1f}",
         ours["R@1"] - sum_r1 >= 20),
        ("R@1 over Pic2Word-style, 2-attr held-out", "≥ 2×",
         f"{ours['R@1'] / p2w_r1:.2f}×" if p2w_r1 else "∞", not p2w_r1 or ours["R@1"] >= 2 * p2w_r1),
        (f"500 image triplets{recipe} vs {top}{recipe}, 2-attr held-out R@10", "≥ 90%", f"{ratio_500:.0%}",
         ratio_500 >= 0.9),
        (f"{top} image triplets{recipe}, 2-attr held-out R@10 (before text-only data: {BEFORE_TEXT_ONLY_R10})",
         f"≥ {BEFORE_TEXT_ONLY_R10}", f"{clean[top]:.1f}", clean[top] >= BEFORE_TEXT_ONLY_R10),
        (f"noisy vs clean R@10 at 500 image triplets{recipe}", "≥ 90%", f"{noisy_500:.0%}", noisy_500 >= 0.9),
        (f"noisy vs clean R@10 at {main} triplets{recipe} (the shipped model's size)", "≥ 90%",
         f"{noisy_main:.0%}", noisy_main >= 0.9),
        ("noisy vs clean R@10, worst curve size (not a target; for reading the curve)", "—",
         f"{noisy_worst:.0%}", None),
        ("multi-turn success@10 by turn 3, from the latest pick (as the assistant composes)", "≥ 95%",
         f"{turn3['latest']:.1f}%", turn3["latest"] >= 95),
        ("multi-turn success@10 by turn 3, from the first reference (no picks)", "≥ 95%",
         f"{turn3['first']:.1f}%", turn3["first"] >= 95),
        (f"stage 2 on 1000 triplets{recipe}, CPU", f"≤ {STAGE2_BUDGET_S:.0f} s", f"{stage2_s:.0f} s",
         stage2_s <= STAGE2_BUDGET_S),
        ("the whole benchmark, 2 CPUs", f"≤ {BENCH_BUDGET_MIN} min", f"{wall_min:.1f} min",
         wall_min <= BENCH_BUDGET_MIN),
    ]


def ablation_reading(ablations: dict[str, dict]) -> list[str]:
    """One line per ablation: what removing a component (or, for "... with ...", trying an alternative) does to
    2-attr held-out R@1/R@10, and the verdict."""
    full = ablations["two-stage (ours)"]["2-attr held-out"]
    lines = []
    for name, sets in ablations.items():
        if name == "two-stage (ours)":
            continue
        row = sets["2-attr held-out"]
        d1, d10 = row["R@1"] - full["R@1"], row["R@10"] - full["R@10"]
        if " with " in name:
            verdict = "**the alternative helps**" if d1 > 0 and d10 >= 0 else \
                "the alternative does not help" if d1 <= 0 and d10 <= 0 else "mixed"
        else:
            verdict = "the component helps" if d1 < 0 and d10 <= 0 else \
                "**the component does not help here**" if d1 >= 0 and d10 >= 0 else "mixed"
        lines.append(f"- {name}: 2-attr held-out R@1 {d1:+.1f}, R@10 {d10:+.1f} against the full model; {verdict}.")
    return lines


def included_sections(out_dir: Path) -> list[str]:
    """The other benchmark reports, headings demoted one level, or a note of the command that makes each."""
    lines: list[str] = []
    for name, command in INCLUDED:
        path = out_dir / name
        if path.exists():
            text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", path.read_text(), flags=re.MULTILINE)
            text = re.sub(r"\]\((?!docs/|https?:|/)([^)]+\.(?:png|json|svg))\)", rf"]({out_dir.as_posix()}/\1)", text)
            lines += ["", text.rstrip()]
        else:
            lines += ["", f"## {name.removesuffix('.md')} benchmark", "", f"Not measured yet: `{command}`."]
    return lines


def main(
    out_dir: Annotated[Path, typer.Option(help="Folder of cir.json and the other reports.")] = Path("docs/benchmarks"),
    markdown: Annotated[Path, typer.Option(help="Markdown report to write.")] = Path("BENCHMARKS.md"),
) -> None:
    """Re-render BENCHMARKS.md from the saved JSON (no training)."""
    results = json.loads((out_dir / "cir.json").read_text())
    write_report(results, out_dir, markdown, results.get("command", "./run.sh bench"))


if __name__ == "__main__":
    typer.run(main)
