"""``carget lima prefetch`` and ``carget lima annotate``: carget for lima templates."""

from __future__ import annotations

import difflib
import os
import sys
from typing import TYPE_CHECKING

import click

from ..errors import InputError
from ._signals import run_trio

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ..lima.prefetch import Outcome, ProgressHooks

__all__ = ["lima"]


def _console() -> Console:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log or a pipe: keep table rows on one line where possible
    return console


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    x = n / 1024
    for unit in ("KiB", "MiB"):
        if x < 1024:
            return f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"


def _arch(arch: str | None) -> str:
    from ..lima.template import check_arch, host_arch

    return check_arch(arch) if arch else host_arch()


@click.group()
def lima() -> None:
    """Prefetch and annotate lima templates (images and archives by CID)."""


def _gateways(given: tuple[str, ...]) -> list[str]:
    """Gateways named with --gateway, only those; else the IPIP-280 order (IPFS_GATEWAY,
    $IPFS_PATH/gateway or ~/.ipfs/gateway, then the built-in public gateways)."""
    from ..fetcher.gateways import discover_gateways, normalize_gateway

    if given:
        return [normalize_gateway(g) for g in given]
    return discover_gateways()


def _table(outcomes: list[Outcome], console: Console) -> None:
    from rich.table import Table

    table = Table(title="carget lima prefetch", title_justify="left")
    for col in ("entry", "source", "size", "time", "result"):
        table.add_column(col, justify="right" if col in ("size", "time") else "left")
    for o in outcomes:
        style = "red" if o.error else ("dim" if o.result.startswith("skipped") else "")
        # a failure's message can be long: the table says which, the lines below say why
        result = f"failed (exit {o.error.exit_code})" if o.error else o.result
        table.add_row(o.entry.label, o.source, _size(o.size),
                      f"{o.seconds:.1f} s" if o.seconds else "-", result, style=style)
    console.print(table)
    for o in outcomes:
        if o.error is not None:
            console.print(f"{o.entry.where} ({o.entry.name}): {o.error}", style="red",
                          soft_wrap=True)


@lima.command()
@click.argument("template", type=click.Path(dir_okay=False))
@click.option("--arch", default=None, help="lima arch to fetch (default: this machine's).")
@click.option("--cache-dir", type=click.Path(), default=None,
              help="lima's cache dir (default: ~/.cache/lima, ~/Library/Caches/lima on macOS).")
@click.option("--gateway", "gateways", multiple=True, metavar="URL",
              help="Trustless gateway to fetch from (repeatable).")
@click.option("--fallback", is_flag=True,
              help="Download entries without a cid (or that IPFS cannot serve) from their "
                   "location, checked by their digest.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds allowed for each entry.")
def prefetch(template: str, arch: str | None, cache_dir: str | None, gateways: tuple[str, ...],
             fallback: bool, timeout: float | None) -> None:
    """Fetch TEMPLATE's images and archives by CID into lima's download cache.

    Exit 0 when every entry is cached, fetched or skipped; else the exit code of the first
    failed entry's error (5 wrong digest, 4 bad blocks, 3 not found, 6 network, 2 a cid
    that is a directory, not a file); 1 for a template that cannot be right (a location
    with two digests, a location that is not http(s)); 130 when interrupted (SIGINT,
    SIGTERM, SIGHUP: partial downloads kept in the cache's staging dir to resume from)."""
    from ..lima.cache import LimaCache, default_cache_dir
    from ..lima.prefetch import exit_error, plan_prefetch
    from ..lima.prefetch import prefetch as run_prefetch
    from ..lima.template import load_template

    chosen = _arch(arch)
    tpl = load_template(template)
    entries = plan_prefetch(tpl, chosen)  # refuse bad entries before anything else
    if not entries:
        raise InputError(f"{template}: no entries for arch {chosen}")
    gw = _gateways(gateways)
    cache = LimaCache(cache_dir or default_cache_dir())
    console = _console()
    hooks, progress = _progress_hooks(console)
    if progress is not None:
        with progress:
            outcomes = run_trio(lambda: run_prefetch(
                tpl, cache, arch=chosen, gateways=gw, fallback=fallback, timeout=timeout,
                hooks=hooks))
    else:
        outcomes = run_trio(lambda: run_prefetch(
            tpl, cache, arch=chosen, gateways=gw, fallback=fallback, timeout=timeout))
    _table(outcomes, console)
    err = exit_error(outcomes)
    if err is not None:
        raise err


