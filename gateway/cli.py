"""The `gateway` command: serve, check-policies, guard, usage, prompts, ab, drift, hash-key, mock-server, bench."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

from gateway import __version__

DEFAULT_PORT = 8080


def _policies_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("GATEWAY_POLICIES") or "policies")


def prompts_dir(arg: str | None, policies: Path | None = None) -> Path:
    """--prompts, $GATEWAY_PROMPTS, or the `prompts/` folder beside the policies folder (the project
    layout keeps them side by side, wherever the command is run from)."""
    if arg or os.environ.get("GATEWAY_PROMPTS"):
        return Path(arg or os.environ["GATEWAY_PROMPTS"])
    return (policies.parent if policies is not None else Path(".")) / "prompts"


def state_dir(arg: str | None) -> Path:
    """Everything the gateway writes lives here: --state-dir, $GATEWAY_STATE_DIR, or ./.gateway."""
    return Path(arg or os.environ.get("GATEWAY_STATE_DIR") or ".gateway")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _setup_logging(level: str, access_log: bool, fmt: str = "text") -> None:
    from gateway.telemetry.logs import setup_logging

    setup_logging(level, access_log, fmt)


def _load_or_exit(policies: Path, prompts: Path):
    from gateway.errors import PolicyError
    from gateway.runtime import load_runtime
    from gateway.upstreams.openai import HttpPool

    pool = HttpPool()
    try:
        return load_runtime(policies, pool, prompts), pool
    except PolicyError as e:
        print(f"gateway: invalid policies ({policies}) or prompts ({prompts}):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level, args.access_log, args.log_format)
    log = logging.getLogger("gateway")
    policies = _policies_dir(args.policies)
    prompts = prompts_dir(args.prompts, policies)
    runtime, pool = _load_or_exit(policies, prompts)
    if args.workers < 1:
        print(f"gateway: --workers must be 1 or more (got {args.workers})", file=sys.stderr)
        return 2
    from gateway.models import embedder

    try:
        embedder.asked_precision()
    except embedder.PrecisionError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 2
    if args.workers > 1:
        if runtime.state.counters != "redis":
            print(f"gateway: --workers {args.workers} needs shared counters: set `state: {{counters: redis}}` in "
                  f"{policies / 'gateway.yaml'} (and the Redis URL in $GATEWAY_REDIS_URL). With the embedded "
                  "counters every worker would enforce each limit and budget on its own.", file=sys.stderr)
            return 2
        from gateway.app import cache_store_kind

        if runtime.cache.enabled and cache_store_kind(runtime) == "embedded":
            print(f"gateway: --workers {args.workers} with the embedded response cache would give every worker a "
                  f"cache of its own (and `gateway cache clear` would reach one of them): set `cache: {{store: "
                  f"redis}}` in {policies / 'gateway.yaml'}, or run one worker.", file=sys.stderr)
            return 2
        from gateway.app import response_store_kind

        if response_store_kind(runtime) == "embedded":
            print(f"gateway: --workers {args.workers} with `responses: {{store: embedded}}` would keep every stored "
                  f"Responses-API response in one worker (a previous_response_id landing on another would not be "
                  f"found): set `responses: {{store: redis}}` in {policies / 'gateway.yaml'}, or run one worker.",
                  file=sys.stderr)
            return 2
        from gateway.workers import supervise

        return supervise(args.workers, _child_args(args), runtime.settings.shutdown_grace_s)
    open_public = runtime.keys.open_mode and not is_loopback(args.host)
    if open_public and not args.allow_open:
        print(f"gateway: refusing to serve in open mode (no keys in {policies / 'gateway.yaml'}) on "
              f"{args.host}, which is not a loopback address. Add keys (README: 'Adding keys') or pass "
              "--allow-open if this really should be open.", file=sys.stderr)
        return 2
    for w in runtime.warnings:
        log.warning("%s", w)
    if runtime.keys.open_mode:
        log.warning("OPEN MODE: %s declares no keys, so any caller that reaches %s:%d is accepted",
                    policies / "gateway.yaml", args.host, args.port)
    sdir = state_dir(args.state_dir)
    sdir.mkdir(parents=True, exist_ok=True)

    def vet(new) -> list[str]:
        if new.keys.open_mode and not is_loopback(args.host) and not args.allow_open:
            return [f"{policies / 'gateway.yaml'}: the edit removes all keys (open mode) while serving on "
                    f"{args.host}; restart with --allow-open to allow that"]
        return []

    # Model threads (torch, spaCy, the detectors' Python) and the event loop share the GIL; a thread
    # that holds it gives it up only every switch interval. At 1 ms instead of 5 ms the loop waits
    # less behind them: event-loop lag p99 8.6-9.7 ms against 11-13 ms, /healthz p99 20-26 ms against
    # 24-33 ms under topics + injection load at c=16, same throughput (3 runs each, this machine).
    sys.setswitchinterval(0.001)
    from gateway.models.workers import single_threaded_blas

    single_threaded_blas()
    from gateway.app import build_app

    ledger = Path(args.ledger) if args.ledger else sdir / "ledger.db"
    from gateway.console.session import SecretError

    try:
        app = build_app(policies, runtime, pool, ledger_path=ledger, prompts_dir=prompts, vet=vet)
    except SecretError as e:
        print(f"gateway: {policies / 'gateway.yaml'}: {e}", file=sys.stderr)
        return 2
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    from gateway.server import serve

    def ready() -> None:
        print(f"gateway {__version__} serving http://{args.host}:{args.port}/v1 (policies: {policies}, "
              f"state: {sdir}) - Ctrl-C to stop", flush=True)

    return serve(app, args.host, args.port, shutdown_timeout=runtime.settings.shutdown_grace_s, loop=loop,
                 on_ready=ready, reuse_port=args.reuse_port)


def _child_args(args: argparse.Namespace) -> list[str]:
    """The worker's command line: the supervisor's own options, without --workers."""
    out = ["--host", args.host, "--port", str(args.port), "--log-level", args.log_level,
           "--log-format", args.log_format]
    for flag in ("policies", "state_dir", "ledger", "prompts"):
        if getattr(args, flag):
            out += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.allow_open:
        out.append("--allow-open")
    if args.access_log:
        out.append("--access-log")
    return out


def cmd_check(args: argparse.Namespace) -> int:
    policies = _policies_dir(args.policies)
    runtime, _ = _load_or_exit(policies, prompts_dir(args.prompts, policies))
    for w in runtime.warnings:
        print(f"warning: {w}")
    names = ", ".join(sorted(runtime.pipelines))
    print(f"ok: {policies}: {len(runtime.router.routes)} model(s), {len(runtime.upstreams)} upstream(s), "
          f"policies: {names}; {len(runtime.prompts.versions)} prompt(s); "
          f"{'open mode' if runtime.keys.open_mode else 'keys required'}")
    return 0


def cmd_console_example_data(args: argparse.Namespace) -> int:
    from gateway.console.example_data import write_example_ledger, write_example_predictions

    if args.rows < 1 or args.days <= 0:
        print("gateway console example-data: --rows must be at least 1 and --days above 0", file=sys.stderr)
        return 2
    path = state_dir(args.state_dir) / "ledger.db"
    n = write_example_ledger(path, args.rows, days=args.days)
    predictions = write_example_predictions(path.with_name("tabular.db"), max(1, args.rows // 10), days=args.days)
    print(f"added {n:,} example rows over {args.days:g} days to {path}, and {predictions:,} predictions of the "
          f"`churn` tabular model to {path.with_name('tabular.db')}; open http://127.0.0.1:8080/ui/ after "
          f"`gateway serve --state-dir {path.parent}`")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from gateway.config import schemas

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"gateway schemas: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    try:
        written = schemas.write_all(out)
    except OSError as e:
        print(f"gateway schemas: cannot write to {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"{len(written)} JSON Schemas; point an editor at one with a first line such as\n"
          f"  # yaml-language-server: $schema={written[0]}", file=sys.stderr)
    return 0


def cmd_prices_import(args: argparse.Namespace) -> int:
    import datetime as dt

    from gateway.metering import price_import

    pricing = Path(args.pricing) if args.pricing else Path(args.policies or "policies") / "pricing.yaml"
    try:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else dt.date.today()
    except ValueError:
        print(f"gateway prices import: --as-of {args.as_of!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    try:
        table = price_import.read_table(Path(args.file))  # its errors name the file
    except ValueError as e:
        print(f"gateway prices import: {e}", file=sys.stderr)
        return 2
    try:
        text = pricing.read_text(encoding="utf-8") if pricing.exists() else "models:\n"
        providers = set(args.providers.split(",")) if args.providers else None
        merged, report = price_import.merge(text, table, as_of=as_of, force=args.force, providers=providers)
    except (OSError, ValueError) as e:
        print(f"gateway prices import: {pricing}: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    if args.dry_run:
        print(f"(dry run: {pricing} not changed)")
        return 0
    price_import.write_atomically(pricing, merged)
    print(f"wrote {pricing}; a running gateway picks it up on its next reload")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    import json

    from gateway import openapi

    text = json.dumps(openapi.document(), indent=2, sort_keys=True) + "\n"
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"gateway openapi: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    from gateway.auth import hash_key

    key = args.key if args.key is not None else getpass.getpass("key to hash: ")
    if not key:
        print("gateway: empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def cmd_mock_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.mock_server import build_mock_app

    logging.basicConfig(level=logging.WARNING)
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    print(f"mock OpenAI-compatible server on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(build_mock_app(), host=args.host, port=args.port, access_log=None, print=None, loop=loop)
    return 0


def _state_settings(policies: Path):
    """The `state:` section of gateway.yaml (defaults when there is no gateway.yaml); exit 2 on errors."""
    from gateway.config.gateway_file import GatewayFile
    from gateway.config.yamlfile import load_model
    from gateway.errors import PolicyError
    from gateway.state.config import StateSettings

    path = policies / "gateway.yaml"
    if not path.is_file():
        return StateSettings()
    try:
        return load_model(path, GatewayFile)[1].state
    except PolicyError as e:
        print("\n".join(f"gateway: {p}" for p in e.problems), file=sys.stderr)
        raise SystemExit(2) from None


def ledger_reader(args: argparse.Namespace, *, must_exist: bool = True):
    """What reports read: --ledger FILE (SQLite), else the ledger gateway.yaml's `state.ledger` names
    (PostgreSQL, or STATE_DIR/ledger.db). Exit 2 with a message when there is none."""
    from gateway.metering.ledger import SqliteReader

    if getattr(args, "ledger", None):
        path = Path(args.ledger)
        if must_exist and not path.is_file():
            print(f"gateway: no ledger file {path}", file=sys.stderr)
            raise SystemExit(2)
        return SqliteReader(path)
    settings = _state_settings(_policies_dir(getattr(args, "policies", None)))
    from gateway.state.ledger import open_reader

    path = state_dir(args.state_dir) / "ledger.db"
    if must_exist and settings.ledger == "sqlite" and not path.is_file():
        print(f"gateway: no ledger at {path} (pass --ledger or --state-dir; the gateway writes it while serving)",
              file=sys.stderr)
        raise SystemExit(2)
    return open_reader(settings, path)


def cmd_usage(args: argparse.Namespace) -> int:
    import time

    from gateway.metering.report import parse_when, render, usage_rows

    ledger = ledger_reader(args)
    try:
        since = parse_when(args.since)
        until = parse_when(args.until) if args.until else time.time() + 1
        rows = usage_rows(ledger, since, until, args.by)
    except ValueError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    print(render(rows, args.by, args.format))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`gateway db migrate|status`: the PostgreSQL ledger's schema (the SQLite one migrates itself)."""
    from gateway.state import postgres
    from gateway.state.config import StateError

    policies = _policies_dir(args.policies)
    settings = _state_settings(policies)
    if settings.ledger != "postgres":
        print(f"gateway db: {policies / 'gateway.yaml'} keeps the ledger in SQLite (state.ledger: {settings.ledger}), "
              "which migrates itself when the gateway starts; `gateway db` is for state.ledger: postgres",
              file=sys.stderr)
        return 2
    known = len(postgres.migrations())
    try:
        if args.db_command == "migrate":
            before, after = postgres.migrate(settings)
            print(f"ledger schema {settings.postgres_schema!r} at {postgres.where(settings)}: "
                  + (f"migrated from version {before} to {after}" if before != after else f"already at version {after}"))
        else:
            version = postgres.installed_version(settings)
            state = ("current" if version == known else "newer than this gateway" if version > known
                     else "needs `gateway db migrate`")
            print(f"ledger schema {settings.postgres_schema!r} at {postgres.where(settings)}: version {version} of "
                  f"{known} ({state})")
            return 0 if version == known else 1
    except StateError as e:
        print(f"gateway db: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from gateway.prompts.cli import main as prompts_main

    return prompts_main(args, prompts_dir(args.prompts))


def cmd_ab(args: argparse.Namespace) -> int:
    from gateway.experiments.cli import main as ab_main

    return ab_main(args, _policies_dir(args.policies))


def cmd_drift(args: argparse.Namespace) -> int:
    from gateway.tabular.cli import main as drift_main

    return drift_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from gateway.bench.run import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible LLM gateway with guardrails.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--policies", help="policies directory (default: $GATEWAY_POLICIES or ./policies)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--state-dir", help="where the gateway writes its state (default: $GATEWAY_STATE_DIR or ./.gateway)")
    p.add_argument("--ledger", help="usage ledger SQLite file (default: STATE_DIR/ledger.db)")
    p.add_argument("--prompts", help="prompts directory (default: $GATEWAY_PROMPTS, or prompts/ beside the policies)")
    p.add_argument("--allow-open", action="store_true", help="allow open mode (no keys) on a non-loopback address")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log one line per request (never prompt text)")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="text (default) or json: one JSON object per line, with request id, key, status, latency")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes on one port (needs state.counters: redis); default 1")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for workers
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-policies", help="validate the policies and prompts directories; exit 2 on errors")
    p.add_argument("--policies", help="policies directory (default: $GATEWAY_POLICIES or ./policies)")
    p.add_argument("--prompts", help="prompts directory (default: $GATEWAY_PROMPTS, or prompts/ beside the policies)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("usage", help="tokens and cost from the usage ledger")
    p.add_argument("--since", default="30d", help="start: 2026-11-01, 2026-11-01T12:00 or 7d/24h/30m ago (default 30d)")
    p.add_argument("--until", help="end (default: now); same forms as --since")
    p.add_argument("--by", default="key", choices=["key", "model", "served", "day", "prompt", "upstream"],
                   help="model: the name the client asked for; served: the upstream model that answered")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--ledger", help="a SQLite ledger file (default: the ledger gateway.yaml's state.ledger names)")
    p.add_argument("--policies", help="policies directory, for state.ledger (default: $GATEWAY_POLICIES or ./policies)")
    p.add_argument("--state-dir", help="state directory (default: $GATEWAY_STATE_DIR or ./.gateway)")
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser("db", help="the PostgreSQL ledger's schema: migrate, status")
    p.add_argument("db_command", choices=["migrate", "status"])
    p.add_argument("--policies", help="policies directory (default: $GATEWAY_POLICIES or ./policies)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("prompts", help="versioned prompts: list, show, diff, new, promote, rollback, render")
    from gateway.prompts.cli import add_arguments as add_prompt_arguments

    add_prompt_arguments(p)
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("ab", help="A/B experiments: report NAME, power")
    from gateway.experiments.cli import add_arguments as add_ab_arguments

    add_ab_arguments(p)
    p.set_defaults(func=cmd_ab)

    p = sub.add_parser("drift", help="data drift: fit a reference profile, report on a current window")
    from gateway.tabular.cli import add_arguments as add_drift_arguments

    add_drift_arguments(p)
    p.set_defaults(func=cmd_drift)

    from gateway import guard_cli
    from gateway.evaluation import cli as eval_cli

    p = sub.add_parser("eval", help="offline eval suites: run SUITE, runs, compare A B")
    p.add_argument("--policies", help="policies folder (default: ./policies or $GATEWAY_POLICIES)")
    p.add_argument("--prompts", help="prompts folder (default: prompts/ beside the policies)")
    p.add_argument("--state-dir", help="where runs, the cache and the ledger live (default ./.gateway)")
    eval_cli.add_arguments(p)
    p.set_defaults(func=lambda a: eval_cli.main(a, _policies_dir(a.policies), prompts_dir(a.prompts, _policies_dir(a.policies)),
                                                state_dir(a.state_dir)))

    p = sub.add_parser("tabular", help="example tabular model: example-server, example-data", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("gateway.tabular.example_model", fromlist=["main"]).main(a.rest))

    guard_cli.add_parser(sub)

    p = sub.add_parser("console", help="the web console at /ui: example-data (a ledger of made-up traffic to try it on)")
    csub = p.add_subparsers(dest="console_command", required=True)
    q = csub.add_parser("example-data", help="append made-up traffic to the state directory's SQLite ledger")
    q.add_argument("--state-dir", help="where the ledger lives (default ./.gateway or $GATEWAY_STATE_DIR)")
    q.add_argument("--rows", type=int, default=20_000, help="rows to add (default 20000)")
    q.add_argument("--days", type=float, default=7, help="spread over the last DAYS days (default 7)")
    q.set_defaults(func=cmd_console_example_data)

    p = sub.add_parser("train", help="retrain a learned guardrail detector (injection, faithfulness, pii)")
    from gateway.training.cli import add_arguments as add_train_arguments

    add_train_arguments(p)
    p.set_defaults(func=lambda a: __import__("gateway.training.cli", fromlist=["main"]).main(a))

    from gateway.cache.cli import add_parser as add_cache_parser

    add_cache_parser(sub)

    p = sub.add_parser("schemas", help="write the JSON Schemas of gateway.yaml, policies, pricing, experiments, "
                                       "prompt versions and eval suites (for editors)")
    p.add_argument("--out", required=True, help="directory to write <name>.schema.json files into")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("prices", help="the price table: import LiteLLM's community prices into pricing.yaml")
    psub = p.add_subparsers(dest="prices_command", required=True)
    q = psub.add_parser("import", help="merge model_prices_and_context_window.json into policies/pricing.yaml")
    q.add_argument("file", help="LiteLLM's model_prices_and_context_window.json (in the litellm wheel: "
                   "litellm/model_prices_and_context_window_backup.json)")
    q.add_argument("--policies", help="policies directory (default ./policies)")
    q.add_argument("--pricing", help="the pricing file to merge into (default <policies>/pricing.yaml)")
    q.add_argument("--force", action="store_true", help="replace your own entries of the same names")
    q.add_argument("--providers", help="only these litellm_provider values, comma-separated (e.g. openai,anthropic)")
    q.add_argument("--as-of", help="the date recorded on each imported price (default today)")
    q.add_argument("--dry-run", action="store_true", help="report, change nothing")
    q.set_defaults(func=cmd_prices_import)

    p = sub.add_parser("openapi", help="print (or --out FILE) the OpenAPI 3.1 document of the gateway's HTTP API")
    p.add_argument("--out", help="write it to this file instead of stdout")
    p.set_defaults(func=cmd_openapi)

    p = sub.add_parser("hash-key", help="print the SHA-256 to put in gateway.yaml for a key")
    p.add_argument("key", nargs="?", help="the key (prompted for if omitted, so it stays out of shell history)")
    p.set_defaults(func=cmd_hash_key)

    p = sub.add_parser("mock-server", help="serve the mock model as an OpenAI-compatible HTTP server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.set_defaults(func=cmd_mock_server)

    p = sub.add_parser("bench", help="measure the gateway's overhead against direct calls and a minimal proxy")
    from gateway.bench.run import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench)
    return parser


_SERVERS = ("serve", "mock-server", "bench")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in _SERVERS and hasattr(signal, "SIGPIPE"):
        # Report commands piped into `head` should end quietly, as Unix tools do. Servers keep Python's
        # default (SIGPIPE ignored) so a client that hangs up is an exception, not the end of the process.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
