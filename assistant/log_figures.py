"""The shop's figures from the pick log and the turn log: is the assistant helping, and is it getting better?

Per model version and per day: sessions, search turns, picks, pick rate, turns
until a pick, rank of the picked item, and triplets harvested. Used by
``circhat triplets stats`` and the app's Stats tab, so both show the same numbers.

Definitions:

* *session*: a distinct salted session hash seen in either log in that slice.
* *pick rate*: among sessions with logged search turns, the share that picked
  at least once (sessions known only from the pick log, e.g. from before turn
  logging began or after the turn log was pruned, are left out of it).
* *turns until a pick*: the pick record's ``turns`` (search turns since the
  session started, its last pick or a start over).
* *triplet*: a pick whose reference image can be trained on (a catalog item, or
  an upload with a consented copy) and that has at least one instruction.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from assistant.log_retention import parse_time
from assistant.triplet_log import scan_log
from assistant.turn_log import turn_log_path

ALL = "all"
LABEL_WIDTH = 30
TABLE_COLUMNS = ("sessions", "search turns", "picks", "triplets", "pick rate", "turns until pick (mean)",
                 "picked rank (mean)", "picked at rank 1")


@dataclass
class Group:
    """The figures for one slice of the logs: everything, one model version, one day, or both."""

    key: str
    sessions: int = 0
    sessions_with_turns: int = 0
    sessions_with_pick: int = 0
    turns: int = 0
    picks: int = 0
    triplets: int = 0
    pick_rate: float | None = None
    turns_until_pick_mean: float | None = None
    turns_until_pick_median: float | None = None
    picked_rank_mean: float | None = None
    picked_rank_median: float | None = None
    picked_at_rank_1: float | None = None
    picked_in_top_5: float | None = None


@dataclass
class Figures:
    """All slices, plus what the plots need (ranks per model) and how much of the logs was unreadable."""

    pick_log: str
    turn_log: str
    overall: Group
    by_model: list[Group] = field(default_factory=list)
    by_day: list[Group] = field(default_factory=list)
    by_day_model: list[tuple[str, Group]] = field(default_factory=list)
    ranks_by_model: dict[str, list[int]] = field(default_factory=dict)
    bad_pick_lines: int = 0
    bad_turn_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pick_log": self.pick_log, "turn_log": self.turn_log, "overall": asdict(self.overall),
            "by_model": [asdict(g) for g in self.by_model], "by_day": [asdict(g) for g in self.by_day],
            "by_day_model": [{"day": day, **asdict(g)} for day, g in self.by_day_model],
            "bad_pick_lines": self.bad_pick_lines, "bad_turn_lines": self.bad_turn_lines,
        }

    @property
    def models(self) -> list[str]:
        return [g.key for g in self.by_model]


def is_triplet(pick: dict[str, Any]) -> bool:
    """A pick fine-tuning can use: a reference image it can load and at least one instruction."""
    ref = pick.get("reference") or {}
    usable = ref.get("kind") == "catalog" or (ref.get("kind") == "upload" and bool(ref.get("stored")))
    return usable and bool(pick.get("instructions"))


def _rank(pick: dict[str, Any]) -> int | None:
    rank = (pick.get("picked") or {}).get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def _share(values: list[int], test) -> float | None:
    return round(sum(map(test, values)) / len(values), 4) if values else None


def _mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def group_figures(key: str, picks: list[dict[str, Any]], turns: list[dict[str, Any]]) -> Group:
    """The figures of one slice from its pick records and turn records."""
    turn_sessions = {t.get("session") for t in turns}
    pick_sessions = {p.get("session") for p in picks}
    ranks = [r for r in map(_rank, picks) if r is not None]
    until = [p["turns"] for p in picks if isinstance(p.get("turns"), int) and not isinstance(p["turns"], bool)]
    picked_after_turns = turn_sessions & pick_sessions
    return Group(
        key=key, sessions=len(turn_sessions | pick_sessions), sessions_with_turns=len(turn_sessions),
        sessions_with_pick=len(picked_after_turns), turns=len(turns), picks=len(picks),
        triplets=sum(map(is_triplet, picks)),
        pick_rate=round(len(picked_after_turns) / len(turn_sessions), 4) if turn_sessions else None,
        turns_until_pick_mean=_mean(until), turns_until_pick_median=_median(until),
        picked_rank_mean=_mean(ranks), picked_rank_median=_median(ranks),
        picked_at_rank_1=_share(ranks, lambda r: r == 1), picked_in_top_5=_share(ranks, lambda r: r <= 5),
    )


def _day(record: dict[str, Any]) -> str | None:
    when = parse_time(record.get("time"))
    return when.date().isoformat() if when is not None else None


def _by(records: Iterable[dict[str, Any]], key) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        k = key(r)
        if k is not None:
            out[k].append(r)
    return out


def _model(record: dict[str, Any]) -> str:
    return str(record.get("model") or "unknown")


def compute_figures(pick_log: Path, turn_log: Path | None = None) -> Figures:
    """Read both logs (no lock; unfinished lines skipped) and compute every slice."""
    pick_log = Path(pick_log)
    turn_log = Path(turn_log) if turn_log is not None else turn_log_path(pick_log)
    pick_scan, turn_scan = scan_log(pick_log), scan_log(turn_log)
    picks, turns = pick_scan.records, turn_scan.records
    first_seen: dict[str, str] = {}
    for r in sorted(picks + turns, key=lambda r: str(r.get("time") or "")):
        first_seen.setdefault(_model(r), str(r.get("time") or ""))
    models = sorted(first_seen, key=lambda m: (first_seen[m], m))
    picks_by_model, turns_by_model = _by(picks, _model), _by(turns, _model)
    picks_by_day, turns_by_day = _by(picks, _day), _by(turns, _day)
    days = sorted(set(picks_by_day) | set(turns_by_day))
    pairs_p = _by(picks, lambda r: (d, _model(r)) if (d := _day(r)) else None)
    pairs_t = _by(turns, lambda r: (d, _model(r)) if (d := _day(r)) else None)
    return Figures(
        pick_log=str(pick_log), turn_log=str(turn_log),
        overall=group_figures(ALL, picks, turns),
        by_model=[group_figures(m, picks_by_model[m], turns_by_model[m]) for m in models],
        by_day=[group_figures(d, picks_by_day[d], turns_by_day[d]) for d in days],
        by_day_model=[(d, group_figures(m, pairs_p[(d, m)], pairs_t[(d, m)]))
                      for d in days for m in models if (d, m) in pairs_p or (d, m) in pairs_t],
        ranks_by_model={m: [r for r in map(_rank, picks_by_model[m]) if r is not None] for m in models},
        bad_pick_lines=pick_scan.bad_lines, bad_turn_lines=turn_scan.bad_lines,
    )


def short_model(name: str, width: int = LABEL_WIDTH) -> str:
    """A model version short enough for a legend: the part after the backbone and before its date, middle-elided."""
    tail = name.rsplit("+", 1)[-1].split("@", 1)[0] if "+" in name else name
    if len(tail) <= width:
        return tail
    half = (width - 1) // 2
    return f"{tail[:half]}…{tail[-(width - 1 - half):]}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table_row(group: Group) -> list[Any]:
    """One slice as a table row, in ``TABLE_COLUMNS`` order."""
    return [group.sessions, group.turns, group.picks, group.triplets, _percent(group.pick_rate),
            _number(group.turns_until_pick_mean), _number(group.picked_rank_mean), _percent(group.picked_at_rank_1)]


def headline_lines(figures: Figures) -> list[str]:
    """Sessions, search turns, pick rate and triplets harvested, in plain sentences."""
    o = figures.overall
    return [f"sessions: {o.sessions} ({o.sessions_with_turns} with logged search turns); search turns: {o.turns}",
            f"pick rate: {_percent(o.pick_rate)}"
            + (" (no turn log yet)" if o.pick_rate is None else
               f" ({o.sessions_with_pick} of {o.sessions_with_turns} sessions picked something)"),
            f"triplets harvested: {o.triplets} of {o.picks} picks"]


def summary_lines(figures: Figures) -> list[str]:
    """Every headline number in plain sentences."""
    o = figures.overall
    lines = headline_lines(figures)
    if o.turns_until_pick_mean is not None:
        lines.append(f"turns until a pick: mean {o.turns_until_pick_mean:.2f}, median "
                     f"{o.turns_until_pick_median:.0f}")
    if o.picked_rank_mean is not None:
        lines.append(f"rank of the picked item: mean {o.picked_rank_mean:.2f}, median {o.picked_rank_median:.0f}; "
                     f"at rank 1 {_percent(o.picked_at_rank_1)}, in the top 5 {_percent(o.picked_in_top_5)}")
    if figures.bad_pick_lines or figures.bad_turn_lines:
        lines.append(f"unreadable lines skipped: {figures.bad_pick_lines} in the pick log, "
                     f"{figures.bad_turn_lines} in the turn log")
    return lines


def _empty(fig: Figure, message: str = "nothing logged yet") -> Figure:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.4")
    return fig


def _dates(days: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(d) for d in days]


def _date_axis(ax, days: list[datetime]) -> None:
    """Whole days on the x axis, padded by one, at most about ten ticks (a single day must not span years)."""
    from matplotlib.dates import DateFormatter, DayLocator

    span = (days[-1] - days[0]).days + 1
    ax.set_xlim(days[0] - timedelta(days=1), days[-1] + timedelta(days=1))
    ax.xaxis.set_major_locator(DayLocator(interval=max(1, span // 10)))
    ax.xaxis.set_major_formatter(DateFormatter("%b %d" if days[0].year == days[-1].year else "%Y-%m-%d"))
    for label in ax.get_xticklabels():
        label.set_rotation(30 if span > 5 else 0)


def plot_daily(figures: Figures) -> Figure:
    """Per day: sessions, picks and triplets; and per model version: pick rate, turns until a pick, picked rank."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    if not figures.by_day:
        return _empty(fig)
    axes = fig.subplots(2, 2)
    days = _dates([g.key for g in figures.by_day])
    ax = axes[0, 0]
    for offset, (name, values) in zip((-0.27, 0.0, 0.27), (
            ("sessions", [g.sessions for g in figures.by_day]), ("picks", [g.picks for g in figures.by_day]),
            ("triplets", [g.triplets for g in figures.by_day])), strict=True):
        ax.bar([d + timedelta(days=offset) for d in days], values, width=0.27, label=name)
    _date_axis(ax, days)
    ax.set_title("Sessions, picks and triplets per day")
    ax.legend(fontsize=8)
    panels = ((axes[0, 1], "pick_rate", "Pick rate", 100.0),
              (axes[1, 0], "turns_until_pick_mean", "Turns until a pick (mean)", 1.0),
              (axes[1, 1], "picked_rank_mean", "Rank of the picked item (mean)", 1.0))
    for ax, attr, title, scale in panels:
        for model in figures.models:
            points = [(datetime.fromisoformat(d), getattr(g, attr)) for d, g in figures.by_day_model
                      if g.key == model and getattr(g, attr) is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] * scale for p in points], marker="o",
                        label=short_model(model))
        _date_axis(ax, days)
        ax.set_title(title + (" (%)" if scale == 100.0 else ""))
        if scale == 100.0:
            ax.set_ylim(0, 105)
        else:
            ax.set_ylim(bottom=0)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1, 1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8,
                   title="model version")
    return fig


