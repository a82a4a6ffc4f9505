"""Durable files: whole-file replacement and line appends that survive a killed process and concurrent writers.

A replacement writes a temp file beside the target, fsyncs it, renames it over
the target and fsyncs the folder, so a reader sees the old file or the new one,
never half of one, and the rename itself outlives a crash. An append takes an
exclusive ``flock`` on the file now at the path (re-opening when a replacement
swapped the file while it waited), closes off a torn last line a killed writer
may have left, writes the whole line and, when asked, fsyncs.

The lowest layer: it knows nothing of what the files hold, so ``assistant`` and
``training`` may both build on it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` (``.name.<random>.tmp``), so writers never share a temp file."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: ``os.write`` may write fewer than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_all(fd: int) -> bytes:
    """The whole file behind ``fd`` by ``pread``, so the fd's offset (an append fd's included) is left alone."""
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries: a created, renamed or removed file is only durable once its folder is."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replace_locked(path: Path, data: bytes, mode: int = 0o666) -> int:
    """Replace ``path`` by temp + fsync + rename + folder fsync; returns the new file's fd, still ``flock``ed.

    The lock is taken before the rename, so an appender that opens the new file
    waits until the caller has finished with it (and closed the fd).
    """
    path = Path(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode & 0o777)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write_all(fd, data)
        os.fsync(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def write_atomically(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` durably, so a reader sees the old or the new file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(replace_locked(path, data, mode))


def lock_current(path: Path, create: bool = True) -> int | None:
    """An fd on the file now at ``path``, exclusively ``flock``ed (None if absent and not ``create``).

    A replacement (``replace_locked``) renames a new file over the path while
    holding the lock, so a writer that waited on the old inode must notice and
    reopen, or its append would land in a file no one reads.
    """
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(path, flags, 0o640)
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            return fd
        os.close(fd)


def append_line(path: Path, line: bytes, durable: bool) -> None:
    """Append one complete line under the lock, closing off a torn last line first; ``durable`` fsyncs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = lock_current(path)
    assert fd is not None  # create=True either returns an fd or raises
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        write_all(fd, line)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created and durable:
        fsync_dir(path.parent)
