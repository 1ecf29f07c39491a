"""The faulty-upstream rig shared by the leak test (tests/integration/test_faults_leaks.py) and
the soak benchmark (benchmarks/soak.py): one mock upstream per fault, a deployment per mock
(plus one whose port refuses connections), the request mix, and the request they send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import MockUpstreamServer, free_port, mock_deployment

# one mock upstream per fault, named after it; "refused" has none (its port is closed)
FAULT_KNOBS: dict[str, dict[str, Any]] = {
    "flaky": {"fail_rate": 0.5, "fail_status": 503},
    "hang": {"hang_s": 0.6},
    "truncated": {"truncate_stream": True, "reply": "a b c d e f g h"},
    "malformed": {"malformed_stream": True, "reply": "a b c d e f g"},
    "nousage": {"no_usage": True},
    "healthy": {"ms_per_token": 5, "reply": "a b c d e f g h i j"},
}

# (model, stream, client hangs up after the first chunk)
FAULT_MIX = [
    ("refused", False, False),
    ("flaky", False, False),
    ("flaky", True, False),
    ("hang", False, False),
    ("hang", True, False),
    ("truncated", True, False),
    ("malformed", True, False),
    ("nousage", False, False),
    ("nousage", True, False),
    ("healthy", True, True),
]


def start_fault_mocks(tmp: Path, into: dict[str, MockUpstreamServer]) -> None:
    """Start the mocks into `into`, so a caller can stop those already started if one fails."""
    for name, knobs in FAULT_KNOBS.items():
        into[name] = MockUpstreamServer(tmp, **knobs)


def fault_deployments(mocks: dict[str, MockUpstreamServer]) -> list[dict[str, Any]]:
    """A deployment (and model) per mock, a 0.3 s timeout for "hang", and "refused"."""
    deps = [
        mock_deployment(name, name, mock, timeout_s=0.3 if name == "hang" else 5)
        for name, mock in mocks.items()
    ]
    deps.append(
        {
            **mock_deployment("refused", "refused", mocks["healthy"]),
            "api_base": f"http://127.0.0.1:{free_port()}/v1",
        }
    )
    return deps


async def send_chat(
    client: httpx.AsyncClient, model: str, stream: bool, hang_up: bool, rid: str, text: str
) -> int:
    """One chat request (`x-request-id: rid`); a streaming client that hangs up leaves after
    the first chunk, so the gateway must cancel the upstream request. Returns the status."""
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    headers = {"x-request-id": rid}
    if not stream:
        r = await client.post("/chat/completions", json=body, headers=headers)
        return r.status_code
    async with client.stream("POST", "/chat/completions", json=body, headers=headers) as r:
        async for _ in r.aiter_bytes():
            if hang_up:
                break
        return r.status_code
