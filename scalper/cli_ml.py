"""The ML subcommands of `scalper`: `collect` (the signal dataset) and `train` (Ray Train into
the model registry, optionally with the walk-forward evaluation). `register(sub, common)` adds
them to the main parser (scalper/cli.py). Heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from scalper.cli import EXIT_BAD_INPUT, _add_data_flags, _bars_from_flags, _load_config, _warmup_line

MODELS = ("validator", "regime", "sizer")


def _say(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(msg)


def _source_config(cfg: Any, minutes: int | None):
    from scalper.config import with_overrides

    return with_overrides(cfg, {"feed.synthetic.minutes": minutes}) if minutes else cfg


def cmd_collect(args: argparse.Namespace) -> int:
    from scalper import backtest as bt
    from scalper.feeds import FeedError
    from scalper.ml import dataset

    cfg = _source_config(_load_config(args.config), args.minutes)
    source = {
        "data": args.data,
        "synthetic": bool(args.synthetic),
        "symbols": args.symbols,
        "start": args.start,
        "end": args.end,
        "synthetic_minutes": cfg.feed.synthetic.minutes if args.synthetic else None,
    }
    t0 = time.perf_counter()
    try:
        if args.parallel:
            from training.collect import collect_parallel

            symbols = args.symbols or (cfg.symbols if args.synthetic else list(bt.load_bars(cfg, args.data)))
            signals, regime, n_bars, _ = collect_parallel(
                cfg,
                symbols,
                args.data,
                args.synthetic,
                args.start,
                args.end,
                on_done=lambda s, n, k: _say(f"  {s}: {n:,} bars, {k:,} signals"),
            )
        else:
            # the bars `scalper backtest` reads from the same flags, with the warm-up before --from
            warmup: dict[str, int] = {}
            bars = _bars_from_flags(cfg, args, warmup)
            bars = {s: b for s, b in bars.items() if len(b)}
            if not bars:
                print(
                    "error: no bars to collect from (check --data, --symbols and --from/--to)",
                    file=sys.stderr,
                )
                return EXIT_BAD_INPUT
            if args.start:
                print(_warmup_line(cfg, warmup, "no dataset rows"))
            n_bars = sum(len(b) - warmup.get(s, 0) for s, b in bars.items())
            signals, regime = dataset.collect(cfg, bars, bt.start_ns(args.start))
    except (FeedError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    wall = time.perf_counter() - t0
    manifest = dataset.write_dataset(args.out, cfg, signals, regime, source)
    print(
        f"dataset {args.out}: {manifest['signals']:,} signals ({_counts(manifest['outcomes'])}), "
        f"{manifest['regime_rows']:,} regime rows from {n_bars:,} bars of {len(manifest['symbols'])} symbol(s) "
        f"in {wall:.1f} s ({n_bars / wall if wall > 0 else 0:,.0f} bars/s)"
    )
    print(f"  files: {args.out}/ (signals.parquet, regime.parquet, manifest.json)")
    return 0


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items())) or "none"


def _overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """`cfg` with --workers and --set KEY=VALUE applied (ConfigError on a bad one)."""
    from scalper.config import with_overrides

    changes: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            from scalper.config import ConfigError

            raise ConfigError("--set", [f"{item}: expected KEY=VALUE (e.g. ml.walk_forward_train_days=1)"])
        try:
            changes[key] = json.loads(raw)
        except ValueError:
            changes[key] = raw
    if getattr(args, "workers", None) is not None:
        changes["ml.train_workers"] = args.workers
    return with_overrides(cfg, changes) if changes else cfg


def cmd_train(args: argparse.Namespace) -> int:
    from scalper.cli import EXIT_BAD_CONFIG
    from scalper.config import ConfigError
    from scalper.ml.dataset import DatasetSchemaError

    cfg = _load_config(args.config)
    try:
        cfg = _overrides(cfg, args)
    except ConfigError as exc:
        flag = "--workers" if not args.set else "--set/--workers"
        print("\n".join(f"error: {flag}: {p}" for p in exc.problems), file=sys.stderr)
        return EXIT_BAD_CONFIG
    registry = args.registry or cfg.ml.registry
    if args.bootstrap:
        if args.model != "all" or args.evaluate:
            print(
                "error: --bootstrap trains all three models and evaluates nothing: "
                "`scalper train all --bootstrap` (evaluate a `scalper collect` dataset with --evaluate)",
                file=sys.stderr,
            )
            return EXIT_BAD_CONFIG
        return _bootstrap(cfg, registry, args.dataset)
    if not args.dataset:
        print("error: --dataset DIR is required (or `scalper train all --bootstrap`)", file=sys.stderr)
        return EXIT_BAD_CONFIG
    models = list(MODELS) if args.model == "all" else [args.model]
    if args.model == "sizer":
        models = ["validator", "sizer"]  # the sizer learns from this run's validator
    dataset = Path(args.dataset)
    try:
        manifest = json.loads((dataset / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        print(
            f"error: --dataset {dataset}: not a dataset directory ({exc}); run `scalper collect` first",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        if args.evaluate:  # before anything trains or is registered
            problem = _evaluation_problem(cfg, dataset, manifest)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return EXIT_BAD_INPUT
        cards = _train_models(cfg, dataset, models, registry)
    except (DatasetSchemaError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_cards(cards, registry)
    if args.evaluate:
        return _evaluate(cfg, dataset, manifest, args.report or str(dataset / "evaluation"))
    return 0


def _evaluation_problem(cfg: Any, dataset: Path, manifest: dict[str, Any]) -> str | None:
    """Why `--evaluate` cannot run on this dataset (None: it can): a bootstrap dataset, or data
    shorter than one walk-forward fold. Checked before training, which takes a minute and
    registers models."""
    from scalper.ml.dataset import read_dataset
    from scalper.ml.evaluation import fold_windows

    if manifest.get("source", {}).get("bootstrap"):
        return (
            f"{dataset} is a bootstrap dataset (synthetic and real history mixed): evaluate a "
            "`scalper collect` dataset of one source instead"
        )
    try:
        fold_windows(cfg, read_dataset(dataset, cfg, "regime"))
    except ValueError as exc:
        return str(exc)
    return None


def _train_models(
    cfg: Any, dataset: Path, models: list[str], registry: str, data: str = "parquet"
) -> dict[str, Any]:
    from training.xgb import train

    return train(cfg, dataset, models, registry, progress=_say, data=data)


def _print_cards(cards: dict[str, Any], registry: str) -> None:
    for name in MODELS:
        card = cards.get(name)
        if card is None:
            continue
        m = card.metrics
        score = {
            "validator": f"AUC {_f(m.get('auc'))}, Brier {_f(m.get('brier'))} (base rate {_f(m.get('brier_baseline'))}), threshold {_f(card.extra.get('threshold'))}",
            "regime": f"accuracy {_f(m.get('accuracy'))} (majority class {_f(m.get('majority_accuracy'))})",
            "sizer": f"RMSE {_f(m.get('rmse'))} (std {_f(m.get('rmse_mean_baseline'))}), corr {_f(m.get('corr'))}",
        }[name]
        print(f"{name} {card.version}: {card.rows:,} training rows; held out: {score}")
    any_card = next(iter(cards.values()), None)
    if any_card is not None:
        t = any_card.metrics.get("training", {})
        print(
            f"  Ray Train: run {any_card.run_name}, {t.get('workers')} worker(s), {t.get('wall_seconds')} s"
        )
    print(
        f"  registry: {registry}/ (latest: {', '.join(f'{n} {cards[n].version}' for n in MODELS if n in cards)})"
    )


def _bootstrap(cfg: Any, registry: str, dataset: str | None) -> int:
    """`scalper train all --bootstrap` (scalper/ml/bootstrap.py): nothing when the registry has
    all three models, else a dataset from synthetic + bundled history and one Ray Train run."""
    from scalper.ml.bootstrap import DATASET_NAME, registry_status

    t0 = time.perf_counter()
    status = registry_status(registry, cfg)
    if status.complete:
        have = ", ".join(f"{n} {v}" for n, v in status.versions.items())
        print(
            f"bootstrap: nothing to do: registry {registry}/ has {have} (retrain with `scalper train all --dataset DIR`)"
        )
        return 0
    from scalper.ml import dataset as ds
    from scalper.ml.bootstrap import bootstrap_bars, describe_source
    from scalper.ml.dataset import DatasetSchemaError

    print(f"bootstrap: registry {registry}/ is not ready ({'; '.join(status.problems)})")
    print(
        "bootstrap: training validator, regime and sizer before trading "
        "(about a minute on a 2-core machine; docs/ML.md, section 0)"
    )
    out = Path(dataset) if dataset else Path(cfg.ml.datasets_dir) / DATASET_NAME
    try:
        t = time.perf_counter()
        bars, source = bootstrap_bars(cfg)
        print(f"[1/2] dataset from {describe_source(source, bars)}", flush=True)
        signals, regime = ds.collect(cfg, bars)
        manifest = ds.write_dataset(out, cfg, signals, regime, source)
        t_data = time.perf_counter() - t
        print(
            f"      {out}/: {manifest['signals']:,} signals ({_counts(manifest['outcomes'])}), "
            f"{manifest['regime_rows']:,} regime rows from {sum(len(b) for b in bars.values()):,} bars in {t_data:.1f} s"
        )
        print(f"[2/2] training ({cfg.ml.train_workers} Ray Train worker(s)) ...", flush=True)
        t = time.perf_counter()
        # the driver holds the small bootstrap dataset already: in-memory Ray Datasets (no
        # Parquet read tasks) keep the run short (training/xgb.py, docs/BENCHMARKS.md); an
        # embedded cluster without the dashboard's processes starts faster on 2 cores
        from scalper.config import with_overrides

        tcfg = with_overrides(cfg, {"ray.include_dashboard": False})
        cards = _train_models(tcfg, out, list(MODELS), registry, data="memory")
        t_train = time.perf_counter() - t
    except (DatasetSchemaError, FileNotFoundError, ValueError) as exc:
        print(f"error: bootstrap: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_cards(cards, registry)
    total = time.perf_counter() - t0
    print(
        f"bootstrap done in {total:.1f} s (dataset {t_data:.1f} s, Ray start + training {t_train:.1f} s): "
        f"models in {registry}/ ({', '.join(f'{n}/{cards[n].version}' for n in MODELS)})"
    )
    return 0


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _evaluate(cfg: Any, dataset: Path, manifest: dict[str, Any], out: str) -> int:
    from scalper import backtest as bt
    from scalper.ml.dataset import read_dataset
    from scalper.ml.evaluation import write_report

    src = manifest.get("source", {})
    scfg = _source_config(cfg, src.get("synthetic_minutes"))
    signals = read_dataset(dataset, cfg, "signals")
    regime = read_dataset(dataset, cfg, "regime")
    try:
        bars = bt.load_bars(
            scfg,
            src.get("data"),
            bool(src.get("synthetic")),
            manifest.get("symbols"),
            src.get("start"),
            src.get("end"),
        )
        data = {s: bt.prepare(s, b, scfg) for s, b in bars.items() if len(b)}
    except (OSError, ValueError) as exc:
        print(f"warning: no backtest effect (cannot reload the dataset's bars: {exc})", file=sys.stderr)
        data = None
    from scalper.ml.evaluation import walk_forward

    try:
        report = walk_forward(scfg, signals, regime, data, progress=_say)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report["dataset"] = str(dataset)
    files = write_report(report, out, title=f"walk-forward: {dataset}")
    print(format_evaluation(report))
    print(f"  files: {', '.join(str(f) for f in files)}")
    return 0


def format_evaluation(report: dict[str, Any]) -> str:
    """The lines `train --evaluate` prints (every figure is in walk_forward.json)."""
    pooled = report.get("pooled", {})
    v, r = pooled.get("validator", {}), pooled.get("regime", {})
    done = [f for f in report["folds"] if "validator" in f]
    lines = [
        f"walk-forward: {len(done)} fold(s) of {len(report['folds'])}, out of sample: validator AUC {_f(v.get('auc'))}, "
        f"Brier {_f(v.get('brier'))} (base rate {_f(v.get('brier_baseline'))}); regime accuracy {_f(r.get('accuracy'))} "
        f"(majority {_f(r.get('majority_accuracy'))})"
    ]
    for f in report["folds"]:
        if "validator" not in f:
            lines.append(f"  fold {f['fold']}: skipped ({f.get('skipped')})")
            continue
        fv, fr, bt = f["validator"], f.get("regime", {}), f.get("backtest", {})
        pnl = " / ".join(f"{bt[k]['net_pnl']:,.0f} ({bt[k]['trades']})" for k in bt)
        lines.append(
            f"  fold {f['fold']} test {f['test'][0][:16]}..{f['test'][1][:16]}: {f['test_signals']} signals, "
            f"AUC {_f(fv.get('auc'))}, Brier {_f(fv.get('brier'))} (base {_f(fv.get('brier_baseline'))}), "
            f"regime {_f(fr.get('accuracy'))} ({_f(fr.get('majority_accuracy'))})"
            + (f"; net P&L (trades) {' / '.join(bt)}: {pnl}" if bt else "")
        )
    for name, t in report.get("backtest_totals", {}).items():
        lines.append(
            f"  {name:>24}: net P&L {t['net_pnl']:>12,.2f}, trades {t['trades']:>5,}, mean Sharpe "
            f"{_f(t['mean_sharpe'])}, worst max DD {_f(t['worst_max_drawdown_pct'])}%"
        )
    return "\n".join(lines)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `collect` and `train` to the `scalper` subcommands."""
    p = sub.add_parser(
        "collect",
        parents=[common],
        help="build the ML dataset: every candidate signal with features and its triple-barrier label",
        description="Run every strategy's rule over the bars, and write each candidate signal (before any "
        "model or risk decision) with its feature vector (data up to its bar only) and its label - did "
        "its own bracket hit the target before the stop within ml.label_horizon_bars - plus the "
        "regime rows, as Parquet with a versioned schema. See docs/ML.md.",
    )
    _add_data_flags(p, symbol=True)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="dataset directory to write (e.g. datasets/ID)"
    )
    p.add_argument(
        "--minutes", type=int, metavar="N", help="length of the synthetic series (feed.synthetic.minutes)"
    )
    p.add_argument("--parallel", action="store_true", help="one Ray task per symbol")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train the validator / regime / sizer models with Ray Train into the registry",
        description="Ray Data reads the dataset, Ray Train (XGBoostTrainer, ml.train_workers workers) trains, "
        "the model registry (ml.registry) keeps the new version with its features, data span, "
        "parameters, metrics and git commit. --evaluate adds the walk-forward report (JSON + HTML). "
        "All the models asked for are fitted in ONE Ray Train run.",
    )
    p.add_argument("model", choices=[*MODELS, "all"], help="which model (sizer trains with the validator)")
    p.add_argument(
        "--dataset",
        metavar="DIR",
        help="a directory written by `scalper collect` (with --bootstrap: where to write its dataset, "
        "default ml.datasets_dir/bootstrap)",
    )
    p.add_argument(
        "--bootstrap",
        action="store_true",
        help="only if the registry lacks a model: build a dataset from the synthetic market "
        "(ml.bootstrap_symbols x ml.bootstrap_minutes) and the configured replay file, and train all "
        "three (what `make run` does first; a quick no-op once the models exist)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config setting for this command, e.g. --set ml.walk_forward_train_days=1 (repeatable)",
    )
    p.add_argument("--registry", metavar="DIR", help="model registry (default: ml.registry)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray Train workers (default: ml.train_workers)")
    p.add_argument("--evaluate", action="store_true", help="also run the walk-forward evaluation")
    p.add_argument("--report", metavar="DIR", help="where --evaluate writes (default: DATASET/evaluation)")
    p.set_defaults(func=cmd_train)
