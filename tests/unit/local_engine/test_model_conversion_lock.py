"""Two local deployments starting in one process convert the bundled model once, one at a time.

transformers' GGUF loading is not thread-safe: two conversions at once on a fresh cache failed
("Cannot copy out of meta tensor", "cannot import name 'AutoConfig'"). The conversion is
replaced here by one that records who is inside it and waits for company.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from local_engine import model_store


def test_concurrent_starts_convert_once_and_never_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = 0
    most_inside = 0
    calls = 0
    second_arrived = threading.Event()
    lock = threading.Lock()

    def convert(gguf: Path, target: Path) -> None:
        nonlocal inside, most_inside, calls
        with lock:
            inside += 1
            calls += 1
            most_inside = max(most_inside, inside)
            if inside > 1:
                second_arrived.set()
        # without the lock the other start comes in now; with it, it waits outside
        second_arrived.wait(timeout=1.0)
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"")
        with lock:
            inside -= 1

    monkeypatch.setattr(model_store, "convert_gguf", convert)
    monkeypatch.setattr(model_store, "bundled_gguf_path", lambda: tmp_path / "model.gguf")
    results: list[Path] = []
    starts = [
        threading.Thread(
            target=lambda: results.append(model_store.resolve_model_dir(None, tmp_path))
        )
        for _ in range(2)
    ]
    for t in starts:
        t.start()
    for t in starts:
        t.join(timeout=10)
    assert most_inside == 1
    assert calls == 1
    assert results == [tmp_path / model_store.BUNDLED_FOLDER] * 2
