import os
import subprocess
import sys
from pathlib import Path

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
