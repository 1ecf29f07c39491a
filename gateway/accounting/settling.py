"""Budget reservations of finished requests whose ledger rows are not in the database yet.

A request reserves its estimated cost in `budget_counters` before dispatch; the ledger writer
settles it (spent += cost, reserved -= estimate) when it writes the row, a flush interval later.
Until then the counter still holds the whole estimate, so a tenant making quick sequential
requests with a large `max_tokens` was refused as out of budget with nothing in flight. This
process knows what it has finished: the budget check subtracts that credit (estimate - cost;
negative when a request cost more than it reserved), and the writer takes a row's credit away
just before writing it (and gives it back if the write fails), so a row is never counted both
ways at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

Key = tuple[str, str]  # (tenant id, period start in ISO format)
ZERO = Decimal(0)


class Settling:
    def __init__(self, flush_interval_s: float = 0.5) -> None:
        # how long a finished request's reservation may wait for its ledger flush (the writer
        # sets it); other processes' flushes are assumed as frequent (same settings)
        self.flush_interval_s = flush_interval_s
        self._rows: dict[str, tuple[Key, Decimal]] = {}
        self._credit: dict[Key, Decimal] = {}

    def add(self, row_id: str, key: Key, credit: Decimal) -> None:
        if row_id in self._rows or not credit:
            return
        self._rows[row_id] = (key, credit)
        self._credit[key] = self._credit.get(key, ZERO) + credit

    def credit(self, key: Key) -> Decimal:
        return self._credit.get(key, ZERO)

    def take(self, row_ids: Iterable[str]) -> list[tuple[str, Key, Decimal]]:
        taken = []
        for row_id in row_ids:
            entry = self._rows.pop(row_id, None)
            if entry is None:
                continue
            key, credit = entry
            # the rows left may sum to zero (a negative credit beside positive ones), which
            # dropped the key while they were still to be taken
            left = self._credit.get(key, ZERO) - credit
            if left:
                self._credit[key] = left
            else:
                del self._credit[key]
            taken.append((row_id, key, credit))
        return taken

    def restore(self, taken: Iterable[tuple[str, Key, Decimal]]) -> None:
        for row_id, key, credit in taken:
            self.add(row_id, key, credit)

    def __len__(self) -> int:
        return len(self._rows)
