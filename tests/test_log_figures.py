"""The shop's figures: per model version and per day, computed from a pick log and a turn log with known
answers; pick rate needs the turn log; the plots show the same numbers; ``circhat triplets stats``."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.log_figures import compute_figures, plot_daily, plot_models, plot_ranks, save_plots, short_model
from assistant.triplet_log import TripletLog, hash_session, json_line
from assistant.turn_log import TurnLog, turn_log_path
from retrieval.durable_files import append_line
from ui.assistant_commands import app
from ui.stats_tab import stats_view

SALT = b"figures-salt"
M1 = "circhat-tiny-rn-sha256:aa+composer-stage2-111111111111@2025-01-01T00:00:00"
M2 = "circhat-tiny-rn-sha256:aa+composer-stage2-222222222222@2025-01-03T00:00:00"
CATALOG = {"kind": "catalog", "id": "3"}
STORED = {"kind": "upload", "sha256": "ab" * 32, "consent": True, "stored": "uploads/" + "ab" * 32 + ".png"}
UNSTORED = {"kind": "upload", "sha256": "cd" * 32, "consent": False, "stored": None}

# session, day, model, search turns, picks as (rank, turns until the pick, reference, instructions)
SESSIONS = [
    ("s1", "2025-01-01", M1, 3, [(1, 2, CATALOG, ["make it blue"])]),
    ("s2", "2025-01-01", M1, 2, []),
    ("s3", "2025-01-02", M1, 4, [(3, 4, None, ["a red dress"]), (2, 1, CATALOG, [])]),
    ("s4", "2025-01-03", M2, 1, [(1, 1, STORED, ["with stripes"])]),
    ("s5", "2025-01-03", M2, 2, [(5, 2, UNSTORED, ["longer"])]),
    ("s6", "2025-01-03", M2, 3, []),
    ("s7", "2025-01-03", M2, 0, [(2, 3, CATALOG, ["no sleeves"])]),
]


def write_logs(folder) -> TripletLog:
    picks = TripletLog(folder / "triplets.jsonl", salt=SALT)
    turns = TurnLog(turn_log_path(picks.path), salt=SALT)
    for session, day, model, n_turns, session_picks in SESSIONS:
        hashed = hash_session(session, SALT)
        for t in range(n_turns):
            append_line(turns.path, json_line({"schema": 1, "session": hashed, "time": f"{day}T10:00:{t:02d}.000Z",
                                               "model": model, "turn": t + 1, "results": 12, "action": "message",
                                               "mode": "text"}), durable=False)
        for n, (rank, until, reference, said) in enumerate(session_picks):
            picks.append({"schema": 1, "session": hashed, "time": f"{day}T11:00:{n:02d}.000Z", "model": model,
                          "reference": reference, "instructions": said, "picked": {"id": str(rank), "rank": rank},
                          "turns": until})
    return picks


@pytest.fixture
def logs(tmp_path):
    return write_logs(tmp_path)


def test_figures_overall_per_model_and_per_day(logs):
    f = compute_figures(logs.path)
    o = f.overall
    assert (o.sessions, o.sessions_with_turns, o.turns, o.picks) == (7, 6, 15, 6)
    assert o.sessions_with_pick == 4 and o.pick_rate == pytest.approx(4 / 6, abs=1e-4)
    assert o.triplets == 3
    assert o.picked_rank_mean == pytest.approx(14 / 6, abs=1e-4) and o.picked_rank_median == 2.0
    assert o.picked_at_rank_1 == pytest.approx(2 / 6, abs=1e-4) and o.picked_in_top_5 == 1.0
    assert o.turns_until_pick_mean == pytest.approx(13 / 6, abs=1e-4)

    assert f.models == [M1, M2]
    m1, m2 = f.by_model
    assert (m1.sessions, m1.turns, m1.picks, m1.triplets, m1.pick_rate) == (3, 9, 3, 1, pytest.approx(2 / 3, abs=1e-4))
    assert (m2.sessions, m2.sessions_with_turns, m2.picks, m2.triplets) == (4, 3, 3, 2)
    assert m2.pick_rate == pytest.approx(2 / 3, abs=1e-4)
    assert m2.picked_rank_mean == pytest.approx(8 / 3, abs=1e-4) and m2.turns_until_pick_median == 2.0

    assert [g.key for g in f.by_day] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    d1, d2, d3 = f.by_day
    assert (d1.sessions, d1.picks, d1.pick_rate) == (2, 1, 0.5)
    assert (d2.sessions, d2.picks, d2.pick_rate, d2.picked_rank_mean) == (1, 2, 1.0, 2.5)
    assert (d3.sessions, d3.turns, d3.picks) == (4, 6, 3)
    assert [(day, g.key) for day, g in f.by_day_model] == [("2025-01-01", M1), ("2025-01-02", M1),
                                                           ("2025-01-03", M2)]
    assert f.ranks_by_model == {M1: [1, 3, 2], M2: [1, 5, 2]}


def test_pick_rate_needs_the_turn_log_and_bad_lines_are_counted(tmp_path):
    logs = write_logs(tmp_path)
    turn_log_path(logs.path).unlink()
    with open(logs.path, "a") as f:
        f.write("not json\n")
    figures = compute_figures(logs.path)
    assert figures.overall.pick_rate is None and figures.overall.sessions_with_turns == 0
    assert figures.overall.picks == 6 and figures.bad_pick_lines == 1 and figures.bad_turn_lines == 0
    empty = compute_figures(tmp_path / "nothing" / "triplets.jsonl")
    assert empty.overall.sessions == 0 and empty.by_model == [] and empty.by_day == []
    for plot in (plot_daily, plot_models, plot_ranks):
        assert plot(empty).axes[0].texts[0].get_text().startswith(("nothing", "no picks"))


def test_plots_show_the_figures(logs, tmp_path):
    f = compute_figures(logs.path)
    daily = plot_daily(f)
    rate_panel = daily.axes[1]
    assert rate_panel.get_title() == "Pick rate (%)"
    lines = {line.get_label(): list(line.get_ydata()) for line in rate_panel.get_lines()}
    assert lines == {short_model(M1): [50.0, 100.0], short_model(M2): [pytest.approx(200 / 3, abs=0.01)]}
    counts = daily.axes[0]
    assert [round(p.get_height()) for p in counts.containers[0]] == [2, 1, 4]
    models = plot_models(f)
    assert [round(p.get_height(), 4) for p in models.axes[1].patches] == [pytest.approx(200 / 3, abs=0.01)] * 2
    ranks = plot_ranks(f)
    assert [round(p.get_height(), 2) for p in ranks.axes[0].containers[0]] == [33.33, 33.33, 33.33, 0.0, 0.0]
    written = save_plots(f, tmp_path / "plots")
    assert [p.name for p in written] == ["daily.png", "models.png", "ranks.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 800


def test_short_model_labels():
    assert short_model(M1) == "composer-stage2-111111111111"
    assert short_model("v3-finetuned") == "v3-finetuned"
    long = short_model("x" * 20 + "y" * 40)
    assert len(long) == 30 and long.startswith("x") and long.endswith("y") and "…" in long


def test_stats_command_plots_and_json(logs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "plots"
    result = runner.invoke(app, ["triplets", "stats", "--log", str(logs.path), "--json", "--plots", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["picks"] == 6 and data["figures"]["overall"]["pick_rate"] == pytest.approx(0.6667, abs=1e-4)
    assert [g["key"] for g in data["figures"]["by_model"]] == [M1, M2]
    assert sorted(p.name for p in out.iterdir()) == ["daily.png", "models.png", "ranks.png"]
    result = runner.invoke(app, ["triplets", "stats", "--log", str(logs.path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "picks: 6 in 5 sessions" in text and "sessions: 7 (6 with logged search turns)" in text
    assert "pick rate: 66.7% (4 of 6 sessions picked something)" in text
    assert "triplets harvested: 3 of 6 picks" in text and "per model version:" in text and "per day:" in text
    day_rows = [line for line in text.splitlines() if line.startswith("2025-01-0")]
    assert [row.split()[:4] for row in day_rows] == [["2025-01-01", "2", "5", "1"], ["2025-01-02", "1", "4", "2"],
                                                      ["2025-01-03", "4", "6", "3"]]


def test_stats_tab_view(logs):
    summary, models, days, daily, by_model, ranks, versions = stats_view(logs.path, None, logs.path.parent / "models")
    assert "pick rate: 66.7%" in summary and "triplets harvested: 3 of 6 picks" in summary
    assert [row[:3] for row in models] == [[short_model(M1), M1, 3], [short_model(M2), M2, 4]]
    assert [row[0] for row in days] == ["2025-01-03", "2025-01-02", "2025-01-01"]
    assert daily.axes and by_model.axes and ranks.axes and versions == []
    assert stats_view(None, None)[0].startswith("No pick log")
