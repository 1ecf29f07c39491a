"""Headless Chromium from the Debian package, driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("THRIFTGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found: `apt-get install -y chromium` to run the browser tests"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the `playwright` Python package is not installed (dev extra)"
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def sign_in(page: Any, base: str, admin_key: str) -> None:
    page.goto(base + "/dashboard/login")
    page.fill("#admin-key", admin_key)
    page.click("#sign-in")
    page.wait_for_url(re.compile(r".*/dashboard/(\?.*)?$"))
