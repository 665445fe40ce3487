"""``run``'s options for HTTP load from Locust: its workers, here and on other machines,
where its master listens, and where the app they load is served and found."""

from __future__ import annotations

import argparse
from typing import Any

from sqla_bench.commands.options import MAX_PROCESSES, number
from sqla_bench.run.plan import LOAD_GENERATORS


def add_locust_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--load-generator",
        choices=LOAD_GENERATORS,
        default="aiohttp",
        help="what sends the web scenarios' HTTP load: the built-in aiohttp client in this "
        "process, or Locust (pip install 'sqla-bench[locust]'): a master and "
        "--load-workers workers in processes of their own, and workers on other machines "
        "(sqla-bench load-worker), as docs/howto/load.md says (default: aiohttp)",
    )
    run.add_argument(
        "--load-workers",
        type=number(int, 0, MAX_PROCESSES),
        default=2,
        metavar="N",
        help=f"local Locust workers with --load-generator locust (default: 2, at most "
        f"{MAX_PROCESSES}; 0: only the remote ones)",
    )
    run.add_argument(
        "--load-remote-workers",
        type=number(int, 0, MAX_PROCESSES),
        default=0,
        metavar="M",
        help="Locust workers on other machines to wait for, beside the local ones: each runs "
        "'sqla-bench load-worker --master HOST:PORT' once for the whole run (default: 0)",
    )
    run.add_argument(
        "--locust-master",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where Locust's master listens for its workers (default: 127.0.0.1 on a free "
        "port, which only local workers find; for remote ones, an address of this machine "
        "they reach, or 0.0.0.0, and a port)",
    )
    run.add_argument(
        "--serve-host",
        default="127.0.0.1",
        metavar="HOST",
        help="with --load-generator locust: the address the web app listens on (default: "
        "127.0.0.1; for remote workers, an address of this machine they reach, or 0.0.0.0)",
    )
    run.add_argument(
        "--serve-port",
        type=number(int, 0, 65535),
        default=0,
        metavar="PORT",
        help="the port the web app listens on (default: 0, a free one for each load; give "
        "one to open it on a firewall)",
    )
    run.add_argument(
        "--advertise-host",
        metavar="HOST",
        help="the address Locust's workers send their requests to (default: --serve-host, "
        "or 127.0.0.1 where that is 0.0.0.0)",
    )


def locust_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The plan's fields these options set."""
    return {
        "load_generator": args.load_generator,
        "load_workers": args.load_workers,
        "remote_workers": args.load_remote_workers,
        "locust_master": args.locust_master,
        "serve_host": args.serve_host,
        "serve_port": args.serve_port,
        "advertise_host": args.advertise_host,
    }
