"""Files of a generated catalog (the second catalog, the fine-detail one): each written whole, the marker last.

A killed generator leaves no half-written image or CSV behind, and a catalog counts as complete only when the
marker naming its generator's config is there, so a rerun with the same config does nothing and one with
another config writes the catalog anew.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over ``path``, so readers see the old file or the new one."""
    part = path.with_name(path.name + ".tmp")
    part.write_bytes(data)
    os.replace(part, path)


def config_marker(config: Any) -> str:
    """The marker text of a catalog generated from the dataclass ``config``."""
    return json.dumps({"config": asdict(config)}, sort_keys=True) + "\n"
