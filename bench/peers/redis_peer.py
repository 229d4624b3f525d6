"""Redis pub/sub as an outside fan-out reference: a throwaway `redis-server` on a free loopback port.

Prints the bench's listening line, then becomes redis-server (exec), so the bench measures Redis's own
process. No persistence; the default pub/sub output-buffer bound; enough clients for every scenario.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import sys


def free_port() -> int:
    """A loopback TCP port free at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    """Print the listening line, then exec redis-server on that port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = args.port or free_port()
    print(f"redis listening on http://127.0.0.1:{port}", flush=True)
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--protected-mode", "no", "--loglevel", "warning", "--dir", args.dir]
    cmd += ["--maxclients", str(max(1000, hard - 100))]
    os.execv(exe, cmd)


if __name__ == "__main__":
    main()
