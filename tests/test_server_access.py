"""What a running server lets a browser or an API caller read: catalog images and its own temp files, nothing
else. A secret is planted outside the catalog (next to a catalog image that a symlink brought in, behind a
symlinked folder, and as a symlink target); path traversal in every spelling (``../``, absolute paths,
``%2e%2e%2f``, double encoding, backslashes, NUL, URL forms) through every file route must never return it,
and file paths smuggled into API payloads are refused. ``circhat serve`` binds 127.0.0.1 by default and, with
``CIRCHAT_AUTH``, refuses UI, API and files without a login."""

from __future__ import annotations

import csv
import http.client
import json
import os
import secrets
import shutil
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.server_harness import ServerProcess, connect, free_port, reply_details
from ui.serve import load_encoder, make_assistant, serve

pytestmark = pytest.mark.slow

FILE_ROUTES = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/")
CATALOG_SIZE = 24


class Shop:
    """A catalog folder with hostile symlinks, the secrets outside it, and the server on top."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "shop" / "images"
        self.outside = root / "outside"
        self.token = f"SECRET-{secrets.token_hex(12)}"
        self.secret = self.outside / "secret.txt"
        self.notes = self.outside / "private" / "notes.txt"
        self.db = root / "db"
        self.log = root / "triplets" / "triplets.jsonl"
        self.url = ""
        self.port = 0


@pytest.fixture(scope="module")
def shop(world, backbone, tmp_path_factory):
    """24 catalog images plus: ``linked.png`` (a CSV row whose file is a symlink to an image outside, in a folder
    that also holds a secret), ``leak.png``/``leak.txt`` (symlinks to the secret) and ``outdir`` (a symlinked
    folder); served in-process on a free port. Ingest refuses both symlinked rows: their files are outside the
    catalog folder."""
    from retrieval.ingest import ingest

    s = Shop(tmp_path_factory.mktemp("access"))
    s.images.mkdir(parents=True)
    (s.outside / "private").mkdir(parents=True)
    for path in (s.secret, s.notes):
        path.write_text(s.token)
    shutil.copy(world.image_path(world.items[100]), s.outside / "photo.png")
    shutil.copy(world.image_path(world.items[101]), s.outside / "private" / "face.png")
    with open(world.catalog_csv, newline="") as f:
        rows = list(csv.DictReader(f))[:CATALOG_SIZE]
    for row in rows:
        shutil.copy(world.root / row["file"], s.images / Path(row["file"]).name)
        row["file"] = f"images/{Path(row['file']).name}"
    extra = [{**rows[0], "id": "linked", "file": "images/linked.png"},
             {**rows[1], "id": "leak", "file": "images/leak.png"}]
    (s.images / "linked.png").symlink_to(s.outside / "photo.png")
    (s.images / "leak.png").symlink_to(s.secret)
    (s.images / "leak.txt").symlink_to(s.secret)
    (s.images / "outdir").symlink_to(s.outside, target_is_directory=True)
    with open(s.root / "shop" / "catalog.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + extra)
    report = ingest(s.root / "shop", backbone, s.db, metadata=s.root / "shop" / "catalog.csv", progress=False)
    assert report.added == CATALOG_SIZE
    assert {f.id: "outside the catalog folder" in f.reason for f in report.failures} == {"linked": True, "leak": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIRCHAT_LOG_SALT", "access-salt")
        store, encoder = load_encoder(s.db, "catalog", None, None, None, "cpu")
        s.port = free_port()
        served = serve(make_assistant(store, encoder, s.log), port=s.port, block=False, quiet=True)
    s.url = served.url.rstrip("/")
    yield s
    served.close()


def request(port: int, raw_path: str, body: dict | None = None) -> tuple[int, bytes]:
    """GET (or POST ``body`` as JSON) exactly this request target: no client-side normalisation of ``..``, ``//``
    or ``%``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if body is None:
            connection.request("GET", raw_path)
        else:
            connection.request("POST", raw_path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read(2_000_000)
    finally:
        connection.close()


def get(shop: Shop, raw_path: str) -> tuple[int, bytes]:
    return request(shop.port, raw_path)


def spellings(path: str) -> list[str]:
    """One path written the ways a traversal attempt would write it."""
    encoded = path.replace(".", "%2e").replace("/", "%2f")
    return [path, encoded, encoded.replace("%", "%25"), path.replace("/", "\\"), path.replace("/", "//"),
            path.replace("/", "/./"), urllib.parse.quote(path, safe=""), path + "%00.png"]


def attempts(shop: Shop) -> list[str]:
    secret, images = str(shop.secret), str(shop.images)
    relative = os.path.relpath(shop.secret, os.getcwd())
    targets = [
        secret, str(shop.notes), f"{images}/../../outside/secret.txt", f"{images}/leak.txt", f"{images}/leak.png",
        f"{images}/outdir/secret.txt", f"{images}/outdir/private/notes.txt", f"{images}/linked.png/../secret.txt",
        str(shop.outside / "private" / "notes.txt"), relative, "../" * 12 + secret.lstrip("/"),
        str(shop.log), str(shop.db), "/etc/passwd", "/proc/self/environ", "pyproject.toml",
    ]
    paths = [route + spelling for route in FILE_ROUTES for target in targets for spelling in spellings(target)]
    self_url = f"http://127.0.0.1:{shop.port}/gradio_api/file={secret}"
    paths += [f"/gradio_api/file={self_url}", f"/gradio_api/file={urllib.parse.quote(self_url, safe='')}",
              f"/gradio_api/proxy={self_url}", f"/static/{'../' * 12}{secret.lstrip('/')}",
              f"/assets/{'%2e%2e%2f' * 12}{secret.lstrip('/')}", f"/static/{'..%5c' * 12}{secret.lstrip('/')}",
              f"/gradio_api/file=file://{secret}"]
    return paths


def test_catalog_images_and_the_apps_own_files_are_served(shop):
    """The positive control: the guard lets through exactly what the app needs."""
    first = sorted(shop.images.glob("0*.png"))[0]
    status, body = get(shop, f"/gradio_api/file={first}")
    assert status == 200 and body.startswith(b"\x89PNG")
    status, _ = get(shop, f"/gradio_api/file={shop.outside / 'photo.png'}")
    assert status in (403, 404), "an image outside the catalog folder, refused at ingest, is not served"
    client = connect(shop.url)
    outputs = client.predict({"text": "a red dress", "files": []}, "any", client.no_price_limit, api_name="/send")
    urls = [u for u in json.dumps(outputs[1]).split('"') if "/gradio_api/file=" in u]
    assert len(urls) == len(reply_details(outputs)["results"]) > 0
    for url in urls[:4]:
        status, body = get(shop, urllib.parse.urlsplit(url)._replace(scheme="", netloc="").geturl())
        assert status == 200 and body.startswith(b"\x89PNG"), url


def test_no_traversal_attempt_returns_a_file_outside_the_catalog(shop):
    leaked, served = [], []
    tried = attempts(shop)
    for path in tried:
        status, body = get(shop, path)
        if shop.token.encode() in body or b"root:" in body:
            leaked.append(path)
        if status == 200 and any(path.startswith(r) for r in FILE_ROUTES):
            served.append(path)
    assert not leaked, leaked[:5]
    assert not served, served[:5]
    print(f"\n{len(tried)} traversal attempts: none returned a file outside the catalog")


def queue_call(shop: Shop, message: dict) -> dict:
    """A raw ``/send`` through the queue protocol, so the file path reaches the server exactly as written."""
    status, body = get(shop, "/config")
    assert status == 200
    config = json.loads(body)
    dependency = next(d for d in config["dependencies"] if d.get("api_name") == "send")
    price = next(c["props"].get("value") for c in config["components"] if c["id"] == dependency["inputs"][3])
    session = uuid.uuid4().hex
    payload = json.dumps({"data": [message, None, "any", price], "event_data": None, "fn_index": dependency["id"],
                          "trigger_id": None, "session_hash": session}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", shop.port, timeout=60)
    try:
        connection.request("POST", "/gradio_api/queue/join", payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        joined = response.read()
        if response.status != 200:
            return {"success": False, "status": response.status, "raw": joined.decode(errors="replace")}
        connection.request("GET", f"/gradio_api/queue/data?session_hash={session}")
        stream = connection.getresponse()
        seen = b""
        while True:
            line = stream.fp.readline()
            if not line:
                return {"success": False, "raw": seen.decode(errors="replace")}
            seen += line
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if event.get("msg") == "process_completed":
                    return {**event, "raw": seen.decode(errors="replace")}
    finally:
        connection.close()


META = {"_type": "gradio.FileData"}
SMUGGLED = {
    "secret as FileData": lambda s: {"path": str(s.secret), "meta": META},
    "secret without meta": lambda s: {"path": str(s.secret)},
    "outside image as FileData": lambda s: {"path": str(s.outside / "private" / "face.png"), "meta": META,
                                            "orig_name": "face.png"},
    "outside image without meta": lambda s: {"path": str(s.outside / "private" / "face.png")},
    "relative climb": lambda s: {"path": "../" * 12 + str(s.outside / "private" / "face.png").lstrip("/"),
                                 "meta": META},
}


@pytest.mark.parametrize("name", list(SMUGGLED))
def test_server_paths_in_an_api_payload_are_refused(shop, name):
    """A caller names a file on the server instead of uploading one: the turn fails or is refused, the secret
    never comes back, the outside image never becomes the reference, and the server goes on."""
    event = queue_call(shop, {"text": "make it blue", "files": [SMUGGLED[name](shop)]})
    assert shop.token not in event["raw"]
    if event.get("success"):
        details = reply_details(event["output"]["data"])
        assert not details["ok"] or not details["state"].startswith("searching for: your photo"), details
    client = connect(shop.url)
    assert reply_details(client.predict({"text": "a dress", "files": []}, "any", client.no_price_limit,
                                        api_name="/send"))["ok"]


def listening_addresses(port: int) -> set[str]:
    """Addresses with a listening TCP socket on ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(".".join(str(b) for b in raw[::-1]))
                else:
                    found.add(":".join(raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)))
    return found


def test_cli_server_binds_localhost_and_requires_the_login_from_the_environment(shop, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    logins = tmp_path / "logins"
    logins.write_text("# staff\nann:correct-horse\n")
    server = ServerProcess.start(shop.db, log=tmp_path / "triplets.jsonl",
                                 env={"CIRCHAT_AUTH": str(logins), "CIRCHAT_LOG_SALT": "auth-salt"})
    try:
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        assert listening_addresses(port) == {"127.0.0.1"}
        image = sorted(shop.images.glob("0*.png"))[0]
        for path in ("/config", "/gradio_api/info", f"/gradio_api/file={image}",
                     "/gradio_api/queue/data?session_hash=x"):
            status, body = request(port, path)
            assert status in (401, 403), (path, status, body[:200])
        status, _ = request(port, "/gradio_api/queue/join", {"data": [], "fn_index": 0, "session_hash": "x"})
        assert status in (401, 403)
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(server.url, verbose=False, analytics_enabled=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(server.url, auth=("ann", "wrong"), verbose=False, analytics_enabled=False)
        client = connect(server.url, auth=("ann", "correct-horse"))
        reply = reply_details(client.predict({"text": "a red dress", "files": []}, "any", client.no_price_limit,
                                             api_name="/send"))
        assert reply["ok"] and reply["results"]
    finally:
        server.stop()