def plot_models(figures: Figures) -> Figure:
    """Per model version: counts, pick rate, turns until a pick and picked rank side by side."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    if not figures.by_model:
        return _empty(fig)
    axes = fig.subplots(2, 2)
    groups = figures.by_model
    labels = [short_model(g.key) for g in groups]
    x = list(range(len(groups)))
    ax = axes[0, 0]
    for offset, (name, values) in zip((-0.27, 0.0, 0.27), (
            ("sessions", [g.sessions for g in groups]), ("picks", [g.picks for g in groups]),
            ("triplets", [g.triplets for g in groups])), strict=True):
        ax.bar([i + offset for i in x], values, width=0.27, label=name)
    ax.set_title("Sessions, picks and triplets")
    ax.legend(fontsize=8)
    for ax, attr, title, scale in ((axes[0, 1], "pick_rate", "Pick rate (%)", 100.0),
                                   (axes[1, 0], "turns_until_pick_mean", "Turns until a pick (mean)", 1.0),
                                   (axes[1, 1], "picked_rank_mean", "Rank of the picked item (mean)", 1.0)):
        values = [getattr(g, attr) for g in groups]
        ax.bar(x, [0 if v is None else v * scale for v in values], color="tab:blue")
        for i, v in zip(x, values, strict=True):
            ax.annotate("–" if v is None else f"{v * scale:.1f}", (i, 0 if v is None else v * scale),
                        ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
    for ax in axes.flat:
        ax.set_xticks(x, labels, rotation=20 if len(groups) > 2 else 0, ha="right" if len(groups) > 2 else "center",
                      fontsize=8)
    return fig


def plot_ranks(figures: Figures) -> Figure:
    """Share of picks at each rank, per model version: a better model moves picks towards rank 1."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ranked = {m: r for m, r in figures.ranks_by_model.items() if r}
    if not ranked:
        return _empty(fig, "no picks logged yet")
    ax = fig.subplots()
    top = max(max(r) for r in ranked.values())
    width = 0.8 / len(ranked)
    for n, (model, ranks) in enumerate(ranked.items()):
        shares = [100.0 * sum(r == k for r in ranks) / len(ranks) for k in range(1, top + 1)]
        ax.bar([k - 0.4 + width * (n + 0.5) for k in range(1, top + 1)], shares, width=width,
               label=f"{short_model(model)} ({len(ranks)} picks)")
    ax.set_xticks(range(1, top + 1))
    ax.set_xlabel("rank of the picked item")
    ax.set_ylabel("% of picks")
    ax.set_title("Where picked items were ranked")
    ax.legend(fontsize=8)
    return fig


PLOTS = {"daily": plot_daily, "models": plot_models, "ranks": plot_ranks}


def save_plots(figures: Figures, folder: Path) -> list[Path]:
    """Write every plot as a PNG into ``folder``; returns the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        path = folder / f"{name}.png"
        plot(figures).savefig(path, dpi=100)
        written.append(path)
    return written
