"""A real ``circhat serve`` in a subprocess, and ``gradio_client`` sessions against it.

Shared by the tests that need the server as a user starts it (``test_crash_safety``, ``test_server_access``,
``test_load``, the app fixtures' free port) and by the load benchmark (``python -m benchmarks.load``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A ``circhat serve`` subprocess: started, waited for, killed (SIGKILL) or stopped."""

    process: subprocess.Popen
    url: str
    output: Path

    @classmethod
    def start(cls, db: Path, *, log: Path, composer: Path | None = None, port: int | None = None,
              env: dict[str, str] | None = None, args: Sequence[str] = (), timeout: float = 180.0) -> ServerProcess:
        """Start the server exactly as a user would (``python -m ui.cli serve``) and wait until it answers."""
        port = port or free_port()
        command = [sys.executable, "-m", "ui.cli", "serve", "--db", str(db), "--log", str(log), "--port", str(port),
                   *(["--composer", str(composer)] if composer else []), *args]
        environment = {k: v for k, v in os.environ.items() if k not in ("CIRCHAT_LLM", "CIRCHAT_AUTH")}
        environment.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        environment.update(env or {})
        fd, name = tempfile.mkstemp(prefix="circhat-serve-", suffix=".log")
        output = Path(name)
        with os.fdopen(fd, "wb") as sink:
            process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT)
        server = cls(process, f"http://127.0.0.1:{port}/", output)
        server.wait_ready(timeout)
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"server not up after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.output.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.output.unlink(missing_ok=True)


def connect(url: str, auth: tuple[str, str] | None = None):
    """A ``gradio_client`` session (one browser tab), with the price slider's "no limit" value looked up."""
    from gradio_client import Client

    client = Client(url, auth=auth, verbose=False, analytics_enabled=False, download_files=False)
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/send"]["parameters"]
    client.no_price_limit = next(p["parameter_default"] for p in params if p["parameter_name"] == "price")
    return client


def reply_details(outputs: Sequence[Any]) -> dict:
    return next(o for o in outputs if isinstance(o, dict) and "results" in o)
