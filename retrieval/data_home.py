"""Where circhat keeps its data (worlds, backbones, stores, models, logs) unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "CIRCHAT_HOME"


def default_data_dir() -> Path:
    """``$CIRCHAT_HOME``, else ``~/.cache/circhat``: one root every layer agrees on without knowing the others."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "circhat"
