"""The ledger's insert shapes: power-of-two statement sizes that add up to the batch."""

from __future__ import annotations

import pytest

from gateway.accounting.ledger import MAX_ROWS_PER_STATEMENT, statement_sizes


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 37, 255, 256, 257, 500, 1000, 4097])
def test_sizes_cover_the_batch_with_few_shapes(n: int) -> None:
    sizes = statement_sizes(n)
    assert sum(sizes) == n
    assert all(s & (s - 1) == 0 and 0 < s <= MAX_ROWS_PER_STATEMENT for s in sizes)
    assert sizes == sorted(sizes, reverse=True)


def test_every_batch_size_maps_to_at_most_a_handful_of_statements() -> None:
    shapes = {s for n in range(1, 3000) for s in statement_sizes(n)}
    assert len(shapes) <= MAX_ROWS_PER_STATEMENT.bit_length()
