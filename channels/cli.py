"""The `agentchat` command: serve, mint a token, run a bot."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agentchat_server.protocol import validation_message
from agentchat_server.settings import Settings


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


async def serve(settings: Settings, access_log: bool = False) -> int:
    """Run the server until SIGINT/SIGTERM; prints the URL it listens on. Returns the exit code."""
    from agentchat_server.app import PUBLIC_URL, build_app, runner_options

    app = build_app(settings)
    options = runner_options(settings)
    if not access_log:
        options["access_log"] = None  # one line per request is noise; connections and errors are logged
    runner = web.AppRunner(app, shutdown_timeout=5.0, **options)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
    # The demo needs the URL before startup finishes, so bind first and start the app after.
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            print(
                f"agentchat: port {settings.port} on {settings.host} is in use; stop what uses it, or "
                f"pick another port (--port, AGENTCHAT_PORT, or `make run PORT=8081`)",
                file=sys.stderr,
            )
        else:
            print(f"agentchat: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    port = runner.addresses[0][1]  # the bound port (settings.port may be 0)
    url = f"http://{settings.host}:{port}"
    app[PUBLIC_URL].set(url)
    # Everything alive now (modules, app, settings) lives as long as the process: keep it out of
    # the collector's full passes, which otherwise pause the loop for tens of milliseconds.
    gc.collect()
    gc.freeze()
    print(f"agentchat listening on {url}", flush=True)
    if settings.dev:
        print(
            f"open {url}/ in your browser (development mode: /v1/dev/token mints tokens for anyone)",
            flush=True,
        )
        print(
            f"run a bot against it: {command_name()} bot mymodule:bot --url {url} --keys {settings.keys[0]}",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def command_name() -> str:
    """How the shell that started this server reaches the `agentchat` command: its bare name when
    that is what PATH finds, else its path (`.venv/bin/agentchat` under `make run`)."""
    script = Path(sys.argv[0])
    if script.name != "agentchat":
        return "agentchat"  # started as `python -m agentchat_server`: the installed command is there too
    found = shutil.which("agentchat")
    if found is not None and Path(found).resolve() == script.resolve():
        return "agentchat"
    try:
        return str(script.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(script)


def dev_key(settings: Settings) -> str:
    """Development mode's API key: made once and kept beside the SQLite file (./data by default),
    so `agentchat bot --keys ...` works against every restart of `make run`."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.db)
    folder = (
        Path(url.database).parent if url.get_backend_name() == "sqlite" and url.database else Path("data")
    )
    path = folder / "dev.key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    folder.mkdir(parents=True, exist_ok=True)
    key = f"dev:{secrets.token_hex(32)}"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (`--log-format json`)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON: time, level, logger, message, and the traceback if any."""
        line = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _parse_caps(values: list[str] | None) -> dict[str, list[str]]:
    if not values:
        return {"*": ["*"]}
    caps: dict[str, list[str]] = {}
    for value in values:
        pattern, sep, ops = value.partition("=")
        if not sep:
            raise SystemExit(f"--cap takes PATTERN=op,op (got {value!r})")
        caps[pattern] = [op for op in ops.split(",") if op]
    return caps


def main(argv: list[str] | None = None) -> None:
    """The `agentchat` command: parse the command line and run the subcommand."""
    parser = argparse.ArgumentParser(
        prog="agentchat", description="Realtime group chat for agents and people."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the server (settings also from AGENTCHAT_* variables)")
    p_serve.add_argument("--db", help="sqlite+aiosqlite:///path or postgresql+asyncpg://...")
    p_serve.add_argument("--bus", help="'local' or redis://host:port/db")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--keys", help="API keys, comma separated name:secret")
    p_serve.add_argument("--dev", action="store_true", default=None, help="development mode: /v1/dev/token")
    p_serve.add_argument("--demo", action="store_true", default=None, help="start the demo agents")
    p_serve.add_argument("--log-level", default=os.environ.get("AGENTCHAT_LOG_LEVEL", "INFO"))
    p_serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("AGENTCHAT_LOG_FORMAT", "text"),
        help="text (default) or one JSON object per line",
    )
    p_serve.add_argument(
        "--access-log",
        action="store_true",
        default=os.environ.get("AGENTCHAT_ACCESS_LOG", "").lower() in ("1", "true", "yes"),
        help="log every HTTP request (off by default)",
    )

    p_token = sub.add_parser("token", help="mint a client token with an API key")
    p_token.add_argument("--client-id", required=True)
    p_token.add_argument("--kind", default="human", choices=["human", "agent", "system"])
    p_token.add_argument("--ttl", type=int, default=3600)
    p_token.add_argument("--cap", action="append", help="PATTERN=op,op (repeatable); default all")
    p_token.add_argument("--keys", help="name:secret (default AGENTCHAT_KEYS)")
    p_token.add_argument("--json", action="store_true", help="print token and expiry as JSON")

    p_cluster = sub.add_parser("cluster", help="a local cluster: redis-server and N nodes on one PostgreSQL")
    p_cluster.add_argument(
        "--db",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/agentchat_cluster",
        help="created if missing",
    )
    p_cluster.add_argument("--nodes", type=int, default=2)
    p_cluster.add_argument(
        "--port", type=int, default=8081, help="the first node's port; the next ones follow"
    )
    p_cluster.add_argument("--redis-port", type=int, default=6390)
    p_cluster.add_argument("--host", default="127.0.0.1")

    p_bot = sub.add_parser(
        "bot",
        help="run a bot: agentchat bot module:attr [--url URL] [--token T | --keys name:secret] "
        "(the SDK's `python -m agentchat bot`; see its --help)",
        add_help=False,
    )
    p_bot.add_argument("rest", nargs=argparse.REMAINDER)

    args = parser.parse_args(argv)
    if args.command == "serve":
        overrides: dict[str, Any] = {
            k: v
            for k, v in vars(args).items()
            if k in ("db", "bus", "host", "port", "keys", "dev", "demo") and v is not None
        }
        _setup_logging(args.log_level, args.log_format)
        try:
            settings = Settings(**overrides)
        except ValidationError as exc:
            raise SystemExit(f"agentchat: invalid settings: {validation_message(exc)}") from None
        if settings.dev and not settings.keys:
            settings = settings.model_copy(update={"keys": [dev_key(settings)]})
        _install_uvloop()
        try:
            sys.exit(asyncio.run(serve(settings, access_log=args.access_log)))
        except KeyboardInterrupt:
            pass
    elif args.command == "token":
        from agentchat_server.auth import Authenticator

        keys = Settings(**({"keys": args.keys} if args.keys else {})).keys
        if not keys:
            raise SystemExit("no API key: pass --keys name:secret or set AGENTCHAT_KEYS")
        token, expires = Authenticator(keys).mint(
            args.client_id, kind=args.kind, ttl=args.ttl, capabilities=_parse_caps(args.cap)
        )
        print(json.dumps({"token": token, "expires_at": expires}) if args.json else token)
    elif args.command == "cluster":
        from agentchat_server.devcluster import run_cluster

        sys.exit(asyncio.run(run_cluster(args.db, args.nodes, args.port, args.redis_port, args.host)))
    elif args.command == "bot":
        # The bot runner is the SDK's own entry point: the server package never imports the SDK.
        os.execv(sys.executable, [sys.executable, "-m", "agentchat", "bot", *args.rest])
    else:  # pragma: no cover
        parser.print_help()
        sys.exit(2)


if __name__ == "__main__":
    main()
