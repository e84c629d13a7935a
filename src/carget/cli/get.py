"""``carget get`` and ``carget cat``: verified fetching from trustless gateways.

Output conventions (so scripts can rely on them):

* ``cat``: stdout carries the file's verified bytes and nothing else; the digest asked for
  with ``--digest``, logs, progress and ``--json`` events go to stderr.
* ``get``: stdout carries only the computed digest (one ``sha256:HEX`` line) when
  ``--digest`` is given, so a caller can record it; logs, progress and ``--json`` events
  go to stderr.
* ``--json`` prints one JSON object per line on stderr (``resolved``, ``resume``,
  ``progress``, ``gateway-dropped``, ``fallback``, ``done``), for programs that draw
  their own bar. The rich bar is drawn only when stderr is a terminal and
  ``--progress`` is not false.

Exit codes: 0 ok, 2 usage, 3 not found on any gateway, 4 verification failed or
incomplete, 5 digest mismatch, 6 network or timeout, 130 interrupted (SIGINT, SIGTERM or
SIGHUP, see :mod:`carget.cli._signals`: temporaries removed; an interrupted ``get`` keeps
``OUT.carget-partial`` and its journal so the next run resumes).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import CargetError
from ._signals import run_trio


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("target"),
        click.option("--gateway", "-g", "gateways", multiple=True, metavar="URL",
                     help="Trustless gateway to ask (repeatable; before IPFS_GATEWAY, "
                          "$IPFS_PATH/gateway, ~/.ipfs/gateway and the public ones)."),
        click.option("--routing", "routers", multiple=True, metavar="URL",
                     help="Delegated routing endpoint (/routing/v1) to find more gateways."),
        click.option("--digest", default=None, metavar="ALGO:HEX",
                     help="Expected sha256:HEX or sha512:HEX of the file; checked at the end."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds the whole run may take."),
        click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=30.0, show_default=True,
                     help="Seconds without new bytes after which a stream is abandoned."),
        click.option("--car", "car_out", type=click.Path(dir_okay=False), default=None,
                     help="Also save the verified blocks as a CAR file."),
        click.option("--progress", type=click.BOOL, default=None,
                     help="Draw a progress bar on stderr (default: when it is a terminal)."),
        click.option("--json", "json_events", is_flag=True,
                     help="Print progress events as JSON lines on stderr."),
        click.option("--streams", type=click.IntRange(1, 16), default=2, show_default=True,
                     help="Connections per gateway for large files; those past one a CPU "
                          "open once the first prove slow."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


class _Reporter:
    """Turns engine events into a rich bar and/or JSON lines on stderr."""

    def __init__(self, bar: bool, json_events: bool) -> None:
        self.json_events = json_events
        self.progress: Any = None
        self.task: Any = None
        if bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True),
                                     transient=True)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json_events:
            sys.stderr.write(json.dumps(event, separators=(",", ":")) + "\n")
            sys.stderr.flush()
        if self.progress is None:
            return
        kind = event["event"]
        if kind == "resolved" and self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(event["cid"][:16] + "…", total=event.get("size"))
        elif kind in ("progress", "resume") and self.task is not None:
            done = event.get("bytes", 0)
            self.progress.update(self.task, completed=done, total=event.get("total"))

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.stop()


def _log(message: str) -> None:
    click.echo(f"carget: {message}", err=True)


def _options(gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
             timeout: float | None, idle_timeout: float, car_out: str | None,
             progress: bool | None, json_events: bool, streams: int,
             fallback_url: str | None = None) -> tuple[Any, _Reporter]:
    from ..fetcher.engine import FetchOptions
    from ..fetcher.gateways import discover_gateways

    found = discover_gateways(gateways, include_public=False)
    if not found and not routers:
        found = discover_gateways((), include_public=True)
    bar = sys.stderr.isatty() if progress is None else progress
    reporter = _Reporter(bar and not json_events, json_events)
    opts = FetchOptions(gateways=found, digest=digest, fallback_url=fallback_url,
                        timeout=timeout, idle_timeout=idle_timeout, progress=reporter,
                        routers=list(routers), car_out=car_out, streams_per_gateway=streams,
                        log=_log)
    return opts, reporter


@click.command()
@_common
@click.option("-o", "--output", "out", type=click.Path(), default=None,
              help="Output path (default: the last path segment, or the CID).")
@click.option("--fallback-url", default=None, metavar="URL",
              help="Plain HTTP(S) mirror used only if IPFS fails (needs --digest).")
def get(target: str, gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
        timeout: float | None, idle_timeout: float, car_out: str | None,
        progress: bool | None, json_events: bool, streams: int, out: str | None,
        fallback_url: str | None) -> None:
    """Download TARGET (ipfs://CID/path, /ipfs/CID/path, CID/path or a gateway URL) to a
    file or directory, verifying every block; the result appears only when complete.
    With --digest the computed digest is printed on stdout."""
    from ..fetcher.engine import run_get

    opts, reporter = _options(gateways, routers, digest, timeout, idle_timeout, car_out,
                              progress, json_events, streams, fallback_url)
    try:
        result = run_trio(lambda: run_get(target, out or "", opts))
    finally:
        reporter.close()
    if result.digest:
        click.echo(result.digest)


@click.command()
@_common
def cat(target: str, gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
        timeout: float | None, idle_timeout: float, car_out: str | None,
        progress: bool | None, json_events: bool, streams: int) -> None:
    """Write the verified bytes of the file TARGET to stdout, in order (nothing is written
    before its block is verified). With --digest the digest is checked at the end and
    printed on stderr."""
    from ..fetcher.engine import run_cat

    opts, reporter = _options(gateways, routers, digest, timeout, idle_timeout, car_out,
                              progress, json_events, streams)
    try:
        result = run_trio(lambda: run_cat(target, opts, sys.stdout.buffer))
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CargetError("stdout closed") from None
    finally:
        reporter.close()
    if result.digest:
        click.echo(result.digest, err=True)
