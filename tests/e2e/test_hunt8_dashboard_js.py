"""The charts' dollar labels (axis ticks, tooltips, the counterfactual caption), run in Node
(hunt 8, h5): a cheap model's hourly spend is a few millionths of a dollar, and
`toPrecision(2)` wrote 5e-7 as "$5.0e-7"; a negative saving read "$-0.0012"."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[2] / "dashboard" / "static" / "dashboard.js"
NODE = shutil.which("node")

CASES = {
    "0": "$0",
    "0.5": "$0.50",
    "0.0012": "$0.0012",
    "-0.0012": "-$0.0012",
    "0.0000045": "$0.0000045",
    "5e-7": "$0.00000050",
    "1e-9": "$0.0000000010",
    "2": "$2",
    "1234.5": "$1,234.5",
    "-1234.5": "-$1,234.5",
}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_chart_dollar_labels_have_no_exponents_and_lead_with_the_sign() -> None:
    source = JS.read_text()
    match = re.search(r"\n  function usd\(v\) \{\n.*?\n  \}\n", source, re.S)
    assert match, "usd() not found in dashboard.js"
    script = (
        match.group(0)
        + f"const cases = {json.dumps(list(CASES))};\n"
        + "console.log(JSON.stringify(cases.map((c) => usd(Number(c)))));\n"
    )
    assert NODE is not None
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True)
    assert dict(zip(CASES, json.loads(out.stdout), strict=True)) == CASES
