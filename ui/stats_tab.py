"""The app's Stats tab: the shop's figures (``assistant.log_figures``) as tables and plots, on demand.

Nothing is computed at page load: the figures are read from the logs when the
tab is opened and when *Refresh* is pressed (also the ``/stats`` endpoint).
Only aggregates are shown; no session hash, text or image leaves the logs.
Beside them, the model registry's versions with the two figures each fine-tune
was judged by (``training.registry.learning_figures``): did it learn the
customers' words (choice@1 on held-out picks) and did it keep what it knew
(R@1 on the fixed benchmark queries, the forgetting guard's figure).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from assistant.log_figures import (
    TABLE_COLUMNS,
    compute_figures,
    plot_daily,
    plot_models,
    plot_ranks,
    short_model,
    summary_lines,
    table_row,
)
from training.registry import Registry, learning_figures

NO_LOG = "No pick log is configured for this app, so there are no figures."
VERSION_COLUMNS = ("active", "version", "parent", "created", "verdict", "held-out picks choice@1 (parent -> it)",
                   "benchmark R@1 (parent -> it)")


def version_rows(registry: Registry) -> list[list[str]]:
    """One row per model version, newest first, with the figures its fine-tune was judged by."""
    active = set(registry.active_ids().values())
    rows = []
    for version in reversed(registry.versions()):
        figures = learning_figures(version.metrics)
        rows.append(["*" if version.id in active else "", version.id, version.parent or "", version.created,
                     version.verdict, figures["picks"], figures["benchmark"]])
    return rows


def stats_view(pick_log: Path | None, turn_log: Path | None, registry_root: Path | None = None) -> tuple:
    """(summary markdown, per-model rows, per-day rows, daily plot, models plot, ranks plot, model version rows);
    the versions come from ``registry_root`` (default: the registry ``circhat serve`` loads from)."""
    versions = version_rows(Registry(registry_root))
    if pick_log is None:
        return NO_LOG, [], [], None, None, None, versions
    figures = compute_figures(pick_log, turn_log)
    summary = "\n".join(f"* {line}" for line in summary_lines(figures))
    if not figures.overall.picks and not figures.overall.turns:
        summary = "Nothing logged yet: figures appear after the first searches and picks.\n\n" + summary
    models = [[short_model(g.key), g.key, *table_row(g)] for g in figures.by_model]
    days = [[g.key, *table_row(g)] for g in reversed(figures.by_day)]
    return summary, models, days, plot_daily(figures), plot_models(figures), plot_ranks(figures), versions


def stats_tab(pick_log: Path | None, turn_log: Path | None, registry_root: Path | None = None) -> gr.Tab:
    """Build the tab inside the current ``gr.Tabs`` and wire its refresh; returns the tab."""
    with gr.Tab("Stats", id="stats", elem_id="stats-tab") as tab:
        with gr.Row():
            gr.Markdown("### How the assistant is doing\nSessions, search turns, picks, pick rate, turns until a "
                        "pick, rank of the picked item and triplets harvested, per model version and per day "
                        "(UTC).")
            refresh = gr.Button("↻ Refresh", elem_id="stats-refresh", size="sm", scale=0, min_width=120)
        summary = gr.Markdown("Open this tab or press Refresh to read the logs.", elem_id="stats-summary")
        models = gr.Dataframe(headers=["model", "model version (full)", *TABLE_COLUMNS], value=[],
                              label="Per model version", elem_id="stats-models", interactive=False, wrap=True)
        daily = gr.Plot(label="Per day", elem_id="stats-daily-plot", format="png")
        by_model = gr.Plot(label="Per model version", elem_id="stats-models-plot", format="png")
        ranks = gr.Plot(label="Rank of the picked item", elem_id="stats-ranks-plot", format="png")
        days = gr.Dataframe(headers=["day", *TABLE_COLUMNS], value=[], label="Per day (newest first)",
                            elem_id="stats-days", interactive=False, wrap=True, max_height=400)
        versions = gr.Dataframe(headers=list(VERSION_COLUMNS), value=[], elem_id="stats-versions",
                                label="Model versions (newest first): what each fine-tune learned and what it kept; "
                                      "a version that forgot is not activated unless forced",
                                interactive=False, wrap=True, max_height=300)

    def load() -> tuple:
        """The shop's figures, read from the logs and the registry now."""
        return stats_view(pick_log, turn_log, registry_root)

    outputs = [summary, models, days, daily, by_model, ranks, versions]
    refresh.click(load, None, outputs, api_name="stats")
    tab.select(load, None, outputs, api_visibility="private")
    return tab
