"""The Gradio 6 app: chat + photo upload, a gallery of product cards to pick from, filters and a shortlist.

All behaviour lives in ``assistant.turns.Assistant``; this module only turns its
replies into widgets. Each browser session keeps its own ``Session`` in a
``gr.State``, so two shoppers never see each other's conversation. Every action
is also a named API endpoint (``/send``, ``/pick``, ``/undo``, ``/start_over``,
``/none_of_these``, ``/refresh``, ``/shortlist_add``, ``/shortlist_export``,
``/delete_my_data``, ``/stats``) for ``gradio_client``. A second tab shows the
shop's figures (``ui.stats_tab``).

The page speaks the browser's language where circhat has it (``ui.page_text`` through ``gr.I18n``), English
otherwise; each session keeps the language its requests ask for (``Accept-Language``), so the replies, chips
and product cards the server writes follow it, and one session's language never reaches another.
"""

from __future__ import annotations

import contextlib
import csv
import html
import inspect
import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from assistant.conversation import Conversation, ShownItem
from assistant.messages import DEFAULT_LANGUAGE, choose_language, text
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO
from assistant.turns import Assistant, Filters, Reply
from retrieval.catalog_schema import CatalogSchema
from retrieval.image_io import MAX_BYTES
from ui.page_text import heading, key, page_i18n, translated
from ui.serve import FileGuard
from ui.stats_tab import stats_tab

ANY = "any"
TITLE = "circhat: find it by showing and saying"
PROGRESS = gr.Progress()
MAX_CHAT_MESSAGES = 200
MAX_FILTER_VALUES = 40
STATUS_SECONDS = 3.0
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "AUD": "A$", "CAD": "C$"}
CSS = """
#state .chips { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
#state .chip { border-radius: 999px; padding: 2px 10px; background: var(--color-accent-soft);
               border: 1px solid var(--border-color-accent); font-size: 0.9em; }
#state .chip.ref { font-weight: 600; }
#state .label { color: var(--body-text-color-subdued); margin-right: 4px; }
#results .thumbnail-item:focus:not(:focus-visible) { border-color: var(--border-color-primary);
                                                     box-shadow: none; }
#results .thumbnail-item:focus:not(:focus-visible) .caption-label { opacity: 1; color: var(--body-text-color); }
#results .caption-label { white-space: normal; overflow: visible; text-overflow: clip; max-width: 100%;
                          opacity: 0.92; line-height: 1.25; }
"""
@dataclass
class Session:
    """One browser session's conversation and chat transcript."""

    conv: Conversation
    chat: list[dict[str, Any]] = field(default_factory=list)
    deleted_picks: int = 0


def price_text(value: float, schema: CatalogSchema) -> str:
    """A price as the shop writes it: with its currency's symbol where known, else its code."""
    unit = schema.price.unit if schema.price is not None else None
    symbol = CURRENCY_SYMBOLS.get(unit or "")
    decimals = 0 if unit == "JPY" else 2
    return f"{symbol}{value:,.{decimals}f}" if symbol else f"{value:,.{decimals}f}" + (f" {unit}" if unit else "")


def card_caption(item: ShownItem, schema: CatalogSchema, language: str = DEFAULT_LANGUAGE) -> str:
    """A product card's caption: name, price and the values of the attributes that apply to it, in full, each value
    by its display name in the user's language."""
    meta = item.metadata
    parts = [str(meta.get(schema.roles.get("name", "name")) or f"#{item.id}")]
    price = meta.get(schema.price.name) if schema.price is not None else None
    if isinstance(price, int | float):
        parts.append(price_text(float(price), schema))
    values = schema.known_values(meta)
    shown = [schema.attribute(a).label(v, language) for a, v in values.items() if a != schema.category]
    if shown:
        parts.append(text(language, "list_separator").join(shown))
    return " · ".join(parts)


def shortlist_columns(schema: CatalogSchema) -> list[str]:
    """The shortlist's columns: id, name and price, then every attribute (the category first)."""
    name = schema.roles.get("name")
    price = schema.price.name if schema.price is not None else None
    return ["id", *(c for c in (name, price) if c), *schema.attribute_names]


