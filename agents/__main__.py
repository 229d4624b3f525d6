"""`python -m agentchat bot SPEC` runs one bot; `python -m agentchat demo` runs the demo agents.

Both run until SIGINT or SIGTERM, then shut down gracefully and exit with status 0. Tokens come
from `--token` / AGENTCHAT_TOKEN, or are minted locally from an API key (`--keys` / AGENTCHAT_KEYS,
`name:secret`, the first of a comma-separated list).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from agentchat.bot import run_bot_from_spec
from agentchat.errors import AgentChatError
from agentchat.examples import run_demo
from agentchat.tokens import first_key, key_minter

DEFAULT_URL = "http://127.0.0.1:8080"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the bot or the demo; bad arguments exit with status 2."""
    parser = argparse.ArgumentParser(prog="python -m agentchat")
    commands = parser.add_subparsers(dest="command", required=True)
    bot = commands.add_parser("bot", help="run a Bot given as module:attr")
    bot.add_argument("spec", help="module:attr naming a Bot or a callable returning one")
    bot.add_argument("--url", default=os.environ.get("AGENTCHAT_URL", DEFAULT_URL))
    bot.add_argument("--token", default=os.environ.get("AGENTCHAT_TOKEN"))
    bot.add_argument("--keys", help="mint tokens locally with name:secret (default AGENTCHAT_KEYS)")
    bot.add_argument("--channel", action="append", dest="channels", help="channel to join (repeatable)")
    bot.add_argument(
        "--wait-for-server", type=float, metavar="SECONDS", help="give up after this long (default: never)"
    )
    demo = commands.add_parser("demo", help="run the demo agents (echo and planner)")
    demo.add_argument("--url", default=os.environ.get("AGENTCHAT_URL", DEFAULT_URL))
    demo.add_argument("--channel", default="room:lobby")
    demo.add_argument("--keys", help="mint tokens locally with name:secret (default AGENTCHAT_KEYS)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("AGENTCHAT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "bot":
            asyncio.run(
                run_bot_from_spec(
                    args.spec,
                    args.url,
                    token=args.token,
                    keys=args.keys,
                    channels=args.channels,
                    wait_for_server=args.wait_for_server,
                )
            )
        else:
            keys = args.keys or os.environ.get("AGENTCHAT_KEYS")
            if not keys:
                parser.error("no API key: pass --keys name:secret or set AGENTCHAT_KEYS")
            asyncio.run(_demo(args.url, keys, args.channel))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    except AgentChatError as exc:
        print(f"agentchat: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C during shutdown: nothing left worth a traceback


async def _demo(url: str, keys: str, channel: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_demo(url, key_minter(keys), channel, stop=stop, api_key=first_key(keys))


if __name__ == "__main__":
    main()
