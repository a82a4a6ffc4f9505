"""Uploaded reference photos: sanitised once, kept by content hash in a private temp folder.

Every upload goes through ``retrieval.image_io.load_image`` (format allowlist,
decompression-bomb refusal, EXIF orientation, RGB, metadata stripped); only the
re-encoded PNG is kept, so the original bytes and their metadata never reach the
search, the chat or the triplet log.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

from assistant.conversation import Reference
from retrieval.image_io import load_image

MAX_SIDE = 1024


class UploadStore:
    """Sanitised uploads in ``folder`` (a fresh temp folder by default), named by their sha256."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="circhat-uploads-"))
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, source: str | Path | bytes) -> Reference:
        """Sanitise an uploaded file; raises ``ImageRejected`` with a plain reason if it is not a usable image."""
        image = load_image(source)
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
        digest = hashlib.sha256(png).hexdigest()
        path = self.folder / f"{digest}.png"
        if not path.exists():
            part = path.with_suffix(".part")
            part.write_bytes(png)
            part.replace(path)
        return Reference.upload(digest, str(path))

    def png(self, sha256: str) -> bytes | None:
        """The sanitised bytes of an earlier upload, or None if they are gone."""
        path = self.folder / f"{sha256}.png"
        return path.read_bytes() if path.is_file() else None