def filter_attributes(schema: CatalogSchema) -> list[str]:
    """The attributes offered as filters beside the chat: the category, then each one with few enough values."""
    return [a.name for a in schema.attributes
            if a.filter and len(a.values) <= MAX_FILTER_VALUES and a.name != schema.category]


def filter_choices(schema: CatalogSchema, attribute: str | None, language: str,
                   with_any: bool = False) -> list[tuple[str, str]]:
    """(shown, value) choices of a filter: each value by its display name in ``language``, "any" first if asked."""
    found = schema.attribute(attribute)
    values = [(found.label(v.name, language) if language != DEFAULT_LANGUAGE else v.shown(), v.name)
              for v in (found.values if found is not None else [])]
    return [(text(language, "any"), ANY), *values] if with_any else values


def chips_html(conv: Conversation, language: str | None = None) -> str:
    """The parsed state as chips in the session's language, with the plain line as the accessible text."""
    language = language or conv.language
    line = html.escape(conv.describe(language))
    if not conv.searchable:
        nothing = html.escape(text(language, "searching_nothing_short"))
        return f'<div class="chips" aria-label="{line}"><span class="label">{nothing}</span></div>'
    chips = []
    for i, label in enumerate(conv.chips(language)):
        cls = "chip ref" if i == 0 and conv.reference is not None else "chip"
        chips.append(f'<span class="{cls}">{html.escape(label)}</span>')
    hidden = (f'<span class="label">{html.escape(text(language, "hiding_state", n=len(conv.rejected)))}</span>'
              if conv.rejected else "")
    searching = html.escape(text(language, "searching_for").strip())
    return (f'<div class="chips" aria-label="{line}"><span class="label">{searching}</span>{"".join(chips)}'
            f'{hidden}</div>')


def language_of(request: gr.Request | None) -> str:
    """The language a request's browser asks for (``Accept-Language``), among those circhat speaks."""
    headers = getattr(request, "headers", None) or {}
    return choose_language(headers.get("accept-language"))


def shortlist_rows(conv: Conversation) -> list[list[Any]]:
    columns = shortlist_columns(conv.schema)
    return [[item.id if c == "id" else item.metadata.get(c, "") for c in columns] for item in conv.shortlist.values()]


def write_shortlist_csv(conv: Conversation) -> str:
    """The shortlist as a CSV file in a fresh temp file, for download."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="shortlist-", delete=False, newline="",
                                     encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(shortlist_columns(conv.schema))
        writer.writerows([[_csv_safe(v) for v in row] for row in shortlist_rows(conv)])
        return f.name


def discard_original_upload(path: str) -> None:
    """Delete the shopper's original file from Gradio's upload folder once it has been read.

    The original carries its EXIF and GPS metadata; from here on only the
    sanitised copy is used. Paths outside Gradio's upload folder are never touched.
    """
    folder = os.path.realpath(get_upload_folder())
    real = os.path.realpath(path)
    if real == folder or os.path.commonpath([folder, real]) != folder:
        return
    with contextlib.suppress(OSError):
        os.unlink(real)
        if os.path.dirname(real) != folder:
            os.rmdir(os.path.dirname(real))


def _csv_safe(value: Any) -> Any:
    """Catalog text that a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def named_filter_parameters(fn: Callable, names: Sequence[str]) -> Callable:
    """Give ``fn``'s ``*more`` filter values their own names, so the API (``gradio_client``) shows
    ``min_price, color, material…`` instead of ``param_4…``; Gradio still passes them positionally."""
    signature = inspect.signature(fn)
    fixed = [p for p in signature.parameters.values() if p.kind != p.VAR_POSITIONAL]
    taken = {p.name for p in fixed}
    extra = [inspect.Parameter(n if n not in taken else f"{n}_filter", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               default=None) for n in names]
    fn.__signature__ = signature.replace(parameters=[*fixed, *extra])
    return fn


