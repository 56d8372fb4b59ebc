"""Per-symbol rolling windows of bars + indicators, read for many symbols at once.

The live path decides on the newest bar of every symbol that closed in a minute. Keeping each
column as a ring buffer (symbols x rows) lets a strategy gather the last k rows of all those
symbols with one numpy index per column, instead of one small array per symbol and column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scalper.types import Snapshot

BAR_FIELDS = ("open", "high", "low", "close", "volume")


class BarWindows:
    """The last `length` rows of `columns` (bar fields or indicator names) per symbol."""

    def __init__(self, columns: Sequence[str], length: int):
        self.length = max(1, int(length))
        self.columns = ["timestamp", *dict.fromkeys(c for c in columns if c != "timestamp")]
        self.clear()

    def clear(self) -> None:
        self._slot: dict[str, int] = {}
        self._count = np.zeros(0, dtype=np.int64)  # rows ever appended, per slot
        self._buf = {
            c: np.empty((0, self.length), dtype=np.int64 if c == "timestamp" else np.float64)
            for c in self.columns
        }

    def _slot_of(self, symbol: str) -> int:
        slot = self._slot.get(symbol)
        if slot is None:
            slot = self._slot[symbol] = len(self._slot)
            if slot >= self._count.shape[0]:  # grow by doubling
                grow = max(8, self._count.shape[0])
                self._count = np.concatenate((self._count, np.zeros(grow, dtype=np.int64)))
                for c, buf in self._buf.items():
                    self._buf[c] = np.concatenate((buf, np.full((grow, self.length), 0, dtype=buf.dtype)))
        return slot

    def append(self, snap: Snapshot) -> None:
        """One closed bar (with its indicator values) after the symbol's previous one."""
        bar, ind = snap.bar, snap.indicators
        slot = self._slot_of(bar.symbol)
        pos = int(self._count[slot]) % self.length
        for c, buf in self._buf.items():
            if c == "timestamp":
                buf[slot, pos] = bar.ts
            elif c in BAR_FIELDS:
                buf[slot, pos] = getattr(bar, c)
            else:
                buf[slot, pos] = ind.get(c, np.nan)
        self._count[slot] += 1

    def recent(self, symbol: str) -> dict[str, np.ndarray]:
        """A symbol's rows (up to `length`), oldest first, as 1-D columns."""
        slot = self._slot[symbol]
        count = int(self._count[slot])
        n = min(count, self.length)
        idx = (count - n + np.arange(n)) % self.length
        return {c: buf[slot, idx] for c, buf in self._buf.items()}

    def last(self, symbols: Sequence[str], k: int) -> tuple[list[str], dict[str, np.ndarray]]:
        """The symbols (of `symbols`) with at least k rows, and their last k rows of every
        column as (symbols, k) arrays, oldest first."""
        if k > self.length:
            raise ValueError(f"windows keep {self.length} rows, {k} asked")
        known = [s for s in symbols if s in self._slot]
        slots = np.fromiter((self._slot[s] for s in known), dtype=np.int64, count=len(known))
        full = self._count[slots] >= k
        names = [s for s, f in zip(known, full.tolist(), strict=True) if f]
        slots = slots[full]
        idx = (self._count[slots][:, None] - k + np.arange(k)) % self.length
        rows = slots[:, None]
        return names, {c: buf[rows, idx] for c, buf in self._buf.items()}
