"""Code pasted without fences, as tool results carry it (an agent's read_file of a method, a
diff), is code: lossless left it dedented and with its blank lines squeezed, so the model's
exact-match edit (old_string) no longer matched the file; balanced cut lines out of it (found
by hunter h4, session 8). Prose that merely wraps, lists and talks about code stays prose."""

from __future__ import annotations

import random

from gateway.compression import CompressionOptions, PromptCompressor
from gateway.compression.lossless import lossless_text
from gateway.compression.segments import split_segments
from gateway.compression.tokens import TiktokenCounter
from tests.unit.compression.conftest import filler_passage

METHOD = """    def add(self, item, qty=1):
        if qty <= 0:
            raise ValueError("qty  must be positive")
        self.items.append((item,  qty))


    def total(self, prices):
        s = 0
        for item, qty in self.items:
            s += prices[item] * qty
        return s"""

JS = """function total(cart) {
  let s  = 0;
  for (const [item, qty] of cart) {
    s += price(item) * qty;
  }


  return s;
}"""

DIFF = """diff --git a/cart.py b/cart.py
--- a/cart.py
+++ b/cart.py
@@ -10,5 +10,5 @@ class Cart:
     def total(self, prices):
-        s  = 0
+        s = 0
{blank_context_line}
         for item, qty in self.items:""".format(blank_context_line=" ")


def test_unfenced_code_and_diffs_are_code_segments() -> None:
    for code in (METHOD, JS, DIFF):
        text = "Here is the file:\n\n" + code + "\n\nThat is all of it."
        kinds = [(s.kind, s.text) for s in split_segments(text)]
        assert ("code", code) in kinds, kinds
        assert code in lossless_text(text)


def test_prose_stays_prose() -> None:
    wrapped = (
        "The committee met on Tuesday to discuss the budget for the next year, and\n"
        "for the first time in a decade it agreed on every line of it. If the council\n"
        "approves, the new library opens in May; the old one closes in June.\n"
        "import taxes were not discussed, nor was the return of the harbour fees."
    )
    listed = "Steps:\n\n1. Install it.\n2. Run it:\n   - with care\n   - twice\n\nDone."
    for text in (wrapped, listed, filler_passage(random.Random(1), 12)):
        assert [s.kind for s in split_segments(text)] == ["text"], text


def test_a_tool_result_holding_a_method_goes_out_byte_identical(
    counter: TiktokenCounter,
) -> None:
    body = "\n\n".join([METHOD] * 6)  # a long read, so that every mode has work to do
    msgs = [
        {"role": "user", "content": "Fix Cart.total: discounts are ignored."},
        {"role": "tool", "tool_call_id": "c1", "content": body},
        {"role": "user", "content": "Give the exact old_string to replace the total method."},
    ]
    for mode in ("lossless", "balanced"):
        options = CompressionOptions(mode=mode, min_prompt_tokens=0, min_saved_tokens=0)
        res = PromptCompressor(counter).compress(msgs, options)
        assert res.messages[1]["content"] == body, mode
