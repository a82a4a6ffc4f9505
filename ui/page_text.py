"""The page's own words in each language, for Gradio's i18n: the browser's language picks them, English otherwise.

Static text (labels, buttons, the how-to) goes to the browser as ``gr.I18n``
keys and is translated there; what the server writes into a reply (chat,
chips, cards, the picks line) follows the language kept in each session
(``assistant.messages``). The how-to and the filter labels are made from the
catalog's schema for every language, so a shop's page speaks its own words.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable

import gradio as gr

from assistant.messages import LANGUAGES, examples, quoted, text
from retrieval.catalog_schema import CatalogSchema

PAGE = gr.I18n()
KEY_PREFIX = "circhat_"
STATIC: dict[str, dict[str, str]] = {
    "en": {
        "tab_assistant": "Assistant", "chat": "Chat", "undo": "↶ Undo", "start_over": "Start over",
        "none_of_these": "None of these", "searching_for": "Searching for",
        "consent": "Keep my uploaded photo with my picks (helps train the model)", "delete": "Delete my data",
        "picks": "Picks", "category": "Category", "max_price": "Max price", "min_price": "Min price",
        "more_filters": "More filters", "results": "Results: click one to pick it",
        "reference": "Current reference", "shortlist_add": "★ Add reference to shortlist",
        "shortlist_export": "Export shortlist (CSV)", "shortlist_file": "Shortlist CSV", "shortlist": "Shortlist",
        "details": "Details and pick by id", "last_reply": "Last reply", "item_id": "Item id", "pick": "Pick",
        "model_version": "Model version:",
    },
    "ja": {
        "tab_assistant": "アシスタント", "chat": "チャット", "undo": "↶ 元に戻す", "start_over": "最初から",
        "none_of_these": "どれも違う", "searching_for": "検索条件",
        "consent": "アップロードした写真を選択と一緒に保存する（モデルの改善に使います）",
        "delete": "私のデータを削除", "picks": "選択", "category": "種類",
        "max_price": "上限価格", "min_price": "下限価格", "more_filters": "その他の絞り込み",
        "results": "結果：クリックして選ぶ", "reference": "現在の基準", "shortlist_add": "★ 基準を候補リストに追加",
        "shortlist_export": "候補リストを書き出す（CSV）", "shortlist_file": "候補リストCSV", "shortlist": "候補リスト",
        "details": "詳細とIDで選ぶ", "last_reply": "最後の応答", "item_id": "商品ID", "pick": "選ぶ",
        "model_version": "モデルのバージョン：",
    },
}


def key(name: str) -> str:
    """The page text ``name`` as an i18n key string, translated by the browser (``gr.I18n``); keys are prefixed so
    they never shadow Gradio's own (``chat.*``, ``common.*``)."""
    return str(PAGE(KEY_PREFIX + name))


def intro(schema: CatalogSchema, language: str = "en") -> str:
    """The page's one-paragraph how-to in ``language``, with examples from the catalog."""
    description, edits = examples(schema, language)
    if language == "ja":
        return (f"探しているものを説明するか（{quoted(language, [description])}）、写真をアップロードしてから、"
                f"ふつうの言葉で絞り込んでください：{quoted(language, edits)}。結果をクリックするとそれが新しい基準に"
                "なります。選んだ結果はモデルの改善のために保存されます。")
    return (f"Describe what you want ({quoted(language, [description])}) or upload a photo, then refine in plain "
            f"words: {quoted(language, edits)}. Click a result to pick it: it becomes the new reference. Picks are "
            "saved to improve the model.")


def placeholder(schema: CatalogSchema, language: str = "en") -> str:
    """The message box's hint, with the catalog's first example refinement."""
    example = quoted(language, examples(schema, language)[1][:1])
    if language == "ja":
        return f"説明するか、写真をアップロード…（例：{example}）"
    return f"Describe it, or upload a photo… (e.g. {example})"


def heading(title: str, schema: CatalogSchema, language: str = "en") -> str:
    """The page heading up to the model version, which the server appends."""
    return f"## {html.escape(title)}\n{intro(schema, language)}\n\n<small>{STATIC[language]['model_version']} "


def translated(value: object, words: dict[str, str]) -> object:
    """A string holding an i18n key with the key's text in ``words`` put in its place (as the browser does)."""
    if not isinstance(value, str) or "__i18n__" not in value:
        return value
    start = value.index("__i18n__")
    end = value.index("}", start) + 1
    name = json.loads(value[start + len("__i18n__"):end])["key"]
    return value[:start] + words.get(name, name) + value[end:]


def page_i18n(schema: CatalogSchema, title: str, empty_state: Callable[[str], str]) -> gr.I18n:
    """Every language's page text for this catalog: the static words, the how-to, the attribute and filter names,
    and ``empty_state(language)``, the state line before the first message."""
    translations = {}
    for language in LANGUAGES:
        words = dict(STATIC.get(language, STATIC["en"]))
        words["header"] = heading(title, schema, language)
        words["chips_empty"] = empty_state(language)
        words["placeholder"] = placeholder(schema, language)
        words["no_picks"] = text(language, "no_picks")
        for attribute in schema.attributes:
            words[f"attribute_{attribute.name}"] = attribute.shown(language)
        if schema.attribute(schema.category) is not None:
            words["category"] = schema.attribute(schema.category).shown(language).capitalize()
        translations[language] = {KEY_PREFIX + name: value for name, value in words.items()}
    return gr.I18n(**translations)
