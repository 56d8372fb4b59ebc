"""What `scalper run --mode live` checks before anything starts (no Ray here): the resumed
run, the exchange id, a dry run's exchange, flags that need --mode live; and what a live run
is called in its summary."""

from __future__ import annotations

import json

import msgspec
import pytest
from exchange import LocalExchange, MarketSpec
from exchange.live import MIN, T0, bar, decision, live_cfg

from actors.live import reconcile_at_start
from scalper.config import Config, ConfigError, parse, with_overrides
from scalper.execution.live import LiveExecutionService, run_mode
from scalper.ledger import Ledger
from scalper.pipeline import format_summary, write_trading
from scalper.risk import RiskState
from scalper.trading import ExecutionService

T = T0 * 10**9


def run_cli(cfg: Config, tmp_path, *flags: str) -> int:
    from scalper.cli import main

    path = tmp_path / "config.json"
    path.write_bytes(msgspec.json.encode(cfg))
    return main(["run", "--config", str(path), "-q", *flags])


def ended_run(cfg: Config, tmp_path, run_id: str) -> None:
    """runs/`run_id` as a run of `cfg` that traded nothing leaves it (its ledger included)."""
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    write_trading(ExecutionService(cfg), RiskState.initial(cfg.risk.starting_equity), run_dir, cfg, 1.0)


# ------------------------------------------------------------------------------ --resume


@pytest.mark.parametrize(
    ("earlier", "said"),
    [
        ({"execution.broker": "paper", "feed.kind": "replay", "symbols": ["ES"]}, "it is a paper run"),
        ({"feed.ccxt.dry_run": True, "execution.broker": "paper"}, "it is a dry run"),
        ({"symbols": ["BTCUSDT", "ETHUSDT"]}, "missing ['ETHUSDT']"),
        ({"feed.ccxt.exchange": "kraken"}, "it traded on 'kraken'"),
    ],
)
def test_resume_of_a_run_that_is_not_a_live_run_of_these_symbols_is_refused_before_the_exchange_is_asked(
    market, tmp_path, keys, capsys, earlier, said
):
    ended_run(live_cfg(market, tmp_path, **earlier), tmp_path, "earlier")
    assert (
        run_cli(live_cfg(market, tmp_path), tmp_path, "--mode", "live", "--sandbox", "--resume", "earlier")
        == 4
    )
    out = capsys.readouterr()
    assert said in out.err and len(out.err.strip().splitlines()) == 1
    assert "LIVE TRADING" not in out.out  # refused before the banner
    assert market.requests == []  # the exchange was not asked anything
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["earlier"]  # no new run directory


def test_resume_of_a_run_that_does_not_exist_is_refused_before_the_exchange_is_asked(
    market, tmp_path, keys, capsys
):
    code = run_cli(
        live_cfg(market, tmp_path), tmp_path, "--mode", "live", "--sandbox", "--resume", "nosuchrun"
    )
    assert code == 4 and "runs/nosuchrun/ledger.sqlite does not exist" in capsys.readouterr().err
    assert market.requests == []


def test_a_resumed_run_is_written_with_its_ledger_when_a_symbol_of_its_books_had_no_bar_in_it(
    clock, tmp_path, keys
):
    markets = {"BTCUSDT": MarketSpec("BTC", "USDT"), "ETHUSDT": MarketSpec("ETH", "USDT")}
    with LocalExchange(balances={"USDT": 10_000.0}, clock=clock, markets=markets) as ex:
        ex.add_trade("BTCUSDT", 100.0, 1.0)
        ex.add_trade("ETHUSDT", 50.0, 1.0)
        cfg = live_cfg(ex, tmp_path)
        svc = LiveExecutionService(cfg)  # run 1: buys BTC, leaves the position open
        svc.on_minute([bar(clock.after(T))])
        svc.submit([decision("sc-x1", T)])
        svc.on_minute([bar(clock.after(T + MIN))])
        svc.orders.cancel_all(T + 2 * MIN, "shutdown")
        ended = tmp_path / "runs" / "run1"
        ended.mkdir(parents=True)
        write_trading(svc, RiskState.initial(cfg.risk.starting_equity), ended, cfg, 1.0)

        # run 2 adds ETHUSDT; only ETH trades before it ends
        _, cfg2 = reconcile_at_start(live_cfg(ex, tmp_path, symbols=["BTCUSDT", "ETHUSDT"]), "run1", "run2")
        svc2 = LiveExecutionService(cfg2)
        eth = msgspec.structs.replace(bar(clock.after(T + 3 * MIN)), symbol="ETHUSDT", close=50.0)
        svc2.on_minute([eth])
        run_dir = tmp_path / "runs" / "run2"
        trading = write_trading(svc2, RiskState.initial(10_000.0), run_dir, cfg2, 1.0)
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.rebuild_positions()["BTCUSDT"].quantity == pytest.approx(0.5)  # the books continue
    assert trading["overall"]["trades"] == 0