def model_header(title: str, schema: CatalogSchema, searcher: Any, language: str | None = None) -> str:
    """The page's heading: the catalog's intro, the model version in use and, while one trains, its progress.

    Without a ``language`` (the page as first served) the heading up to the version is an i18n key the browser
    translates; a refresh from a session writes it in that session's language.
    """
    status = getattr(searcher, "status", "")
    line = f"<code>{html.escape(str(searcher.model_version))}</code>"
    line += f" · {html.escape(status)}</small>" if status else "</small>"
    return (key("header") if language is None else heading(title, schema, language)) + line


class CatalogBlocks(gr.Blocks):
    """The app's Blocks: its API description (``gradio_client``'s ``view_api``) names components in English, not by
    the i18n keys the page is translated from."""

    def __init__(self, english: dict[str, str], **kwargs: Any):
        super().__init__(**kwargs)
        self.english = english

    def get_api_info(self, all_endpoints: bool = False, page: str | None = None) -> Any:
        info = super().get_api_info(all_endpoints, page)
        for endpoints in (info.get("named_endpoints", {}), info.get("unnamed_endpoints", {})):
            for endpoint in endpoints.values():
                for entry in (*endpoint.get("parameters", []), *endpoint.get("returns", [])):
                    entry["label"] = translated(entry.get("label"), self.english)
        return info


def page_translations(schema: CatalogSchema, title: str = TITLE) -> gr.I18n:
    """The page's words in every language for ``schema``'s catalog, for ``launch(i18n=...)``."""
    return page_i18n(schema, title, lambda language: chips_html(Conversation("", schema, language=language)))


