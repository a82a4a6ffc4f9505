"""A Japanese shopper against the real server (gradio_client, ``Accept-Language: ja``) on the tests' small demo world:
three-turn refinements to hidden targets, said in Japanese, compose exactly the queries the English words compose
and reach the target; replies, the state line and the chips are in Japanese; the picks are logged with the Japanese
text and the canonical edits; Japanese words the English-only demo tower cannot read are reported as not
understood, not searched for; an English session beside it stays English."""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import pytest

from assistant.parser import parse_rules
from assistant.triplet_log import scan_log
from tests.demo_schema import demo_schema, demo_vocabulary
from tests.test_app_api import STATED_ORDER, combo_of, command, instruction, matches, pick, reached, send
from training.world import Combo

pytest_plugins = ("tests.fixtures_app",)
pytestmark = pytest.mark.slow

JAPANESE = {"Accept-Language": "ja-JP,ja;q=0.9,en-US;q=0.8"}
SESSIONS = 3
SHOWN = 12
# the Japanese a shopper types for each demo value, written for this test (not read from the lexicon)
SAID = {
    "category": {"dress": "ワンピース", "skirt": "スカート", "t-shirt": "Tシャツ", "trousers": "パンツ"},
    "colour": {"red": "赤", "maroon": "えんじ色", "orange": "オレンジ", "yellow": "黄色", "green": "緑", "teal": "青緑",
               "blue": "青", "navy": "紺", "purple": "紫", "pink": "ピンク", "beige": "ベージュ", "black": "黒"},
    "pattern": {"solid": "無地", "striped": "ストライプ", "dotted": "水玉", "checked": "チェック"},
    "sleeve": {"sleeveless": "ノースリーブ", "short-sleeve": "半袖", "long-sleeve": "長袖"},
    "length": {"short": "ミニ丈", "knee-length": "ひざ丈", "long": "ロング丈"},
    "neckline": {"crew-neck": "丸首", "v-neck": "Vネック"},
}


def client(url: str, headers: dict[str, str] | None = None):
    from gradio_client import Client

    c = Client(url, verbose=False, analytics_enabled=False, download_files=False, headers=headers)
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/send"]["parameters"]
    c.no_price_limit = next(p["parameter_default"] for p in api if p["parameter_name"] == "price")
    return c


def refine(c, target: Combo, japanese: bool) -> tuple[list[dict], list[str], dict]:
    """Turn 1 names category, colour and pattern; pick the closest shown item; then state up to two attributes the
    pick gets wrong, one a turn, in Japanese or in the English of tests/test_app_api."""
    first = (f"{SAID['colour'][target.colour]}の{SAID['pattern'][target.pattern]}の{SAID['category'][target.category]}"
             if japanese else f"a {target.colour} {target.pattern} {target.category}")
    turn1 = send(c, first)
    said = ["category", "colour", "pattern"]
    best = max(turn1["results"], key=lambda r: (matches(combo_of(r), target, said), -r["rank"]))
    replies, stated = [turn1, pick(c, best["id"])], []
    wrong = [a for a in STATED_ORDER if a in target.applicable() and combo_of(best).get(a) != target.get(a)]
    for attribute in wrong[:2]:
        value = target.get(attribute)
        replies.append(send(c, f"{SAID[attribute][value]}にして" if japanese else instruction(attribute, value)))
        stated.append(attribute)
    return replies, stated, best