def _progress_hooks(console: Console) -> tuple[ProgressHooks | None, Progress | None]:
    """A rich progress bar per entry on a terminal; nothing when stderr is not one."""
    if not console.is_terminal:
        return None, None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from ..lima.prefetch import ProgressHooks
    from ..lima.template import Entry

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=console, transient=True)
    tasks: dict[str, TaskID] = {}

    def start(e: Entry, total: int | None) -> None:
        tasks[e.where] = progress.add_task(e.name, total=total)

    def advance(e: Entry, done: int | None, total: int | None) -> None:
        task = tasks.get(e.where)
        if task is None:
            return
        if total is not None:
            progress.update(task, total=total)
        if done is not None:
            progress.update(task, completed=done)

    def finish(e: Entry) -> None:
        task = tasks.pop(e.where, None)
        if task is not None:
            progress.remove_task(task)

    return ProgressHooks(start, advance, finish), progress


@lima.command()
@click.argument("template", type=click.Path(dir_okay=False))
@click.option("--arch", default=None, help="Only entries of this lima arch (default: all).")
@click.option("--write", is_flag=True, help="Rewrite TEMPLATE in place (default: print a diff).")
@click.option("--from-dir", type=click.Path(file_okay=False), default=None,
              help="Read each entry's file from DIR (by the location's last path segment) "
                   "instead of downloading it.")
def annotate(template: str, arch: str | None, write: bool, from_dir: str | None) -> None:
    """Add cid: lines (ipfs add --cid-version=1) after each entry's digest: line.

    Entries without a digest get a digest: line too, computed in the same pass, since lima
    checks the digest when it downloads over HTTPS. A digest that disagrees with the file
    is an error (exit 5); TEMPLATE is then left as it was.
    """
    from ..lima.annotate import annotate as run_annotate
    from ..lima.template import check_arch, load_template

    if arch is not None:
        check_arch(arch)
    tpl = load_template(template)
    console = _console()

    def report(entry: object, computed: object) -> None:
        from ..lima.annotate import Computed
        from ..lima.template import Entry

        assert isinstance(entry, Entry) and isinstance(computed, Computed)
        console.print(f"{entry.label}: {computed.cid} {computed.digest} ({_size(computed.size)})")

    result = run_annotate(tpl, arch=arch, from_dir=from_dir, report=report)
    counts = {k: sum(1 for *_, status in result.rows if status == k)
              for k in ("added", "updated", "same")}
    console.print(f"{counts['added']} cid(s) added, {counts['updated']} updated, "
                  f"{counts['same']} already right")
    if result.text == tpl.text:
        console.print(f"{template}: every entry already carries its cid")
        return
    if write:
        _write_atomic(template, result.text)
        console.print(f"{template}: written")
        return
    diff = difflib.unified_diff(tpl.text.splitlines(keepends=True),
                                result.text.splitlines(keepends=True),
                                fromfile=f"a/{template}", tofile=f"b/{template}")
    for line in diff:
        sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    sys.stdout.flush()


def _write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by a temporary file beside it, keeping its mode."""
    from ..atomic import atomic_file

    try:
        mode = os.stat(path).st_mode & 0o7777
        with atomic_file(path, "w", file_mode=mode, encoding="utf-8", newline="") as (f, _):
            f.write(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
