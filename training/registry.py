"""The model registry: every composer version on disk, where it came from, how it scored, which one is live.

Layout under the registry folder (default ``$CIRCHAT_HOME/models``)::

    active.json            {backbone identity: version id}, replaced atomically (temp + fsync + rename)
    <id>/version.json      the entry: id, parent, created, backbone, composer folder, training data + counts, metrics
    <id>/composer/         the checkpoint (composer.json + mapper/adapter weights), tagged with the version id
    <id>/report.json       a fine-tune's before/after report (parent and new version side by side)

A version is a *composer* (stage-1 mapper + stage-2 adapters) for one backbone.
What needs re-embedding the catalog and what does not:

* **Backbone change** (another open_clip model or other weights): every stored
  embedding and patch token is the backbone's output, so the catalog must be
  re-embedded (``circhat ingest --reembed``). The store records the backbone
  identity and refuses a mismatched encoder (``ModelMismatch``), and so does
  ``use``/``load`` here when given the store's identity.
* **Composer change** (a new mapper or new stage-2 adapters, i.e. every
  fine-tune): no re-embedding. The store keeps backbone features only; the
  composition happens at query time, so switching versions is instant and
  rolling back is ``circhat models use PARENT``.

"Active" is per backbone identity: the app serving a catalog asks for the
active version of the backbone that catalog was embedded with. A version whose
fine-tune was worse than its parent on held-out picks, or forgot (lost more than
the guard allows of its parent's R@1 on the fixed benchmark queries), is refused
activation unless forced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.backbone import Backbone
from retrieval.data_home import default_data_dir
from retrieval.durable_files import write_atomically
from retrieval.query_encoder import CHECKPOINT_FILE, ModelMismatch, QueryEncoder

ACTIVE_FILE = "active.json"
ENTRY_FILE = "version.json"
REPORT_FILE = "report.json"
COMPOSER_DIR = "composer"
LOCK_FILE = ".lock"
VERSION_KEY = "registry_version"
WEIGHT_FILES = ("mapper.safetensors", "adapter.safetensors")


class UnknownVersion(KeyError):
    """No version with that id in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class WorseVersion(ValueError):
    """Activating a version its own fine-tune measured as worse than its parent on held-out picks, or forgetting."""


REFUSED_VERDICTS = ("worse", "forgets")


