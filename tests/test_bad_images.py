"""The bad-image corpus (tests/bad_images.py) through all three doors: the decoder, catalog ingest into a real
LanceDB folder, and uploads to a running server. Each file is handled correctly or refused with its reason; no
partial rows; the session and the server go on."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from assistant.uploads import UploadStore
from retrieval.image_io import ImageRejected, load_image
from retrieval.ingest import ingest
from retrieval.store import CatalogStore
from tests.bad_images import PAYLOAD, corpus

pytest_plugins = ("tests.fixtures_app",)
CASES = corpus()


def test_corpus_is_broad():
    assert len(CASES) >= 12 and len({c.kind for c in CASES}) == len(CASES)
    assert sum(c.accepted for c in CASES) >= 8 and sum(not c.accepted for c in CASES) >= 8


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_decoder_handles_each_case(case):
    if case.accepted:
        image = load_image(case.data)
        assert image.mode == "RGB" and not image.info and len(image.getexif()) == 0
        assert case.check(image), case.kind
    else:
        with pytest.raises(ImageRejected) as err:
            load_image(case.data)
        assert case.reject in err.value.reason


def test_per_image_time_limit():
    big = Image.effect_noise((3000, 3000), 60).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, format="PNG", compress_level=1)
    start = time.perf_counter()
    with pytest.raises(ImageRejected, match=r"longer than the 0\.001 s limit"):
        load_image(buffer.getvalue(), timeout=0.001)
    assert time.perf_counter() - start < 0.5
    assert load_image(buffer.getvalue()).size == (3000, 3000)


def test_uploads_keep_only_clean_pixels(tmp_path):
    store = UploadStore(tmp_path / "uploads")
    for case in (c for c in CASES if c.accepted):
        reference = store.add(case.data)
        stored = Path(reference.path).read_bytes()
        assert PAYLOAD not in stored and b"GPS" not in stored and b"Comment" not in stored
        with Image.open(Path(reference.path)) as image:
            assert image.format == "PNG" and len(image.getexif()) == 0 and not image.text
    assert sorted(p.suffix for p in (tmp_path / "uploads").iterdir()) == [".png"] * len(
        {p.name for p in (tmp_path / "uploads").iterdir()})


def test_ingest_skips_and_reports_each_bad_file(world, backbone, tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    for item in world.items[:4]:
        shutil.copy(world.image_path(item), folder / f"good-{item.id}.png")
    for case in CASES:
        (folder / case.filename).write_bytes(case.data)
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, progress=False, batch_size=4)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    expected_rejects = {c.filename: c.reject for c in CASES if not c.accepted}
    assert set(reasons) == set(expected_rejects)
    for name, phrase in expected_rejects.items():
        assert phrase in reasons[name], (name, reasons[name])
    ids = sorted(CatalogStore.open(db).snapshot(["id"])["id"].to_pylist())
    assert ids == sorted([f"good-{i.id}.png" for i in world.items[:4]] + [c.filename for c in CASES if c.accepted])
    again = ingest(folder, backbone, db, progress=False, batch_size=4)
    assert again.added == 0 and again.updated == 0 and len(again.failures) == len(expected_rejects)
    assert len(CatalogStore.open(db)) == len(ids)


@pytest.mark.slow
def test_uploads_to_a_running_server(app_server, tmp_path):
    from gradio_client import handle_file

    from tests.test_app_api import client, details, send

    c = client(app_server.url)
    before = send(c, "a red dress")
    for case in CASES:
        path = tmp_path / case.filename
        path.write_bytes(case.data)
        if case.kind == "over the byte limit":
            with pytest.raises(Exception, match=r"(?i)size|large|exceed"):
                c.predict({"text": "", "files": [handle_file(str(path))]}, "any", c.no_price_limit, api_name="/send")
            continue
        reply = details(c.predict({"text": "", "files": [handle_file(str(path))]}, "any", c.no_price_limit,
                                  api_name="/send"))
        if case.accepted:
            assert reply["ok"] and reply["results"], case.kind
            c = client(app_server.url)
            before = send(c, "a red dress")
        else:
            assert not reply["ok"] and "could not use that image" in reply["message"], case.kind
            assert case.reject in reply["message"], (case.kind, reply["message"])
            assert reply["state"] == before["state"]
            assert [r["id"] for r in reply["results"]] == [r["id"] for r in before["results"]]
    after = send(c, "with stripes")
    assert after["ok"] and after["chips"] == ["red", "dress", "striped"]
