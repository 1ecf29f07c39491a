"""Soak and fault-load benchmark for the gateway: leaks, throughput, added latency, memory.

    python benchmarks/soak.py faulty --requests 10000      # 10k faulty requests, leak check
    python benchmarks/soak.py steady --duration 600 --rate 50   # 10-minute steady-rate soak

Both start real processes on 127.0.0.1 (a throwaway Postgres database, mock upstreams, one
gateway) through tests/support/servers.py and print figures; nothing is asserted here (the
tests in tests/integration/test_faults_leaks.py do that at a smaller count).

`faulty`: a mix of refused connections, 503s at a 50% rate, hangs past the deadline, truncated
and malformed streams, missing usage and clients hanging up mid-stream, at fixed concurrency.
Samples the gateway's RSS, open fds and TCP connections every 1000 requests, then checks that
every request has exactly one ledger row.

`steady`: an open-loop generator at a fixed rate (requests are launched on schedule whether or
not earlier ones finished) against a mock upstream with a fixed latency, stream and non-stream
alternating. One request in ten goes straight to the mock as a baseline, so "added latency" is
the gateway's path minus the same upstream's direct latency, per one-minute window.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.faults import FAULT_MIX, fault_deployments, send_chat, start_fault_mocks
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sql,
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample(proc: psutil.Process) -> dict[str, float]:
    return {
        "rss_mib": proc.memory_info().rss / 2**20,
        "fds": proc.num_fds(),
        "tcp": len(proc.net_connections(kind="tcp")),
    }


def faulty(args: argparse.Namespace, tmp: Path) -> None:
    db = create_database("tg_soak")
    mocks: dict[str, MockUpstreamServer] = {}
    start_fault_mocks(tmp, mocks)
    gw = GatewayServer(tmp, db, fault_deployments(mocks))
    try:
        key = gw.new_tenant()[1]
        rids: list[str] = []
        asyncio.run(faulty_load(args, gw, key, rids))
        deadline = time.monotonic() + 60
        while True:
            n = sql(
                db,
                "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM usage_ledger "
                "WHERE request_id LIKE 'soak-%'",
            )[0]
            if n["n"] >= len(rids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"ledger: {n['n']} rows, {n['d']} distinct request ids, {len(rids)} requests sent")
    finally:
        gw.stop()
        for m in mocks.values():
            m.stop()
        drop_database(db)


async def faulty_load(
    args: argparse.Namespace, gw: GatewayServer, key: str, rids: list[str]
) -> None:
    proc = psutil.Process(gw.proc.pid)
    limits = httpx.Limits(max_connections=args.concurrency)
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=gw.url,
        timeout=30,
        limits=limits,
        headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-cache, no-store"},
    ) as client:
        sem = asyncio.Semaphore(args.concurrency)

        async def one(item: tuple[str, bool, bool]) -> None:
            rid = "soak-" + uuid.uuid4().hex
            rids.append(rid)
            async with sem:
                status = await send_chat(client, *item, rid=rid, text=f"soak {rid}")
            statuses[status] = statuses.get(status, 0) + 1

        print(f"{'requests':>9} {'req/s':>7} {'rss MiB':>8} {'fds':>5} {'tcp':>5}")
        work = itertools.cycle(FAULT_MIX)
        done = 0
        t_all = time.perf_counter()
        while done < args.requests:
            batch = min(1000, args.requests - done)
            t0 = time.perf_counter()
            await asyncio.gather(*(one(next(work)) for _ in range(batch)))
            done += batch
            await asyncio.sleep(1.0)  # let hung upstream handlers and flushes drain
            s = sample(proc)
            rate = batch / (time.perf_counter() - t0 - 1.0)
            print(
                f"{done:>9} {rate:>7.0f} {s['rss_mib']:>8.1f} {s['fds']:>5.0f} {s['tcp']:>5.0f}",
                flush=True,
            )
        elapsed = time.perf_counter() - t_all
    print(f"statuses: {dict(sorted(statuses.items()))}; {args.requests / elapsed:.0f} req/s")


def steady(args: argparse.Namespace, tmp: Path) -> None:
    db = create_database("tg_soak")
    mock = MockUpstreamServer(
        tmp, latency_ms=args.upstream_ms, reply="a steady answer of about ten words for the soak"
    )
    gw = GatewayServer(
        tmp,
        db,
        [mock_deployment("mock", "gpt-4o-mini", mock)],
        extra_env={"THRIFTGATE_WORKERS": "1"},
    )
    try:
        key = gw.new_tenant()[1]
        asyncio.run(steady_load(args, gw, mock, key))
    finally:
        gw.stop()
        mock.stop()
        drop_database(db)


async def steady_load(
    args: argparse.Namespace, gw: GatewayServer, mock: MockUpstreamServer, key: str
) -> None:
    proc = psutil.Process(gw.proc.pid)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache, no-store"}
    via_gw: list[tuple[float, float]] = []  # (t, latency s)
    direct: list[tuple[float, float]] = []
    errors: list[tuple[float, int]] = []
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits, headers=headers) as gc,
        httpx.AsyncClient(base_url=mock.url, timeout=60, limits=limits) as mc,
    ):

        async def one(i: int, t_sched: float) -> None:
            client, out = (mc, direct) if i % 10 == 9 else (gc, via_gw)
            t0 = time.perf_counter()
            try:
                rid = "steady-" + uuid.uuid4().hex
                model = "gpt-4o-mini" if client is gc else "mock-model"
                status = await send_chat(client, model, i % 2 == 0, False, rid, f"soak {rid}")
            except httpx.HTTPError:
                status = 599
            t1 = time.perf_counter()
            if status == 200:
                out.append((t_sched, t1 - t0))
            else:
                errors.append((t_sched, status))

        start = time.perf_counter()
        interval = 1.0 / args.rate
        tasks: set[asyncio.Task[None]] = set()
        windows: list[dict[str, Any]] = []
        next_report = start + args.window
        i = 0
        print(
            f"{'min':>4} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'direct p99':>10} "
            f"{'added p50':>9} {'added p99':>9} {'err':>4} {'rss MiB':>8} {'fds':>4}"
        )
        while time.perf_counter() - start < args.duration:
            t_sched = start + i * interval
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, t_sched - start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            if time.perf_counter() >= next_report:
                lo, hi = next_report - args.window - start, next_report - start
                windows.append(report(lo, hi, via_gw, direct, errors, proc, args.window))
                next_report += args.window
        await asyncio.gather(*tasks)
        lo = next_report - args.window - start
        if lo < args.duration:
            windows.append(
                report(lo, args.duration, via_gw, direct, errors, proc, args.duration - lo)
            )
    lat = [v for _, v in via_gw]
    base = [v for _, v in direct]
    print(
        f"overall: {len(lat) + len(base)} ok, {len(errors)} errors in {args.duration:.0f}s; "
        f"gateway p50 {1000 * pct(lat, 0.5):.1f} ms p99 {1000 * pct(lat, 0.99):.1f} ms; "
        f"direct p50 {1000 * pct(base, 0.5):.1f} ms p99 {1000 * pct(base, 0.99):.1f} ms; "
        f"added p50 {1000 * (pct(lat, 0.5) - pct(base, 0.5)):.1f} ms "
        f"p99 {1000 * (pct(lat, 0.99) - pct(base, 0.99)):.1f} ms"
    )
    rss = [w["rss"] for w in windows]
    print(f"rss MiB first/last/max window: {rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f}")


def report(
    lo: float,
    hi: float,
    via_gw: list[tuple[float, float]],
    direct: list[tuple[float, float]],
    errors: list[tuple[float, int]],
    proc: psutil.Process,
    width: float,
) -> dict[str, Any]:
    g = [v for t, v in via_gw if lo <= t < hi]
    d = [v for t, v in direct if lo <= t < hi]
    e = sum(1 for t, _ in errors if lo <= t < hi)
    s = sample(proc)
    row = {
        "rate": (len(g) + len(d)) / width,
        "p50": 1000 * pct(g, 0.5),
        "p99": 1000 * pct(g, 0.99),
        "dp99": 1000 * pct(d, 0.99),
        "a50": 1000 * (pct(g, 0.5) - pct(d, 0.5)),
        "a99": 1000 * (pct(g, 0.99) - pct(d, 0.99)),
        "err": e,
        "rss": s["rss_mib"],
        "fds": s["fds"],
    }
    print(
        f"{hi / 60:>4.0f} {row['rate']:>6.1f} {row['p50']:>7.1f} {row['p99']:>7.1f} "
        f"{row['dp99']:>10.1f} {row['a50']:>9.1f} {row['a99']:>9.1f} {e:>4} "
        f"{row['rss']:>8.1f} {row['fds']:>4.0f}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("faulty", help="many faulty requests; leak check")
    f.add_argument("--requests", type=int, default=10_000)
    f.add_argument("--concurrency", type=int, default=32)
    s = sub.add_parser("steady", help="steady-rate soak")
    s.add_argument("--duration", type=float, default=600.0)
    s.add_argument("--rate", type=float, default=50.0, help="requests per second")
    s.add_argument("--window", type=float, default=60.0, help="report every N seconds")
    s.add_argument("--upstream-ms", type=float, default=50.0, help="mock upstream latency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tg-soak-") as tmp:
        (faulty if args.mode == "faulty" else steady)(args, Path(tmp))


if __name__ == "__main__":
    main()