def test_japanese_sessions_refine_to_the_hidden_target_and_log_the_japanese(app_server):
    ja, en = client(app_server.url, JAPANESE), client(app_server.url)
    train = app_server.world.split("train")
    rng = np.random.default_rng(17)
    targets = [train[int(i)].combo for i in rng.choice(len(train), SESSIONS, replace=False)]
    hits = 0
    for n, target in enumerate(targets):
        replies, stated, best = refine(ja, target, japanese=True)
        english, english_stated, english_best = refine(en, target, japanese=False)
        assert stated == english_stated and best["id"] == english_best["id"]
        assert [r["query"] for r in replies] == [r["query"] for r in english]
        assert [[x["id"] for x in r["results"]] for r in replies] == [[x["id"] for x in r["results"]] for r in english]
        last = replies[-1]
        assert last["ok"] and last["state"].startswith(f"検索条件：基準 #{best['id']}")
        assert english[-1]["state"].startswith(f"searching for: ref #{best['id']}")
        assert "件表示しています" in last["message"] and "Here are" in english[-1]["message"]
        shown = [demo_schema().attribute(a).label(target.get(a), "ja") for a in stated]
        assert last["chips"][-len(stated):] == shown if stated else True, last["chips"]
        hits += reached(last, target, ["category", "colour", "pattern", *stated], SHOWN)
        if n == 0:
            check_logged_pick(ja, app_server.log, last, stated, target)
        send(ja, "最初から")
        send(en, "start over")
    assert hits >= 2, f"{hits}/{SESSIONS} Japanese sessions reached their target's stated attributes"


def check_logged_pick(c, log, last: dict, stated: list[str], target: Combo) -> None:
    before = len(scan_log(log).records)
    done = pick(c, last["results"][0]["id"])
    assert done["ok"] and "を選びました（保存済み）" in done["message"]
    (record,) = scan_log(log).records[before:]
    assert record["language"] == "ja" and record["picked"]["id"] == last["results"][0]["id"]
    assert [(p["attribute"], p["value"]) for p in record["parsed"]] == [(a, target.get(a)) for a in stated]
    assert [p["message"] for p in record["parsed"]] == [f"{SAID[a][target.get(a)]}にして" for a in stated]
    assert record["instructions"] == [p["text"] for p in record["parsed"]]
    assert all(p["text"].isascii() for p in record["parsed"])


def test_words_the_demo_tower_cannot_read_are_reported_not_searched(app_server):
    ja = client(app_server.url, JAPANESE)
    first = send(ja, "赤いワンピース")
    unread = send(ja, "リボン付きで")
    assert "「リボン付きで」は理解できませんでした" in unread["message"] and "英語" in unread["message"]
    assert unread["state"] == first["state"] and unread["chips"] == ["赤", "ワンピース"]
    assert [r["id"] for r in unread["results"]] == [r["id"] for r in first["results"]]
    both = send(ja, "リボン付きで青にして")
    assert "理解できませんでした" in both["message"] and both["chips"] == ["ワンピース", "青"]
    assert "リボン" not in both["query"]
    english = client(app_server.url)
    reply = send(english, "a red dress with a bow")
    assert reply["message"].startswith("Passing “with a bow” to the model as free text, with a spread of results.")
    assert reply["chips"] == ["red", "dress", "“with a bow”"]


def test_commands_and_missing_values_in_japanese(app_server):
    ja = client(app_server.url, JAPANESE)
    send(ja, "赤いストライプのワンピース")
    rejected = send(ja, "どれも違う")
    assert "12件を非表示" in rejected["state"] and "今後は表示しません" in rejected["message"]
    grey = send(ja, "グレーにして")
    assert grey["message"].startswith("グレーの商品はありません。近いもの：")
    assert grey["message"].endswith("何も変えていません。")
    undone = send(ja, "元に戻して")
    assert "非表示" not in undone["state"]
    reset = command(ja, "/start_over")
    assert reset["state"].startswith("検索条件：まだありません")
    assert reset["message"].startswith("最初からやり直します。")


def test_the_pages_japanese_how_to_suggests_what_the_parser_understands(app_server):
    """The Japanese page text is made from the catalog's schema: its examples parse into the catalog's slots."""
    with urllib.request.urlopen(f"{app_server.url.rstrip('/')}/config", timeout=30) as response:
        translations = json.load(response)["i18n_translations"]
    assert set(translations) == {"en", "ja"} and translations["ja"]["circhat_undo"] == "↶ 元に戻す"
    japanese = translations["ja"]
    examples = re.findall(r"「([^」]+)」", japanese["circhat_header"] + japanese["circhat_placeholder"])
    assert len(examples) >= 3
    for example in examples:
        parsed = parse_rules(example, demo_vocabulary(), {"category": "dress", "length": "knee-length"})
        assert parsed.instructions and all(i.attribute for i in parsed.instructions), (example, parsed)
    assert translations["ja"]["circhat_attribute_colour"] == "色"