@dataclass
class Version:
    """One registry entry."""

    id: str
    parent: str | None
    created: str
    backbone: str
    backbone_spec: str
    composer: str = COMPOSER_DIR
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """"root", "better", "same", "worse", "forgets" or "untested": how the version compared with its parent
        (``training.finetune.verdict``)."""
        return str(self.metrics.get("verdict", "root" if self.parent is None else "untested"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_registry_dir() -> Path:
    """Where model versions live unless told otherwise: ``$CIRCHAT_HOME/models``."""
    return default_data_dir() / "models"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def weights_digest(folder: Path) -> str:
    """What a composer checkpoint computes: a digest of its weight files (the same weights, the same digest)."""
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = Path(folder) / name
        if path.exists():
            h.update(name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Registry:
    """Versions in one folder; every write takes the folder's lock, every reader sees whole files."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_registry_dir()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def versions(self) -> list[Version]:
        """Every version, oldest first."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in self.root.glob(f"*/{ENTRY_FILE}"):
            if not entry.parent.name.startswith("."):
                out.append(Version(**json.loads(entry.read_text())))
        return sorted(out, key=lambda v: (_number(v.id), v.created, v.id))

    def get(self, version_id: str) -> Version:
        path = self.root / version_id / ENTRY_FILE
        if not version_id or "/" in version_id or not path.is_file():
            known = ", ".join(v.id for v in self.versions()) or "none yet"
            raise UnknownVersion(f"no model version {version_id!r} in {self.root} (known: {known})")
        return Version(**json.loads(path.read_text()))

    def composer_dir(self, version: Version | str) -> Path:
        version = self.get(version) if isinstance(version, str) else version
        return self.root / version.id / version.composer

    def active_ids(self) -> dict[str, str]:
        path = self.root / ACTIVE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def active(self, backbone: str) -> Version | None:
        """The active version for a backbone identity, if one is set."""
        version_id = self.active_ids().get(backbone)
        return self.get(version_id) if version_id else None

    def use(self, version_id: str, force: bool = False, store_identity: str | None = None) -> Version:
        """Make ``version_id`` the active version for its backbone.

        Refused (``ModelMismatch``) when ``store_identity`` names another backbone than the
        version's, and (``WorseVersion``) when the version lost to its parent or forgot, unless ``force``.
        """
        version = self.get(version_id)
        check_backbone(version, store_identity)
        if version.verdict in REFUSED_VERDICTS and not force:
            why = "was worse than" if version.verdict == "worse" else "forgot what it knew compared with"
            raise WorseVersion(f"version {version.id} {why} its parent {version.parent} ({_summary(version.metrics)})"
                               f"; pass --force to activate it anyway")
        with self._locked():
            active = self.active_ids()
            active[version.backbone] = version.id
            write_json(self.root / ACTIVE_FILE, active)
        return version

    def add(self, composer: Path, parent: str | None, training: dict[str, Any],
            metrics: dict[str, Any] | None = None, report: dict[str, Any] | None = None) -> Version:
        """Copy a saved composer checkpoint in as a new version (not activated)."""
        with self._locked():
            return self._add(composer, parent, training, metrics, report)

    def ensure_root(self, composer: Path) -> Version:
        """The version of a shipped composer (the demo's), registered as a root version on first use."""
        digest = weights_digest(composer)
        with self._locked():
            for version in self.versions():
                if version.parent is None and version.training.get("weights_digest") == digest:
                    return version
            return self._add(composer, None, {"kind": "shipped", "source": str(Path(composer).resolve())},
                             {"verdict": "root"}, None)

    def _add(self, composer: Path, parent: str | None, training: dict[str, Any], metrics: dict[str, Any] | None,
             report: dict[str, Any] | None) -> Version:
        meta = json.loads((Path(composer) / CHECKPOINT_FILE).read_text())
        digest = weights_digest(composer)
        number = max((_number(v.id) for v in self.versions()), default=0) + 1
        version_id = f"v{number}-{digest[:8]}"
        staging = self.root / f".{version_id}.{secrets.token_hex(4)}.partial"
        shutil.copytree(composer, staging / COMPOSER_DIR)
        write_json(staging / COMPOSER_DIR / CHECKPOINT_FILE, {**meta, VERSION_KEY: version_id}, sort_keys=False)
        version = Version(id=version_id, parent=parent, created=utc_now(), backbone=meta["backbone"],
                          backbone_spec=str(meta.get("backbone_spec", "")),
                          training={**training, "weights_digest": digest}, metrics=dict(metrics or {}))
        if report is not None:
            write_json(staging / REPORT_FILE, {"version": version_id, **report}, sort_keys=False)
        write_json(staging / ENTRY_FILE, version.to_dict(), sort_keys=False)
        staging.replace(self.root / version_id)
        return version

    def load(self, version: Version | str, backbone: Backbone, store_identity: str | None = None) -> QueryEncoder:
        """The version's query encoder on ``backbone`` (adapters injected into it in place)."""
        version = self.get(version) if isinstance(version, str) else version
        check_backbone(version, store_identity)
        check_backbone(version, backbone.identity, what="loaded backbone")
        return QueryEncoder.load(self.composer_dir(version), backbone)


def write_json(path: Path, value: object, sort_keys: bool = True) -> None:
    """A registry file, written so a reader never sees half of it."""
    write_atomically(path, (json.dumps(value, indent=2, sort_keys=sort_keys) + "\n").encode())


def check_backbone(version: Version, identity: str | None, what: str = "catalog") -> None:
    """Refuse a version trained on another backbone than the one the catalog (or the loaded model) uses."""
    if identity is None or identity == version.backbone:
        return
    raise ModelMismatch(
        f"model version {version.id} was trained on backbone {version.backbone} ({version.backbone_spec}), but the "
        f"{what} uses backbone {identity}. A composer only works on the backbone it was trained on: use a version "
        f"for that backbone (`circhat models list`), or re-embed the catalog with this version's backbone "
        f"(`circhat ingest DIR --reembed --model ...`).")


def register_build(registry: Registry, composer: Path, training: dict[str, Any] | None = None,
                   metrics: dict[str, Any] | None = None) -> tuple[Version, Version]:
    """(the root version of a built composer, the version now active for its backbone).

    The composer is added as a root version and made active the first time its weights are seen (``circhat
    build``, ``circhat demo``); a rebuild that trained nothing new keeps whichever version is active, a fine-tuned
    child say, rather than resetting it to the root."""
    weights = weights_digest(composer)
    found = next((v for v in registry.versions() if v.parent is None and v.training.get("weights_digest") == weights),
                 None)
    if found is None:
        added = registry.add(composer, None, training or {"kind": "build"}, metrics or {"verdict": "root"})
        return added, registry.use(added.id)
    active = registry.active(found.backbone)
    return found, active if active is not None else registry.use(found.id)


def _number(version_id: str) -> int:
    head = version_id.split("-", 1)[0].removeprefix("v")
    return int(head) if head.isdigit() else 0


def learning_figures(metrics: dict[str, Any]) -> dict[str, str]:
    """The two figures a fine-tuned version is judged by, as "parent -> new" text ("" where not measured):
    ``picks``, choice@1 on held-out picks (did it learn the customers' words), and ``benchmark``, R@1 on the
    fixed synthetic benchmark queries (did it keep what it knew; the forgetting guard's figure)."""
    picks = (metrics.get("heldout_picks") or {})
    before, after = picks.get("parent") or {}, picks.get("new") or {}
    guard = metrics.get("guard") or {}
    return {
        "picks": f"{before['choice@1']:.1f} -> {after['choice@1']:.1f}" if before.get("choices") else "",
        "benchmark": f"{guard['parent']:.1f} -> {guard['new']:.1f} ({guard['change']:+.1f})"
        if guard.get("parent") is not None and guard.get("new") is not None else "",
    }


def _summary(metrics: dict[str, Any]) -> str:
    figures = learning_figures(metrics)
    if not any(figures.values()):
        return "no held-out comparison"
    return "; ".join(f"{name} {text}" for name, text in (("held-out picks choice@1", figures["picks"]),
                                                          ("benchmark R@1", figures["benchmark"])) if text)
