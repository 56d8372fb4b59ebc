"""Triple-barrier labels on hand-built price paths, with the paper broker's fill rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalper.config import Config, with_overrides
from scalper.ml.labels import OPEN, STOP, TARGET, TIMEOUT, UNFILLED, BarrierPricing, triple_barrier
from scalper.types import NS_PER_MINUTE

T0 = 1_700_000_000 * 1_000_000_000


def bars(rows: list[tuple[float, float, float, float]]) -> dict[str, np.ndarray]:
    o, h, lo, c = (np.array(x, dtype=np.float64) for x in zip(*rows, strict=True))
    return {
        "timestamp": T0 + NS_PER_MINUTE * np.arange(len(rows)),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
    }


def frictionless(**extra) -> BarrierPricing:
    cfg = with_overrides(
        Config(),
        {
            "execution.slippage_bps": 0.0,
            "execution.taker_fee_bps": 0.0,
            "execution.maker_fee_bps": 0.0,
            **extra,
        },
    )
    return BarrierPricing(cfg, "X")


FLAT = (100.0, 100.2, 99.8, 100.0)


def test_long_target_first_is_a_win_with_r_from_the_next_open():
    # signal at bar 0; entry bar 1 open 100.5; bar 2 reaches 102.1 > target 102
    cols = bars([FLAT, (100.5, 100.6, 100.4, 100.5), (100.5, 102.1, 100.3, 102.0), FLAT])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == TARGET and lab.label == 1.0
    assert lab.entry_index == 1 and lab.entry_price == 100.5
    assert lab.exit_index == 2 and lab.exit_price == 102.0
    assert lab.r_multiple == pytest.approx((102.0 - 100.5) / (100.5 - 99.0))
    assert lab.exit_ts == int(cols["timestamp"][2]) + NS_PER_MINUTE


def test_touching_the_target_is_not_a_fill():
    # high == target exactly: a limit needs to trade THROUGH it; then the stop hits
    cols = bars([FLAT, FLAT, (100.0, 102.0, 99.5, 101.0), (100.0, 100.1, 98.9, 99.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == STOP and lab.exit_index == 3


def test_long_stop_first_is_a_loss_of_one_r():
    cols = bars([FLAT, FLAT, (100.0, 100.1, 98.9, 99.0), (99.0, 103.0, 99.0, 103.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == STOP and lab.label == 0.0
    assert lab.exit_price == 99.0 and lab.r_multiple == pytest.approx(-1.0)


def test_both_barriers_in_one_bar_count_as_stop_first():
    cols = bars([FLAT, FLAT, (100.0, 102.5, 98.5, 101.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == STOP and lab.exit_index == 2 and lab.r_multiple == pytest.approx(-1.0)


def test_both_in_one_bar_with_the_open_beyond_the_target_is_a_target_at_the_open():
    # the open (the bar's first trade) is already through the target: the broker fills it first
    cols = bars([FLAT, FLAT, (102.5, 102.6, 98.5, 99.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == TARGET and lab.exit_price == 102.5


def test_gap_through_the_stop_fills_at_the_open():
    cols = bars([FLAT, FLAT, (98.0, 98.5, 97.5, 98.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == STOP and lab.exit_price == 98.0 and lab.r_multiple == pytest.approx(-2.0)


def test_barriers_are_not_active_in_the_entry_bar():
    # bar 1 (the entry bar) spans both barriers; nothing happens until bar 2
    cols = bars([FLAT, (100.0, 103.0, 98.0, 100.0), (100.0, 102.5, 99.5, 102.2)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == TARGET and lab.exit_index == 2


def test_time_out_after_h_bars_exits_at_the_close_and_labels_by_sign():
    cols = bars([FLAT, FLAT, FLAT, (100.0, 100.6, 99.9, 100.5), FLAT])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 2, frictionless())
    assert lab.outcome == TIMEOUT and lab.exit_index == 3  # entry bar 1 + 2 bars
    assert lab.exit_price == 100.5 and lab.label == 1.0 and lab.r_multiple == pytest.approx(0.5)


def test_short_is_mirrored():
    cols = bars([FLAT, FLAT, (100.0, 100.1, 97.9, 98.0)])
    lab = triple_barrier(cols, 0, -1, 101.0, 98.0, None, None, 10, frictionless())
    assert lab.outcome == TARGET and lab.exit_price == 98.0 and lab.r_multiple == pytest.approx(2.0)


def test_unknown_when_the_data_ends_before_the_label():
    cols = bars([FLAT, FLAT, FLAT])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, frictionless())
    assert lab.outcome == OPEN and math.isnan(lab.label)


def test_limit_entry_fills_only_when_traded_through_and_expires_unfilled():
    # buy limit 99.5: bar 1 touches it (low 99.5), bar 2 trades through (low 99.4)
    cols = bars([FLAT, (100.0, 100.1, 99.5, 99.8), (99.8, 99.9, 99.4, 99.6), (99.6, 101.2, 99.6, 101.0)])
    lab = triple_barrier(cols, 0, 1, 98.5, 101.0, 99.5, 3, 10, frictionless())
    assert lab.entry_index == 2 and lab.entry_price == 99.5
    assert lab.outcome == TARGET and lab.exit_index == 3
    never = bars([FLAT, FLAT, FLAT, FLAT, FLAT])
    lab = triple_barrier(never, 0, 1, 98.5, 101.0, 99.5, 2, 10, frictionless())
    assert lab.outcome == UNFILLED and math.isnan(lab.label)


def test_limit_expiry_can_become_a_market_entry():
    cols = bars([FLAT, FLAT, FLAT, (100.3, 100.4, 100.2, 100.3), FLAT])
    lab = triple_barrier(
        cols, 0, 1, 98.5, 101.0, 99.5, 2, 10, frictionless(**{"execution.limit_expiry_action": "market"})
    )
    assert lab.entry_index == 3 and lab.entry_price == 100.3


def test_r_multiple_is_net_of_slippage_and_fees():
    cfg = with_overrides(
        Config(),
        {"execution.slippage_bps": 10.0, "execution.taker_fee_bps": 5.0, "execution.maker_fee_bps": 0.0},
    )
    cols = bars([FLAT, (100.0, 100.1, 99.9, 100.0), (100.0, 100.1, 98.9, 99.0)])
    lab = triple_barrier(cols, 0, 1, 99.0, 102.0, None, None, 10, BarrierPricing(cfg, "X"))
    entry = 100.0 * 1.001  # market buy slipped up
    exit_ = 99.0 * 0.999  # stop sell slipped down
    fees = entry * 5e-4 + exit_ * 5e-4
    assert lab.entry_price == pytest.approx(entry)
    assert lab.r_multiple == pytest.approx((exit_ - entry - fees) / (entry - 99.0))