def build_app(assistant: Assistant, title: str = TITLE) -> gr.Blocks:
    """The Blocks app for ``assistant``; call ``.queue()`` and ``.launch()`` on it (see ``ui.serve``).

    Its filters come from the catalog's schema: the category, each attribute with few values, the price range.
    Every event takes them as ``category, price`` (the price ceiling) followed by the minimum price and one
    list of wanted values per filter attribute.
    """
    schema = assistant.schema
    price_column = schema.price
    max_price = price_column.maximum if price_column is not None else None
    price_ceiling = float(int(max_price) + 1) if max_price else None
    attribute_filters = filter_attributes(schema)

    def filters(category: str | None, price: float | None, *more: Any) -> Filters:
        minimum = more[0] if more else None
        wanted = more[1:]
        values: dict[str, tuple[str, ...]] = {}
        if schema.category and category and category != ANY:
            values[schema.category] = (str(category),)
        for name, chosen in zip(attribute_filters, wanted, strict=False):
            if chosen:
                values[name] = tuple(str(v) for v in ([chosen] if isinstance(chosen, str) else chosen))
        ranges = {}
        if price_column is not None and price_ceiling is not None:
            ceiling = None if price is None or price >= price_ceiling else float(price)
            floor = float(minimum) if minimum not in (None, "") and float(minimum) > 0 else None
            ranges[price_column.name] = (floor, ceiling)
        return Filters(values, ranges)

    def session_of(session: Session | None, request: gr.Request | None) -> Session:
        """This browser session's state, in the language its request asks for."""
        if session is None:
            sid = getattr(request, "session_hash", None) or secrets.token_hex(16)
            session = Session(conv=assistant.start(sid))
        session.conv.language = language_of(request)
        return session

    def progress_fn(progress: gr.Progress):
        return lambda fraction, desc: progress(fraction, desc=desc)

    def view(session: Session, reply: Reply | None = None) -> tuple:
        conv = session.conv
        language = conv.language
        shown = reply.shown if reply is not None else conv.shown
        gallery = gr.Gallery(value=[(s.path, card_caption(s, schema, language)) for s in shown], selected_index=None)
        reference = conv.reference.path if conv.reference is not None else None
        picks = len(conv.picks) - session.deleted_picks
        status = (text(language, "picks_saved", n=picks, plural="s" if picks != 1 else "") if picks else
                  text(language, "no_picks"))
        details = reply.details() if reply is not None else {}
        return (session.chat, gallery, chips_html(conv), reference, status, details, shortlist_rows(conv), session)

    def answer(session: Session, reply: Reply) -> None:
        session.chat = [*session.chat, {"role": "assistant", "content": reply.message}][-MAX_CHAT_MESSAGES:]

    def send(message: dict | None, session: Session | None, category: str, price: float, request: gr.Request,
             progress: gr.Progress = PROGRESS, *more: Any) -> tuple:
        """A chat message: text and/or one uploaded photo."""
        session = session_of(session, request)
        message = message or {}
        said = str(message.get("text") or "")
        files = message.get("files") or []
        image = files[0] if files else None
        if isinstance(image, dict):
            image = image.get("path")
        reply = assistant.say(session.conv, said, image, filters(category, price, *more), progress_fn(progress))
        if image:
            discard_original_upload(str(image))
        if image and reply.ok and session.conv.reference is not None:
            session.chat.append({"role": "user", "content": {"path": session.conv.reference.path}})
        if said.strip() or (image and not reply.ok):
            session.chat.append({"role": "user", "content": said.strip() or text(session.conv.language, "photo")})
        answer(session, reply)
        return (*view(session, reply), gr.MultimodalTextbox(value=None))

    def pick_by_id(item_id: str, session: Session | None, category: str, price: float, consent: bool,
                   request: gr.Request, progress: gr.Progress = PROGRESS, *more: Any) -> tuple:
        """Pick a shown item by its catalog id."""
        session = session_of(session, request)
        reply = assistant.pick(session.conv, str(item_id).strip(), filters(category, price, *more), bool(consent),
                               progress_fn(progress))
        session.chat.append({"role": "user", "content": text(session.conv.language, "i_pick",
                                                             id=str(item_id).strip())})
        answer(session, reply)
        return view(session, reply)

    def pick_selected(session: Session | None, category: str, price: float, consent: bool, evt: gr.SelectData,
                      request: gr.Request, progress: gr.Progress = PROGRESS, *more: Any) -> tuple:
        """A click on a result card picks it."""
        session = session_of(session, request)
        shown = session.conv.shown
        if evt.index is None or not 0 <= int(evt.index) < len(shown):
            return view(session)
        return pick_by_id(shown[int(evt.index)].id, session, category, price, consent, request, progress, *more)

    def command(name: str):
        def run(session: Session | None, category: str, price: float, request: gr.Request,
                progress: gr.Progress = PROGRESS, *more: Any) -> tuple:
            session = session_of(session, request)
            reply = assistant.command(session.conv, name, filters(category, price, *more), progress_fn(progress))
            session.chat.append({"role": "user", "content": text(session.conv.language, name)})
            answer(session, reply)
            return view(session, reply)

        run.__doc__ = f"The “{text(DEFAULT_LANGUAGE, name)}” button."
        return run

    def refresh(session: Session | None, category: str, price: float, request: gr.Request, *more: Any) -> tuple:
        """Search again with new filters."""
        session = session_of(session, request)
        reply = assistant.refresh(session.conv, filters(category, price, *more))
        return view(session, reply)

    def shortlist_add(session: Session | None, request: gr.Request) -> tuple:
        """Add the current reference (the last pick) to the shortlist."""
        session = session_of(session, request)
        conv = session.conv
        ref = conv.reference
        if ref is None or ref.kind != "catalog":
            gr.Warning(text(conv.language, "shortlist_needs_pick"))
            return shortlist_rows(conv), session
        item = next((s for s in reversed(conv.picks) if s.id == ref.key), None)
        if item is not None and conv.add_to_shortlist(item):
            gr.Info(text(conv.language, "shortlisted", id=ref.key))
        return shortlist_rows(conv), session

    def shortlist_export(session: Session | None, request: gr.Request) -> gr.File:
        """The shortlist as a CSV download."""
        session = session_of(session, request)
        return gr.File(value=write_shortlist_csv(session.conv), visible=True)

    def delete_my_data(session: Session | None, request: gr.Request) -> tuple:
        """Delete this session's saved picks, search-turn records and kept photo copies from the logs."""
        session = session_of(session, request)
        done = assistant.forget(session.conv)
        session.deleted_picks = len(session.conv.picks)
        language = session.conv.language
        if done is None:
            message = text(language, "nothing_saved")
        else:
            message = text(language, "deleted", picks=done.picks.removed, turns=done.turns.removed,
                           photos=len(done.uploads_removed))
        gr.Info(message.replace("**", ""))
        return message, session

    def clear_chat(session: Session | None, request: gr.Request) -> Session:
        """The chat's clear button empties the transcript; the search state stays (use “Start over”)."""
        session = session_of(session, request)
        session.chat = []
        return session

    english = page_translations(schema, title).translations_dict["en"]
    with CatalogBlocks(english, title=title, analytics_enabled=False) as demo:
        state = gr.State(None, time_to_live=6 * 3600)
        header = gr.Markdown(model_header(title, schema, assistant.searcher), elem_id="model-version")
        if getattr(assistant.searcher, "status", ""):
            timer = gr.Timer(STATUS_SECONDS)

            def refresh_header(request: gr.Request) -> tuple[str, gr.Timer]:
                """While the model trains, the header follows it; once it is in use the timer stops."""
                return (model_header(title, schema, assistant.searcher, language_of(request)),
                        gr.Timer(active=bool(getattr(assistant.searcher, "status", ""))))

            timer.tick(refresh_header, outputs=[header, timer], show_progress="hidden", api_visibility="private")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(key("tab_assistant"), id="assistant", elem_id="assistant-tab"), gr.Row(equal_height=False):
                with gr.Column(scale=5, min_width=360):
                    chatbot = gr.Chatbot(label=key("chat"), elem_id="chat", height=400, feedback_options=None,
                                         group_consecutive_messages=False, buttons=["copy_all"])
                    msg = gr.MultimodalTextbox(
                        elem_id="msg", file_types=["image"], file_count="single", show_label=False,
                        placeholder=key("placeholder"),
                        sources=["upload"],
                        max_plain_text_length=400)
                    with gr.Row():
                        undo_btn = gr.Button(key("undo"), elem_id="undo", size="sm")
                        reset_btn = gr.Button(key("start_over"), elem_id="start-over", size="sm")
                        reject_btn = gr.Button(key("none_of_these"), elem_id="none-of-these", size="sm")
                    chips = gr.HTML(key("chips_empty"), elem_id="state", label=key("searching_for"))
                    consent = gr.Checkbox(False, label=key("consent"), elem_id="consent")
                    forget_btn = gr.Button(key("delete"), elem_id="delete-my-data", size="sm", variant="stop")
                    status = gr.Markdown(key("no_picks"), elem_id="status", label=key("picks"))
                with gr.Column(scale=7, min_width=420):
                    with gr.Row():
                        category_attribute = schema.attribute(schema.category)
                        category = gr.Dropdown(
                            filter_choices(schema, schema.category, DEFAULT_LANGUAGE, with_any=True), value=ANY,
                            label=key("category"), elem_id="category", visible=category_attribute is not None)
                        price = (gr.Slider(0, price_ceiling, value=price_ceiling, step=1, label=key("max_price"),
                                           elem_id="max-price") if price_ceiling else gr.Number(None, visible=False))
                        min_price = (gr.Slider(0, price_ceiling, value=0, step=1, label=key("min_price"),
                                               elem_id="min-price") if price_ceiling else
                                     gr.Number(None, visible=False))
                    with gr.Accordion(key("more_filters"), open=False, visible=bool(attribute_filters),
                                      elem_id="more-filters"), gr.Row():
                        wanted = [gr.Dropdown(filter_choices(schema, name, DEFAULT_LANGUAGE),
                                              value=[], multiselect=True, label=key(f"attribute_{name}"),
                                              elem_id=f"filter-{name}") for name in attribute_filters]
                    gallery = gr.Gallery(label=key("results"), elem_id="results", columns=4,
                                         height=480, allow_preview=False, object_fit="contain", buttons=[])
                    with gr.Row(equal_height=False):
                        reference = gr.Image(label=key("reference"), elem_id="reference", type="filepath",
                                             interactive=False, height=160, buttons=[])
                        with gr.Column():
                            shortlist_btn = gr.Button(key("shortlist_add"), elem_id="shortlist-add", size="sm")
                            export_btn = gr.Button(key("shortlist_export"), elem_id="shortlist-export", size="sm")
                            export_file = gr.File(label=key("shortlist_file"), elem_id="shortlist-file",
                                                  interactive=False, visible=False)
                    shortlist = gr.Dataframe(headers=shortlist_columns(schema), value=[], label=key("shortlist"),
                                             elem_id="shortlist", interactive=False, wrap=True)
                    with gr.Accordion(key("details"), open=False):
                        details = gr.JSON(label=key("last_reply"), elem_id="details")
                        with gr.Row():
                            pick_id = gr.Textbox(label=key("item_id"), elem_id="pick-id", scale=3)
                            pick_btn = gr.Button(key("pick"), elem_id="pick", scale=1)
            stats_tab(assistant.log.path if assistant.log is not None else None,
                      assistant.turn_log.path if assistant.turn_log is not None else None)

        outputs = [chatbot, gallery, chips, reference, status, details, shortlist, state]
        more = [min_price, *wanted]
        names = ["min_price", *attribute_filters]
        for handler in (send, pick_selected, pick_by_id, refresh):
            named_filter_parameters(handler, names)
        msg.submit(send, [msg, state, category, price, *more], [*outputs, msg], api_name="send")
        gallery.select(pick_selected, [state, category, price, consent, *more], outputs, api_visibility="private")
        pick_btn.click(pick_by_id, [pick_id, state, category, price, consent, *more], outputs, api_name="pick")
        for button, name in ((undo_btn, UNDO), (reset_btn, START_OVER), (reject_btn, NONE_OF_THESE)):
            button.click(named_filter_parameters(command(name), names), [state, category, price, *more], outputs,
                         api_name=name)
        category.input(refresh, [state, category, price, *more], outputs, api_name="refresh")
        for dropdown in wanted:
            dropdown.input(refresh, [state, category, price, *more], outputs, api_visibility="private")
        if price_ceiling:
            price.release(refresh, [state, category, price, *more], outputs, api_visibility="private")
            min_price.release(refresh, [state, category, price, *more], outputs, api_visibility="private")
        shortlist_btn.click(shortlist_add, [state], [shortlist, state], api_name="shortlist_add")
        export_btn.click(shortlist_export, [state], [export_file], api_name="shortlist_export")
        chatbot.clear(clear_chat, [state], [state], api_visibility="private")

        def localise_filters(request: gr.Request) -> list:
            """The filters' values by their display names in the browser's language (the page is served in
            English; Gradio's i18n does not reach choices)."""
            language = language_of(request)
            if language == DEFAULT_LANGUAGE:
                return [gr.skip() for _ in (category, *wanted)]
            return [gr.Dropdown(choices=filter_choices(schema, schema.category, language, with_any=True)),
                    *(gr.Dropdown(choices=filter_choices(schema, name, language)) for name in attribute_filters)]

        demo.load(localise_filters, None, [category, *wanted], api_visibility="private", show_progress="hidden")
        forget_btn.click(delete_my_data, [state], [status, state], api_name="delete_my_data")
    return demo


def launch_kwargs(image_root: Path | Sequence[Path] | None, host: str, port: int | None, auth: Any,
                  guard: Callable[[str], bool] | None = None, schema: CatalogSchema | None = None,
                  title: str = TITLE) -> dict[str, Any]:
    """The ``launch()`` settings every circhat server uses: local by default, no share link, only catalog files,
    and the page's words in every language circhat speaks (for ``schema``'s catalog).

    ``guard`` (``ui.serve.ServableFiles``) decides, before Gradio does, whether a ``/file=`` path may be read.
    """
    roots = [image_root] if isinstance(image_root, str | Path) else list(image_root or [])
    settings = {
        "server_name": host, "server_port": port, "auth": auth, "share": False,
        "allowed_paths": [str(r) for r in roots], "ssr_mode": False, "mcp_server": False,
        "show_error": True, "css": CSS, "footer_links": ["api"], "enable_monitoring": False,
        "max_file_size": MAX_BYTES, "i18n": page_translations(schema or CatalogSchema(), title),
    }
    if guard is not None:
        settings["app_kwargs"] = {"middleware": [Middleware(FileGuard, allowed=guard)]}
    return settings
