"""End to end in Debian Chromium driven by Playwright: upload a photo, get results, pick one, refine twice,
pick again and see the log grow; two browser contexts at once never see each other's state. Screenshots
go to docs/screenshots/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PIL import Image

from assistant.triplet_log import scan_log

pytest_plugins = ("tests.fixtures_app",)
pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
TURN_TIMEOUT_MS = 60_000
FIRST_ANSWER_S = 10.0
VIEWPORT = {"width": 1400, "height": 1050}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_app(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#msg textarea", timeout=TURN_TIMEOUT_MS)
    return page


def send(page, text: str, expect_state: str) -> None:
    from playwright.sync_api import expect

    page.locator("#msg textarea").fill(text)
    page.locator("#msg textarea").press("Enter")
    expect(page.locator("#state")).to_contain_text(expect_state, timeout=TURN_TIMEOUT_MS)


def screenshot(page, name: str) -> None:
    page.mouse.move(0, 0)
    page.screenshot(path=SHOTS / name, full_page=True)


def captions(page) -> list[str]:
    return page.locator("#results .caption-label").all_inner_texts()


def caption_id(caption: str) -> str:
    return str(int(re.search(r"#(\d+)", caption).group(1)))


def records(log: Path) -> list[dict]:
    return scan_log(log).records


def test_upload_pick_refine_twice_pick_again(app_server, browser, tmp_path):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    world = app_server.world
    source = next(it for it in world.items if it.combo.category == "dress" and it.combo.colour == "red")
    photo = tmp_path / "my-photo.jpg"
    Image.open(world.image_path(source)).convert("RGB").resize((160, 160)).save(photo, quality=92)
    before = len(records(app_server.log))

    context = browser.new_context(viewport=VIEWPORT)
    page = open_app(context, app_server.url)
    page.set_input_files("#msg input[type=file]", str(photo))
    page.wait_for_selector("#msg .thumbnail-item img", timeout=TURN_TIMEOUT_MS)
    started = time.perf_counter()
    page.locator("#msg textarea").press("Enter")
    expect(page.locator("#state")).to_contain_text("your photo", timeout=TURN_TIMEOUT_MS)
    expect(page.locator("#results .thumbnail-item")).to_have_count(12, timeout=TURN_TIMEOUT_MS)
    first_answer = time.perf_counter() - started
    expect(page.locator("#reference img")).to_be_visible()
    assert sum(c.startswith(("Red", "Maroon")) for c in captions(page)) >= 6, captions(page)
    screenshot(page, "01-photo-results.png")

    first = captions(page)[1]
    page.locator("#results .thumbnail-item").nth(1).click()
    expect(page.locator("#status")).to_contain_text("1 pick saved", timeout=TURN_TIMEOUT_MS)
    picked = caption_id(first)
    expect(page.locator("#state")).to_contain_text(f"ref #{picked}")
    logged = records(app_server.log)[before:]
    assert len(logged) == 1
    assert logged[0]["reference"]["kind"] == "upload" and logged[0]["reference"]["stored"] is None
    assert logged[0]["picked"]["id"] == picked and logged[0]["picked"]["rank"] == 2
    assert logged[0]["instructions"] == [] and logged[0]["mode"] == "image"

    send(page, "make it blue", "blue")
    send(page, "with stripes", "striped")
    expect(page.locator("#state")).to_contain_text(f"ref #{picked}")
    refined = captions(page)
    assert picked not in [caption_id(c) for c in refined]
    assert sum(c.startswith("Blue") for c in refined) >= 6, refined
    assert any(c.startswith("Blue Striped") for c in refined), refined
    screenshot(page, "02-refined-twice.png")

    rank = next(i for i, c in enumerate(refined) if c.startswith("Blue Striped"))
    second = caption_id(refined[rank])
    page.locator("#results .thumbnail-item").nth(rank).click()
    expect(page.locator("#status")).to_contain_text("2 picks saved", timeout=TURN_TIMEOUT_MS)
    logged = records(app_server.log)[before:]
    assert len(logged) == 2
    assert logged[1]["reference"] == {"kind": "catalog", "id": picked}
    assert logged[1]["instructions"] == ["make it blue", "with stripes"]
    assert logged[1]["picked"]["id"] == second and logged[1]["picked"]["rank"] == rank + 1
    assert logged[1]["composed_text"].endswith("make it blue , with stripes")
    assert logged[0]["session"] == logged[1]["session"]
    expect(page.locator("#state")).to_contain_text(f"ref #{second}")

    page.locator("#shortlist-add").click()
    expect(page.locator("#shortlist")).to_contain_text(second, timeout=TURN_TIMEOUT_MS)
    page.locator("#shortlist-export").click()
    expect(page.locator("#shortlist-file")).to_contain_text("shortlist", timeout=TURN_TIMEOUT_MS)
    screenshot(page, "03-second-pick-shortlist.png")
    context.close()
    assert first_answer < FIRST_ANSWER_S, f"first answer took {first_answer:.1f}s"


def test_two_sessions_never_see_each_other(app_server, browser):
    from playwright.sync_api import expect

    a_context = browser.new_context(viewport=VIEWPORT)
    b_context = browser.new_context(viewport=VIEWPORT)
    a, b = open_app(a_context, app_server.url), open_app(b_context, app_server.url)
    a.locator("#msg textarea").fill("a red dress")
    b.locator("#msg textarea").fill("a blue skirt")
    a.locator("#msg textarea").press("Enter")
    b.locator("#msg textarea").press("Enter")
    expect(a.locator("#state")).to_contain_text("dress", timeout=TURN_TIMEOUT_MS)
    expect(b.locator("#state")).to_contain_text("skirt", timeout=TURN_TIMEOUT_MS)
    expect(a.locator("#results .thumbnail-item")).to_have_count(12, timeout=TURN_TIMEOUT_MS)
    expect(b.locator("#results .thumbnail-item")).to_have_count(12, timeout=TURN_TIMEOUT_MS)
    assert "skirt" not in a.locator("#state").inner_text() and "red" not in b.locator("#state").inner_text()
    assert sum(c.startswith("Red") for c in captions(a)) > 6 and sum(c.startswith("Blue") for c in captions(b)) > 6

    before = len(records(app_server.log))
    b.locator("#results .thumbnail-item").nth(0).click()
    expect(b.locator("#status")).to_contain_text("1 pick saved", timeout=TURN_TIMEOUT_MS)
    send(a, "undo", "nothing yet")
    expect(a.locator("#status")).to_contain_text("No picks yet")
    expect(b.locator("#state")).to_contain_text("ref #")
    assert "Starting over" not in b.locator("#chat").inner_text()
    assert "a blue skirt" not in a.locator("#chat").inner_text()
    screenshot(b, "04-second-session.png")
    logged = records(app_server.log)[before:]
    assert len(logged) == 1 and logged[0]["instructions"] == ["a blue skirt"]
    a_context.close()
    b_context.close()


@pytest.mark.parametrize("locale, page_words, message, reply_words", [
    ("ja-JP", {"#undo": "元に戻す", "#none-of-these": "どれも違う", "#state": "検索条件：まだありません",
               "#model-version": "ふつうの言葉で絞り込んでください", "#status": "まだ選択していません"},
     "赤いストライプのワンピース", {"#state": "検索条件：赤ストライプワンピース", "#chat": "件表示しています"}),
    ("en-US", {"#undo": "Undo", "#none-of-these": "None of these", "#state": "searching for: nothing yet",
               "#model-version": "refine in plain words", "#status": "No picks yet"},
     "a red striped dress", {"#state": "searching for:redstripeddress",
                             "#chat": "Here are 12 items for red + striped"}),
])
def test_the_page_and_the_replies_follow_the_browsers_language(app_server, browser, locale, page_words, message,
                                                               reply_words):
    """Gradio's i18n translates the page for a ja-JP browser; the server answers in the language the browser's
    Accept-Language asks for. An en-US browser gets the English page and replies."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT, locale=locale)
    page = open_app(context, app_server.url)
    for selector, words in page_words.items():
        expect(page.locator(selector)).to_contain_text(words, timeout=TURN_TIMEOUT_MS)
    page.locator("#msg textarea").fill(message)
    page.locator("#msg textarea").press("Enter")
    expect(page.locator("#results .thumbnail-item")).to_have_count(12, timeout=TURN_TIMEOUT_MS)
    for selector, words in reply_words.items():
        expect(page.locator(selector)).to_contain_text(words, timeout=TURN_TIMEOUT_MS)
    if locale == "ja-JP":
        values = [c.split(" · ")[-1] for c in captions(page)]
        assert sum(v.startswith("赤") for v in values) > 6 and any("ストライプ" in v for v in values), values
        page.locator("#category input").click()
        expect(page.locator("#category [role=listbox]")).to_contain_text("ワンピース", timeout=TURN_TIMEOUT_MS)
        page.keyboard.press("Escape")
    else:
        values = [c.split(" · ")[-1] for c in captions(page)]
        assert sum(v.startswith("red") for v in values) > 6 and any("striped" in v for v in values), values
    context.close()