# ------------------------------------------------------------------------------ the exchange


def test_an_exchange_ccxt_pro_does_not_know_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as e:
        parse(json.dumps({"feed": {"ccxt": {"exchange": "binanc"}}}))
    assert e.value.problems == [
        "feed.ccxt.exchange: expected a ccxt.pro exchange id, got 'binanc' (did you mean 'binance'?)"
    ]
    parse(json.dumps({"feed": {"ccxt": {"exchange": "kraken"}}}))  # a ccxt.pro exchange: fine


def test_an_unknown_exchange_flag_is_refused_in_one_line_before_anything_starts(tmp_path, capsys):
    code = run_cli(with_overrides(Config(), {"store.runs_dir": str(tmp_path / "runs")}), tmp_path,
                   "--mode", "live", "--exchange", "nosuchex", "--dry-run")  # fmt: skip
    out = capsys.readouterr()
    assert code == 3
    assert out.err.strip() == "error: --exchange nosuchex: expected a ccxt.pro exchange id, got 'nosuchex'"
    assert "LIVE TRADING" not in out.out and not (tmp_path / "runs").exists()


def test_a_dry_run_on_an_exchange_that_does_not_answer_is_refused_in_one_line_before_ray_starts(
    tmp_path, capsys
):
    with LocalExchange(balances={"USDT": 10_000.0}) as ex:
        cfg = live_cfg(ex, tmp_path)  # its URLs, once it is gone
    code = run_cli(cfg, tmp_path, "--mode", "live", "--dry-run")
    err = capsys.readouterr().err.strip()
    assert code == 4 and err.startswith("error: binance load_markets: no answer after 2 attempts")
    assert len(err.splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_dry_run_of_a_symbol_the_exchange_does_not_list_is_refused_before_ray_starts(ex, tmp_path, capsys):
    code = run_cli(live_cfg(ex, tmp_path, symbols=["NOPEUSDT"]), tmp_path, "--mode", "live", "--dry-run")
    assert code == 4 and "symbols: 'NOPEUSDT' is not a market of binance" in capsys.readouterr().err
    assert ex.requests_to("POST", "/api/v3/order") == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "flags", [["--sandbox"], ["--dry-run"], ["--exchange", "binance"], ["--resume", "r1"]]
)
def test_live_flags_in_a_paper_run_are_refused_not_ignored(tmp_path, capsys, flags):
    assert run_cli(Config(), tmp_path, *flags) == 3
    assert f"error: {flags[0]}: only with --mode live" in capsys.readouterr().err


# ------------------------------------------------------------------------------ what a run is called


def test_a_run_is_called_paper_dry_run_sandbox_or_live_in_its_summary(ex, tmp_path):
    modes = [
        run_mode(Config()),
        run_mode(live_cfg(ex, tmp_path, **{"feed.ccxt.dry_run": True, "execution.broker": "paper"})),
        run_mode(live_cfg(ex, tmp_path, **{"feed.ccxt.sandbox": True})),
        run_mode(live_cfg(ex, tmp_path)),
    ]
    assert modes == ["paper", "dry-run", "sandbox", "live"]
    summary = {
        "run_id": "r", "run_dir": "runs/r", "mode": "sandbox", "feed": "ccxt", "event_time_start": None,
        "event_time_end": None, "ticks_in": 0, "bars_out": 0, "rejected": {}, "wall_seconds": 1.0,
        "ticks_per_second": 0, "symbols": {}, "warmup_bars": 200,
        "trading": {"signals": 0, "signals_approved": 0, "signals_refused": {}, "trade_fingerprint": "0" * 16,
                    "overall": {"trades": 0, "net_pnl": 0.0, "return_pct": 0.0, "max_drawdown_pct": 0.0}},
    }  # fmt: skip
    assert "  sandbox trading: signals 0" in format_summary(summary)


def test_a_live_run_that_closed_no_minute_ends_with_its_report_and_says_verify_had_nothing(
    ex, tmp_path, monkeypatch, capsys
):
    import actors.paper
    import scalper.cli_report
    import scalper.pipeline

    ended: dict = {}
    monkeypatch.setattr(actors.paper, "run_paper", lambda cfg, **kw: {"run_dir": "runs/x", "bars_out": 0})
    monkeypatch.setattr(scalper.pipeline, "format_summary", lambda summary: "summary")
    monkeypatch.setattr(
        scalper.cli_report, "after_run", lambda run_dir, verify: ended.update(verify=verify) or 0
    )
    assert run_cli(live_cfg(ex, tmp_path), tmp_path, "--mode", "live", "--dry-run") == 0
    # verify is asked for; after_run skips it for a run without a closed minute (with a line:
    # test_pipeline_interrupt's test_a_run_stopped_before_its_first_minute_skips_verify...)
    assert ended == {"verify": True}
