"""`python -m agentchat bot module:attr --url URL --token T`: run one bot until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from agentchat.bot import run_bot_from_spec


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the bot (a token, or API keys to mint one, from flags or env)."""
    parser = argparse.ArgumentParser(prog="python -m agentchat")
    commands = parser.add_subparsers(dest="command", required=True)
    bot = commands.add_parser("bot", help="run a Bot given as module:attr")
    bot.add_argument("spec", help="module:attr naming a Bot or a callable returning one")
    bot.add_argument("--url", default=os.environ.get("AGENTCHAT_URL", "http://127.0.0.1:8080"))
    bot.add_argument("--token", default=os.environ.get("AGENTCHAT_TOKEN"))
    bot.add_argument("--keys", help="mint tokens locally with name:secret (default AGENTCHAT_KEYS)")
    bot.add_argument("--channel", action="append", dest="channels", help="channel to join (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("AGENTCHAT_LOG_LEVEL", "INFO"))
    try:
        asyncio.run(
            run_bot_from_spec(args.spec, args.url, token=args.token, keys=args.keys, channels=args.channels)
        )
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
