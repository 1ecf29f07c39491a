"""A durable, per-process append-only spool for ledger rows.

A row is appended (one `write` syscall, no fsync) before the response's last byte goes out, so
a SIGKILLed gateway loses nothing a client fully received: the kernel owns the bytes once
`write` returns. (A power cut can still lose the page cache; that is a different contract.)

Layout: `<dir>/<owner>.lock` is flock-ed for the life of the process; its rows go to
`<dir>/<owner>-<seq>.jsonl` segments. The writer rotates the open segment, writes closed ones to
the database and deletes them. At start, segments whose owner's lock is free (the owner died)
are adopted, so a restart replays them; rows carry ids, so a replay is idempotent.

A spool directory may outlive the database it was written for (a gateway started on another
database from the same directory: `./spool` is the default for every embedded gateway). The
owner's name therefore starts with a key of its database, `<database key>.<pid>_<token>`, and
only segments of the same database are adopted; another database's wait for a gateway on it
(a warning says so at start). Owners named without a key (written before keys) are adopted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import URL

DEFAULT_PORTS = {"postgresql": 5432}


def database_key(url: URL) -> str:
    """A short, stable name of a database: its URL without password or options (a SQLite file
    by its absolute path; Postgres's default port written or not, the host in any case). Two
    names of one server (localhost / 127.0.0.1) differ; their rows then wait for a gateway
    using the name they were written under."""
    if url.get_backend_name() == "sqlite":
        name = url.database or ""
        ident = "sqlite:" + (str(Path(name).resolve()) if name and name != ":memory:" else name)
    else:
        port = url.port or DEFAULT_PORTS.get(url.get_backend_name())
        host = (url.host or "").lower()
        ident = f"{url.get_backend_name()}://{url.username}@{host}:{port}/{url.database}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


class LedgerSpool:
    def __init__(self, directory: Path, database_key: str | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database_key = database_key
        ident = f"{os.getpid()}_{secrets.token_hex(4)}"
        self.owner = f"{database_key}.{ident}" if database_key else ident
        self._lock_fd = os.open(self.dir / f"{self.owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._seq = 0
        self._fd = -1
        self._rows_in_open = 0
        # (segment name, size) -> complete rows in it: /metrics counts the directory often
        self._row_counts: dict[tuple[str, int], int] = {}
        self._open_segment()

    def _segment_path(self, seq: int) -> Path:
        return self.dir / f"{self.owner}-{seq:012d}.jsonl"

    def _open_segment(self) -> None:
        """Open the next segment, then close the previous one. If the new one cannot be created
        (a full disk, a read-only directory) this raises and the open segment stays open and
        keeps taking rows: the descriptor is never left pointing at a closed file."""
        seq = self._seq + 1
        path = self._segment_path(seq)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        previous, self._fd = self._fd, fd
        self._seq, self._open_path, self._rows_in_open = seq, path, 0
        if previous >= 0:
            os.close(previous)

    @property
    def pending(self) -> int:
        """Rows in this process's open segment (what wakes the writer early)."""
        return self._rows_in_open

    def unwritten_rows(self) -> int:
        """Rows of every segment of this database in the directory: open and closed, this
        process's, other workers' and dead owners' (not yet adopted). A segment leaves the
        directory only once its rows are in the database, so this is what it does not have yet."""
        counts: dict[tuple[str, int], int] = {}
        for segment in self.dir.glob("*.jsonl"):
            if not self._ours(segment.name.rsplit("-", 1)[0]):
                continue  # another database's, left for a gateway on it (`foreign_rows`)
            try:
                key = (segment.name, segment.stat().st_size)
                known = self._row_counts.get(key)
                counts[key] = segment.read_bytes().count(b"\n") if known is None else known
            except FileNotFoundError:
                continue  # written and deleted between the listing and now
        self._row_counts = counts  # segments that are gone are forgotten
        return sum(counts.values())

    def append(self, row: dict[str, Any]) -> None:
        data = orjson.dumps(row, default=str) + b"\n"
        written = os.write(self._fd, data)
        if written < len(data):
            # A disk that fills mid-row takes part of it: left there, the next row would be
            # glued to it and the reader would skip both. Cut it off; the caller holds the row.
            self._cut_tail(written)
            raise OSError(errno.ENOSPC, "No space left on device (a row written in part)")
        self._rows_in_open += 1

    def _cut_tail(self, size: int) -> None:
        """Take the last `size` bytes (a torn row) off the open segment; if the file refuses,
        end the torn line, so the reader skips it alone."""
        try:
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - size)
        except OSError:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"\n")

    def rotate(self) -> None:
        """Close the open segment (if it holds rows) so the writer may take it."""
        if self._rows_in_open == 0:
            return
        self._open_segment()

    def closed_segments(self) -> list[Path]:
        """This process's closed segments, oldest first, after adopting any dead owner's."""
        self._adopt_orphans()
        mine = sorted(self.dir.glob(f"{self.owner}-*.jsonl"))
        return [p for p in mine if p != self._open_path]

    def _ours(self, owner: str) -> bool:
        """A segment owner of this database, or of no recorded one."""
        key, dot, _ = owner.partition(".")
        return not dot or self.database_key is None or key == self.database_key

    def foreign_rows(self) -> dict[str, int]:
        """Rows spooled for other databases, by database key (they are left alone)."""
        out: dict[str, int] = {}
        for segment in self.dir.glob("*.jsonl"):
            owner = segment.name.rsplit("-", 1)[0]
            if self._ours(owner):
                continue
            with contextlib.suppress(FileNotFoundError):
                key = owner.partition(".")[0]
                out[key] = out.get(key, 0) + segment.read_bytes().count(b"\n")
        return out

    def _adopt_orphans(self) -> None:
        for lock in self.dir.glob("*.lock"):
            owner = lock.stem
            if owner == self.owner or not self._ours(owner):
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue  # another replica adopted it a moment ago
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                for seg in sorted(self.dir.glob(f"{owner}-*.jsonl")):
                    self._seq += 1
                    with contextlib.suppress(FileNotFoundError):
                        seg.rename(self._segment_path(self._seq))
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)

    @staticmethod
    def read(segment: Path) -> Iterator[dict[str, Any]]:
        """Rows of a segment; a torn last line (crash mid-write) is skipped."""
        with open(segment, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._rows_in_open == 0:
                self._open_path.unlink(missing_ok=True)
        if self._lock_fd >= 0:
            remaining = list(self.dir.glob(f"{self.owner}-*.jsonl"))
            if not remaining:
                (self.dir / f"{self.owner}.lock").unlink(missing_ok=True)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1
