"""`scalper serve`: the model app (validator, regime, sizer) on Ray Serve, on its own."""

from __future__ import annotations

import argparse
import sys
import time

from scalper.cli import EXIT_BAD_INPUT, _load_config

HOW_TO_CALL = """\
models on Ray Serve: app {app!r} on {where}, registry {registry}
  serving: {versions}
  from Python on this cluster (batched; rows = 2-D float32 in the model card's feature order):
    from ray import serve
    h = serve.get_deployment_handle("validator", app_name="{app}")
    version, p = h.predict.remote(rows).result()
{http}  new versions: `scalper train ...` registers one; replicas following `latest` load it
  within {watch:.0f} s (check it first: scalper serve --reload). Ctrl-C stops the app."""


def cmd_serve(args: argparse.Namespace) -> int:
    from scalper.config import with_overrides
    from scalper.ml.registry import ModelFileError, ModelNotFoundError, ModelSchemaError

    cfg = _load_config(args.config)
    over = {
        k: v for k, v in (("ml.registry", args.registry), ("serve.http_port", args.port)) if v is not None
    }
    if args.http:
        over["serve.http"] = True
    cfg = with_overrides(cfg, over) if over else cfg
    from serve.models import APP, ROUTE, WATCH_S, deploy_models, expected_features, resolve_versions

    try:
        # the registry first: a missing or unusable model is refused before a cluster starts
        versions = resolve_versions(cfg)
        if args.reload:  # the replicas watch the registry: check what they will move to
            print(
                f"registry {cfg.ml.registry}: the running replicas move to {versions} within {WATCH_S:.0f} s"
            )
            return 0
        from actors.backtests import ensure_ray

        where = ensure_ray(cfg)  # the cluster's address, printed below
        versions = deploy_models(cfg)
    except (ModelSchemaError, ModelNotFoundError, ModelFileError) as exc:
        print(f"scalper serve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    http = ""
    if cfg.serve.http:
        url = f"http://127.0.0.1:{cfg.serve.http_port}{ROUTE}"
        # a command that runs as printed: one row of zeros as wide as the validator's features
        zeros = ",".join("0" * len(expected_features(cfg, "validator")))
        http = (
            f"  over HTTP (each row: the model's features in its card's order; the answer lists them):\n"
            f'    curl -s {url} -d \'{{"model": "validator", "rows": [[{zeros}]]}}\'\n'
        )
    print(
        HOW_TO_CALL.format(
            app=APP, where=where, registry=cfg.ml.registry, versions=versions, http=http, watch=WATCH_S
        ),
        flush=True,
    )
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        from serve.models import delete_models

        delete_models()
        print("model app stopped")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `serve` to the `scalper` subcommands."""
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="run the validator, regime and sizer models on Ray Serve and print how to call them",
        description="Start (or attach to: ray.address / RAY_ADDRESS) a Ray cluster and run the model "
        "app: one batched deployment per model, loaded from the registry after a schema check. No "
        "HTTP unless --http (127.0.0.1 only). Replicas follow the registry's `latest` and swap in "
        "place; --reload checks the registry's latest versions without starting anything. A paper "
        "run with ml.enabled uses this app when it is running, else starts its own.",
    )
    p.add_argument("--registry", metavar="DIR", help="model registry (default: ml.registry)")
    p.add_argument("--http", action="store_true", help="also serve a JSON API on 127.0.0.1 (POST /models)")
    p.add_argument("--port", type=int, metavar="N", help="HTTP port (default: serve.http_port)")
    p.add_argument(
        "--reload",
        action="store_true",
        help="check the registry's latest versions (schema) that the running replicas will move to",
    )
    p.set_defaults(func=cmd_serve)
