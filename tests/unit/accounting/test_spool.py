import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.accounting.spool import LedgerSpool


def test_rows_round_trip_and_rotation(tmp_path: Path):
    spool = LedgerSpool(tmp_path)
    spool.append({"id": "a", "n": 1})
    spool.append({"id": "b", "n": 2})
    assert spool.closed_segments() == []
    spool.rotate()
    segs = spool.closed_segments()
    assert len(segs) == 1
    assert [r["id"] for r in LedgerSpool.read(segs[0])] == ["a", "b"]
    spool.close()


def test_torn_last_line_is_skipped(tmp_path: Path):
    seg = tmp_path / "x-000000000001.jsonl"
    seg.write_bytes(b'{"id": "ok"}\n{"id": "tor')
    assert [r["id"] for r in LedgerSpool.read(seg)] == ["ok"]


def test_a_dead_owners_segments_are_adopted_but_a_live_owners_are_not(tmp_path: Path):
    # A child process spools rows and is SIGKILLed: its lock is released by the kernel.
    code = (
        "import os, signal, sys\n"
        "from gateway.accounting.spool import LedgerSpool\n"
        f"s = LedgerSpool({str(tmp_path)!r})\n"
        "s.append({'id': 'dead-1'}); s.append({'id': 'dead-2'})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    live = LedgerSpool(tmp_path / "other")  # a different dir: must not be touched
    mine = LedgerSpool(tmp_path)
    ids = [r["id"] for seg in mine.closed_segments() for r in LedgerSpool.read(seg)]
    assert sorted(ids) == ["dead-1", "dead-2"]
    # Adopted once: a second scan finds the same segments under our name, not new copies.
    again = [r["id"] for seg in mine.closed_segments() for r in LedgerSpool.read(seg)]
    assert sorted(again) == ["dead-1", "dead-2"]
    assert not any(p.name.endswith(".lock") and p.stem != mine.owner for p in tmp_path.iterdir())
    mine.close()
    live.close()


def test_a_live_owner_keeps_its_segments(tmp_path: Path):
    a = LedgerSpool(tmp_path)
    a.append({"id": "a1"})
    a.rotate()
    b = LedgerSpool(tmp_path)
    assert b.closed_segments() == []
    assert len(a.closed_segments()) == 1
    a.close()
    b.close()
    assert os.path.isdir(tmp_path)


def _dead_spool(directory: Path, key: str | None, ids: list[str]) -> None:
    code = (
        "import os, signal\n"
        "from gateway.accounting.spool import LedgerSpool\n"
        f"s = LedgerSpool({str(directory)!r}, {key!r})\n"
        + "".join(f"s.append({{'id': {i!r}}})\n" for i in ids)
        + "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)


def _ids(spool: LedgerSpool) -> list[str]:
    return sorted(r["id"] for seg in spool.closed_segments() for r in LedgerSpool.read(seg))


def test_rows_of_another_database_are_left_for_a_gateway_on_it(tmp_path: Path):
    """A gateway started on database B from the directory where one on database A died
    replayed A's rows into B (hunt9 h1): only the same database's rows are adopted."""
    _dead_spool(tmp_path, "aaaaaaaaaaaa", ["a-1", "a-2"])
    _dead_spool(tmp_path, None, ["legacy-1"])  # written before keys: adopted by anyone
    other = LedgerSpool(tmp_path, "bbbbbbbbbbbb")
    assert _ids(other) == ["legacy-1"]
    assert other.foreign_rows() == {"aaaaaaaaaaaa": 2}
    other.close()
    same = LedgerSpool(tmp_path, "aaaaaaaaaaaa")
    assert _ids(same) == ["a-1", "a-2"]
    assert "aaaaaaaaaaaa" not in same.foreign_rows()


def test_a_database_key_names_the_database_not_how_it_was_reached(tmp_path: Path):
    from sqlalchemy.engine import make_url

    from gateway.accounting.spool import database_key

    pg = "postgresql+asyncpg://u:{pw}@db.example:5432/app?sslmode=require"
    assert database_key(make_url(pg.format(pw="one"))) == database_key(
        make_url(pg.format(pw="two").replace("?sslmode=require", ""))
    )  # a rotated password or another option is the same database
    assert database_key(make_url(pg.format(pw="x"))) != database_key(
        make_url(pg.format(pw="x").replace("/app", "/other"))
    )
    here, there = tmp_path / "a", tmp_path / "b"
    here.mkdir(), there.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(here)
        first = database_key(make_url("sqlite+aiosqlite:///./thriftgate.db"))
        os.chdir(there)
        second = database_key(make_url("sqlite+aiosqlite:///./thriftgate.db"))
    finally:
        os.chdir(cwd)
    assert first != second  # ./thriftgate.db in two directories: two databases
    assert first == database_key(make_url(f"sqlite+aiosqlite:///{here / 'thriftgate.db'}"))


def test_the_default_port_and_a_hosts_case_are_one_database(tmp_path: Path):
    """`@db/app` and `@db:5432/app` are one Postgres database: with two keys, a restart on the
    other spelling left the dead gateway's rows unreplayed (hunt9 h6)."""
    from sqlalchemy.engine import make_url

    from gateway.accounting.spool import database_key

    plain = database_key(make_url("postgresql+asyncpg://u@db.example/app"))
    assert plain == database_key(make_url("postgresql+asyncpg://u@db.example:5432/app"))
    assert plain == database_key(make_url("postgresql+asyncpg://u@DB.Example/app"))
    assert plain != database_key(make_url("postgresql+asyncpg://u@db.example:5433/app"))


def test_rows_of_another_database_are_not_counted_as_this_ones_unwritten(tmp_path: Path):
    """/metrics' ledger_pending is what this database does not have yet; another database's
    rows, left alone, kept it above zero for good (hunt9 h6)."""
    _dead_spool(tmp_path, "aaaaaaaaaaaa", ["a-1", "a-2"])
    _dead_spool(tmp_path, None, ["legacy-1"])
    spool = LedgerSpool(tmp_path, "bbbbbbbbbbbb")
    spool.append({"id": "b-1"})
    assert spool.unwritten_rows() == 2  # its own and the legacy one it will adopt
    spool.close()


def test_a_row_a_full_disk_takes_in_part_is_cut_off_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills mid-row takes part of it (a short write): left there, the next row
    was glued to it and the reader skipped both."""
    from gateway.accounting import spool as spool_module

    real_write = os.write
    spool = LedgerSpool(tmp_path)
    spool.append({"id": "before"})

    def fills_up(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(spool_module.os, "write", fills_up)
    with pytest.raises(OSError) as refused:
        spool.append({"id": "torn", "pad": "x" * 100})
    assert refused.value.errno == errno.ENOSPC
    monkeypatch.setattr(spool_module.os, "write", real_write)
    spool.append({"id": "after"})
    spool.rotate()
    (segment,) = spool.closed_segments()
    assert [r["id"] for r in LedgerSpool.read(segment)] == ["before", "after"]
    assert spool.pending == 0
    spool.close()
