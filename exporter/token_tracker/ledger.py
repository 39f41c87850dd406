"""The on-disk ledger: a JSON snapshot plus an append-only checksummed journal.

Files beside the ledger path ``P`` (see ``state`` and ``journal`` for formats):

* ``P``: the snapshot, replaced atomically (write, fsync, rename) by compaction;
* ``P.journal``: records appended with one ``O_APPEND`` write each;
* ``P.lock``: ``flock``-ed exclusively while opening, recovering and compacting.

Appenders hold a shared ``flock`` on the journal for their one write; compaction
holds it exclusively while it folds the journal into a new snapshot and renames
a fresh journal in. An appender that then finds its journal unlinked reopens
the path, so no record lands in a file nobody reads. Readers follow the journal
from their offset and step to the next generation when theirs was replaced.

Damage is never repaired by overwriting: a snapshot or journal that fails to
load is renamed to ``<name>.corrupt-<UTC time>`` and ``LedgerCorruptError``
is raised. A torn final line, which no caller was ever told was recorded, is
cut off, kept in ``P.journal.torn-<UTC time>`` and counted in the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import journal
from .errors import LedgerCorruptError, LedgerError
from .files import atomic_write, keep_torn, open_private, read_all, set_aside_corrupt
from .pricing import PriceTable
from .snapshot import read_snapshot, write_snapshot
from .state import LedgerState, Snapshot, SnapshotError

log = logging.getLogger(__name__)

DEFAULT_JOURNAL_MAX_BYTES = 4 << 20
_FOLLOW_CHUNK = 8 << 20


class Ledger:
    """One process's handle on a shared ledger. Thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        prices: PriceTable,
        *,
        durability: str = "os",
        journal_max_bytes: int = DEFAULT_JOURNAL_MAX_BYTES,
    ) -> None:
        if durability not in ("os", "fsync"):
            raise ValueError(f"durability must be 'os' or 'fsync', got {durability!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.journal_path = self.path + ".journal"
        self.lock_path = self.path + ".lock"
        self._prices = prices
        self._fsync = durability == "fsync"
        self._max_bytes = journal_max_bytes
        self.lock = threading.RLock()  # guards state and the reader
        self._append_lock = threading.Lock()
        #: Called with each request record read from the journal after opening.
        self.listeners: list[Callable[[list[Any]], None]] = []
        self.state = LedgerState()
        self._generation = 0
        self._rfd = self._wfd = self._lockfd = -1
        self._roffset = 0
        self._lock_depth = 0  # nesting of _exclusive() (under self.lock)
        self._make_dir()
        self._lockfd = open_private(self.lock_path, os.O_RDWR | os.O_CREAT, "lock file")
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- opening and recovery ---------------------------------------------------

    def _make_dir(self) -> None:
        directory = Path(self.path).parent
        missing = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for created in reversed(missing):  # every directory we create is private
            try:
                created.mkdir(mode=0o700)
            except FileExistsError:
                continue
            except OSError as exc:
                raise LedgerError(
                    f"cannot create ledger directory {created}: {exc.strerror}"
                ) from None
            created.chmod(0o700)  # mkdir's mode is filtered by the umask

    @contextlib.contextmanager
    def _exclusive(self, wait: bool = True) -> Iterator[bool]:
        """Hold ``self.lock`` and the lock file's exclusive flock; yields False if busy.

        The flock belongs to the open file, which all threads share, so it is taken
        under ``self.lock`` and counted: a nested holder (compaction catching up
        through ``_load``) must not release it for its caller.
        """
        with self.lock:
            if self._lock_depth == 0:
                try:
                    fcntl.flock(self._lockfd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
            self._lock_depth += 1
            try:
                yield True
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    def _load(self) -> None:
        """Load snapshot and journal under the exclusive lock, recovering a torn tail."""
        with self._exclusive():
            if self._rfd >= 0:
                os.close(self._rfd)
                self._rfd = -1
            snapshot = read_snapshot(self.path, self._prices)
            # _open_journal may fold a stale journal's tail into this state.
            self.state = snapshot.state if snapshot else LedgerState()
            self._open_journal(snapshot)
            self._roffset = 0
            self._read_available(opening=True)

    def _new_journal(self, generation: int) -> None:
        atomic_write(self.journal_path, journal.header(generation, time.time()))

    def _open_journal(self, snapshot: Snapshot | None) -> None:
        has_snapshot = snapshot is not None
        expected = snapshot.generation if snapshot else 1
        folded = snapshot.folded_bytes if snapshot else None
        try:
            fd = open_private(self.journal_path, os.O_RDONLY, "journal")
        except FileNotFoundError:
            if not has_snapshot and not os.path.lexists(self.path):
                # A new ledger: write the (empty) snapshot too, so the ledger file that
                # users and the earlier tooling look for exists from the start.
                write_snapshot(self.path, self.state, expected, self._prices)
            self._new_journal(expected)
        else:
            try:
                first = os.pread(fd, 4096, 0)
            finally:
                os.close(fd)
            if not first:
                self._new_journal(expected)  # an empty journal holds nothing to lose
            else:
                generation = journal.header_generation(first)
                if generation is None:
                    raise set_aside_corrupt(self.journal_path, "its header line is damaged")
                if generation == expected - 1 and folded is not None:
                    # Compaction stopped after writing the snapshot. The snapshot holds this
                    # journal up to the bytes it folded; processes that kept appending to it
                    # since then were acknowledged, so fold those records in too.
                    self._finish_compaction(expected, folded)
                elif generation < expected and has_snapshot:
                    # An older journal (or a snapshot that does not say what it folded):
                    # its records are folded in.
                    self._new_journal(expected)
                elif generation != expected:
                    raise LedgerCorruptError(
                        f"journal {self.journal_path} is generation {generation} but the "
                        f"snapshot {self.path} expects generation {expected}"
                        + ("" if has_snapshot else " (the snapshot is missing)")
                        + "; restore the matching snapshot or move the journal aside",
                        path=self.journal_path,
                    )
        self._rfd = open_private(self.journal_path, os.O_RDONLY, "journal")
        if self._wfd < 0:  # on a reload the appender keeps its fd and follows the path itself
            self._wfd = open_private(self.journal_path, os.O_WRONLY | os.O_APPEND, "journal")
        self._generation = expected

    def _finish_compaction(self, generation: int, folded: int) -> None:
        """Fold the records a stale journal got after byte ``folded``, then swap it out."""
        fd = open_private(self.journal_path, os.O_RDONLY, "journal")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits out appenders mid-write
            data = read_all(fd, folded)
            end = data.rfind(b"\n") + 1
            if end:
                self._roffset = folded
                self._apply_lines(data[: end - 1].split(b"\n"), opening=True)
                log.warning(
                    "journal %s: a compaction stopped before swapping journals; kept the "
                    "%d bytes of records appended after its snapshot",
                    self.journal_path,
                    end,
                )
            if end < len(data):  # a torn tail from a killed writer: keep it aside
                keep_torn(self.journal_path, data[end:])
                self.state.recovered_tail += 1
            if data:
                write_snapshot(self.path, self.state, generation, self._prices, folded + len(data))
            self._new_journal(generation)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- following the journal ----------------------------------------------------

    def catch_up(self) -> None:
        """Fold in every record appended since the last call, by any process."""
        with self.lock:
            while True:
                replaced = os.fstat(self._rfd).st_nlink == 0
                self._read_available()
                if not replaced:
                    return
                self._read_available()  # the replaced file is sealed: this is its end
                if not self._next_generation():
                    log.info("journal moved on by more than one generation; reloading")
                    self._load()
                    return

    def _next_generation(self) -> bool:
        fd = open_private(self.journal_path, os.O_RDONLY, "journal")
        if journal.header_generation(os.pread(fd, 4096, 0)) != self._generation + 1:
            os.close(fd)
            return False
        os.close(self._rfd)
        self._rfd = fd
        self._roffset = 0
        self._read_available()
        return True

    def _read_available(self, opening: bool = False) -> None:
        # Chunked, so memory stays bounded however far behind this reader is.
        while True:
            data = os.pread(self._rfd, _FOLLOW_CHUNK, self._roffset)
            end = data.rfind(b"\n") + 1
            if end:
                self._apply_lines(data[: end - 1].split(b"\n"), opening)
                self._roffset += end
            if len(data) < _FOLLOW_CHUNK or not end:
                break
        if opening and end < len(data):
            self._recover_torn_tail()

    def _apply_lines(self, lines: list[bytes], opening: bool) -> None:
        crc_ok = journal.crc_ok
        if all(map(crc_ok, lines)):
            records = journal.decode_many(lines)
        else:
            records = []
            for index, line in enumerate(lines):
                if crc_ok(line):
                    records.extend(journal.decode_many([line]))
                    continue
                found = journal.salvage(line)
                if found is None:
                    self._damaged_line(index, opening)
                fragment, record = found  # type: ignore[misc]
                log.warning(
                    "journal %s: dropped a torn %d-byte fragment a killed writer left",
                    self.journal_path,
                    fragment,
                )
                records.append(["t", 0.0, fragment])
                records.append(record)
        apply = self.state.apply
        try:
            for rec in records:
                if rec[0] == "h":
                    self._generation = rec[2]
                apply(rec)
            if self.listeners and not opening:
                for rec in records:
                    if rec[0] == "r":
                        for listener in self.listeners:
                            listener(rec)
        except (ValueError, TypeError, IndexError, SnapshotError) as exc:
            problem = f"a record does not match the journal format: {exc}"
            if opening:
                raise set_aside_corrupt(self.journal_path, problem) from None
            raise LedgerCorruptError(
                f"journal {self.journal_path}: {problem}", path=self.journal_path
            ) from None

    def _damaged_line(self, index: int, opening: bool) -> None:
        problem = f"a record near line {index + 1} after offset {self._roffset} fails its checksum"
        if opening:
            raise set_aside_corrupt(self.journal_path, problem)
        raise LedgerCorruptError(
            f"journal {self.journal_path}: {problem}; run `token-tracker check` and restart",
            path=self.journal_path,
        )

    def _recover_torn_tail(self) -> None:
        """Cut a final line with no newline, kept aside; only while no writer is mid-write."""
        # A fresh fd: under the ledger lock the path is the file the reader has open.
        wfd = open_private(self.journal_path, os.O_WRONLY | os.O_APPEND, "journal")
        fcntl.flock(wfd, fcntl.LOCK_EX)
        try:
            tail = read_all(self._rfd, self._roffset)
            if not tail:
                return
            if b"\n" in tail:  # a live writer finished meanwhile: read on normally
                self._read_available(opening=True)
                return
            keep_torn(self.journal_path, tail)
            os.ftruncate(wfd, self._roffset)
            os.write(wfd, journal.torn(time.time(), len(tail)))
            os.fsync(wfd)
        finally:
            fcntl.flock(wfd, fcntl.LOCK_UN)
            os.close(wfd)
        self._read_available()

    # -- appending ------------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Write one record; it is in the OS (or on disk, with fsync) on return."""
        with self._append_lock:
            while True:
                fcntl.flock(self._wfd, fcntl.LOCK_SH)
                try:
                    st = os.fstat(self._wfd)
                    if st.st_nlink:
                        written = os.write(self._wfd, line)
                        if self._fsync:
                            os.fsync(self._wfd)
                        break
                finally:
                    fcntl.flock(self._wfd, fcntl.LOCK_UN)
                # Compaction replaced the journal after we opened it: follow the path.
                os.close(self._wfd)
                self._wfd = open_private(self.journal_path, os.O_WRONLY | os.O_APPEND, "journal")
        if written != len(line):
            raise LedgerError(
                f"journal {self.journal_path}: short write ({written} of {len(line)} bytes)"
            )
        if st.st_size + written > self._max_bytes:
            self.compact(wait=False)

    # -- compaction -------------------------------------------------------------------

    def compact(self, *, wait: bool = True) -> bool:
        """Fold the journal into a new snapshot; False if another process is doing it."""
        with self._exclusive(wait) as acquired:
            return acquired and self._compact_locked(force=wait)

    def _compact_locked(self, force: bool) -> bool:
        # Catch up first: a reader generations behind reloads, which may recover a torn
        # tail under the journal's flock, so that must not happen while we hold it.
        self.catch_up()
        fd = open_private(self.journal_path, os.O_RDONLY, "journal")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits out appenders mid-write
            self.catch_up()
            size = os.fstat(fd).st_size
            if not force and size <= self._max_bytes:
                return False  # another process compacted first
            if os.fstat(self._rfd).st_ino != os.fstat(fd).st_ino:
                raise LedgerError(f"journal {self.journal_path} changed during compaction")
            if self._roffset < size:  # a torn tail from a killed writer: keep it aside
                keep_torn(self.journal_path, read_all(fd, self._roffset))
                self.state.recovered_tail += 1
            nxt = self._generation + 1
            # The folded size lets recovery tell what a stale journal got afterwards.
            write_snapshot(self.path, self.state, nxt, self._prices, size)
            self._new_journal(nxt)
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- information ------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk of the snapshot and the journal."""
        total = 0
        for path in (self.path, self.journal_path):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(path).st_size
        return total

    def close(self) -> None:
        """Release the files. The ledger stays valid on disk."""
        for name in ("_rfd", "_wfd", "_lockfd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
