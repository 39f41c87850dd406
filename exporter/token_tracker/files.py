"""Private, symlink-refusing file primitives for the ledger."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from .errors import LedgerCorruptError, LedgerError

log = logging.getLogger("token_tracker.ledger")

_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_CHUNK = 16 << 20


def stamp() -> str:
    """The UTC time for names of files set aside."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def unique_name(name: str) -> str:
    """``name``, or ``name.N`` when it exists: never overwrite."""
    candidate, n = name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{name}.{n}"
    return candidate


def open_private(path: str, flags: int, what: str) -> int:
    """``os.open`` creating 0600 and refusing symlinks; errors name ``what`` and the path."""
    try:
        return os.open(path, flags | _NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LedgerError(f"{what} {path} is a symlink; refusing to follow it") from None
        if exc.errno == errno.ENOENT:
            raise
        raise LedgerError(f"{what} {path}: {exc.strerror}") from None


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_all(fd: int, offset: int = 0) -> bytes:
    """Everything from ``offset`` to the end of the file."""
    chunks: list[bytes] = []
    while True:
        chunk = os.pread(fd, _READ_CHUNK, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def write_fully(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a private temp file, fsync, rename, fsync dir."""
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "temporary file")
    try:
        write_fully(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def set_aside_corrupt(path: str, problem: str) -> LedgerCorruptError:
    """Rename a damaged file, byte for byte, to ``.corrupt-<time>``; the error to raise."""
    aside = unique_name(f"{path}.corrupt-{stamp()}")
    os.rename(path, aside)
    log.error("ledger file %s is damaged (%s); moved it to %s", path, problem, aside)
    return LedgerCorruptError(
        f"ledger file {path} is damaged ({problem}). It was moved, unchanged, to "
        f"{aside}. Nothing was overwritten; restore or repair that file, or start "
        "again and the tracker will continue without its records.",
        path=path,
        preserved_as=aside,
    )


def keep_torn(journal_path: str, tail: bytes) -> str:
    """Keep a torn, never-acknowledged journal tail in a private ``.torn-<time>`` file."""
    aside = unique_name(f"{journal_path}.torn-{stamp()}")
    fd = open_private(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "torn-tail file")
    try:
        write_fully(fd, tail)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "journal %s ended in a torn %d-byte record that was never acknowledged; kept it in %s",
        journal_path,
        len(tail),
        aside,
    )
    return aside
