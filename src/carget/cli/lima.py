"""``carget lima prefetch`` and ``carget lima annotate``: carget for lima templates."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError
from ._jsonlines import json_errors, write_json
from ._signals import run_trio

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ..lima.annotate import FileEdit
    from ..lima.compose import Composed
    from ..lima.prefetch import Outcome, ProgressHooks

__all__ = ["lima"]


def _console(quiet: bool = False) -> Console:
    """stderr's console (``quiet``: prints nothing). On a terminal rich wraps to its
    width; in a log or a pipe no line is wrapped at all (a log reader's lines are as long
    as they are), and tables are laid out 160 columns wide so their rows stay on one line
    where possible."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False, quiet=quiet)
    if not console.is_terminal:
        console = Console(stderr=True, highlight=False, quiet=quiet, soft_wrap=True,
                          width=160)
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
    """Prefetch and annotate lima templates (images and archives by CID).

    TEMPLATE is a file, template:NAME (in lima's templates directory), file:// or an
    http(s) URL. Its base: templates are followed as lima 2 follows them, with the default
    base $LIMA_HOME/_config/base.yaml first when it exists.
    """


def _templates_option(f: Any) -> Any:
    return click.option(
        "--templates-dir", "templates_dirs", multiple=True, metavar="DIR",
        type=click.Path(file_okay=False),
        help="lima's templates directory, where template:NAME is found (repeatable; "
             "default: $LIMA_TEMPLATES_PATH, else $LIMA_HOME/_templates, then "
             "share/lima/templates beside limactl on PATH).")(f)


def _compose(template: str, dirs: tuple[str, ...], console: Console) -> Composed:
    """Read TEMPLATE with its bases; print the files it is made of when there are several."""
    from ..lima.compose import compose
    from ..lima.locate import templates_path

    composed = compose(template, templates=templates_path(dirs))
    if len(composed.parts) > 1:
        console.print(f"{template} is made of:")
        for part in composed.parts:
            indent = "  " * len(part.chain)
            name = part.template.path
            line = f"{indent}{part.locator}" if part.locator != name else f"{indent}{name}"
            if part.file is not None and part.locator != name:
                line += f" = {name}"
            if part.real is not None and part.real != os.path.abspath(name):
                line += f" -> {part.real}"
            images = sum(1 for e in part.template.entries if e.path[0] == "images"
                         and len(e.path) == 2)
            if images:
                line += f" ({images} image(s))"
            console.print(line, soft_wrap=True)
    return composed


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
            console.print(f"{o.entry.at} ({o.entry.name}): {o.error}", style="red",
                          soft_wrap=True)


@lima.command()
@click.argument("template")
@_templates_option
@click.option("--arch", default=None,
              help="lima arch to fetch (default: the template's arch:, else this machine's).")
@click.option("--variant", default=None,
              help="Only images of this variant (as limactl start --image-variant); "
                   "default: the variant of the first image of the arch, as lima picks.")
@click.option("--cache-dir", type=click.Path(), default=None,
              help="lima's cache dir (default: ~/.cache/lima, ~/Library/Caches/lima on macOS).")
@click.option("--gateway", "-g", "gateways", multiple=True, metavar="URL",
              help="Trustless gateway to fetch from (repeatable).")
@click.option("--fallback", is_flag=True,
              help="Download entries without a cid (or that IPFS cannot serve) from their "
                   "location, checked by their digest.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds allowed for each entry.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object a line on stdout, one per entry "
                   "({\"event\": \"entry\", ...}), and on failure a last "
                   "{\"event\": \"error\", \"code\": N, \"message\": ...}; nothing on "
                   "stderr (no table, no bar).")
def prefetch(template: str, templates_dirs: tuple[str, ...], arch: str | None,
             variant: str | None, cache_dir: str | None, gateways: tuple[str, ...],
             fallback: bool, timeout: float | None, as_json: bool) -> None:
    """Fetch TEMPLATE's images and archives by CID into lima's download cache.

    The entries are those lima would try for the arch: images of the arch and of the
    first one's variant (or --variant), with their kernel and initrd; archives and firmware
    of the arch. Entries with a cid: come by IPFS; lima's cache layout is kept, so
    limactl start then downloads nothing.

    Exit 0 when every entry is cached, fetched or skipped; else the exit code of the first
    failed entry's error (5 wrong digest, 4 bad blocks, 3 not found, 6 network, 2 a cid
    that is a directory, not a file); 1 when no entry has a cid: (nothing to fetch: run
    carget lima annotate first, or use --fallback), and for a template that cannot be
    right (a location with two digests, a location that is not http(s), a base loop, a
    base or template:NAME not found); 130 when interrupted (SIGINT, SIGTERM, SIGHUP:
    partial downloads kept in the cache's staging dir to resume from)."""
    if not as_json:
        _prefetch(template, templates_dirs, arch, variant, cache_dir, gateways, fallback,
                  timeout, None)
        return

    def emit(event: dict[str, Any]) -> None:
        write_json(sys.stdout, event)

    with json_errors(emit):
        _prefetch(template, templates_dirs, arch, variant, cache_dir, gateways, fallback,
                  timeout, emit)


def _entry_event(o: Outcome) -> dict[str, Any]:
    """One ``--json`` line for one entry of the summary table."""
    e = o.entry
    event: dict[str, Any] = {
        "event": "entry", "entry": e.label, "file": e.source, "where": e.where,
        "name": e.name, "arch": e.arch, "location": e.location,
        "cid": str(e.cid) if e.cid is not None else None, "source": o.source,
        "size": o.size, "seconds": round(o.seconds, 3), "result": o.result}
    if o.error is not None:
        event["error"] = {"code": o.error.exit_code, "message": str(o.error)}
    return event


def _prefetch(template: str, templates_dirs: tuple[str, ...], arch: str | None,
              variant: str | None, cache_dir: str | None, gateways: tuple[str, ...],
              fallback: bool, timeout: float | None,
              emit: Callable[[dict[str, Any]], None] | None) -> None:
    """``prefetch``; with ``emit`` (``--json``) each entry is an event and stderr is
    silent."""
    from ..lima.cache import LimaCache, default_cache_dir
    from ..lima.prefetch import exit_error, plan_prefetch
    from ..lima.prefetch import prefetch as run_prefetch
    from ..lima.template import check_arch

    if arch is not None:
        check_arch(arch)
    console = _console(quiet=emit is not None)
    tpl = _compose(template, templates_dirs, console)
    chosen = _arch(arch or tpl.arch)
    entries = plan_prefetch(tpl, chosen, variant)  # refuse bad entries before anything else
    if not entries:
        variant_text = f" and variant {variant}" if variant else ""
        raise InputError(f"{template}: no entries for arch {chosen}{variant_text}")
    gw = _gateways(gateways)
    cache = LimaCache(cache_dir or default_cache_dir())
    hooks, progress = _progress_hooks(console) if emit is None else (None, None)
    if progress is not None:
        with progress:
            outcomes = run_trio(lambda: run_prefetch(
                tpl, cache, arch=chosen, variant=variant, gateways=gw, fallback=fallback,
                timeout=timeout, hooks=hooks))
    else:
        outcomes = run_trio(lambda: run_prefetch(
            tpl, cache, arch=chosen, variant=variant, gateways=gw, fallback=fallback,
            timeout=timeout))
    if emit is not None:
        for o in outcomes:
            emit(_entry_event(o))
    else:
        _table(outcomes, console)
    err = exit_error(outcomes)
    if err is not None:
        if emit is not None:
            raise err  # the last line is its error event
        # each failure is already printed under the table: exit with its code, no repeat
        raise click.exceptions.Exit(err.exit_code)
    if outcomes and all(o.result.startswith("skipped: no cid") for o in outcomes):
        raise InputError(f"nothing to fetch: no entry has a cid: yet; add them with "
                         f"carget lima annotate {template} --write (or download by "
                         f"location with --fallback)")


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
    tasks: dict[tuple[str, str], TaskID] = {}

    def start(e: Entry, total: int | None) -> None:
        tasks[e.key] = progress.add_task(e.name, total=total)

    def advance(e: Entry, done: int | None, total: int | None) -> None:
        task = tasks.get(e.key)
        if task is None:
            return
        if total is not None:
            progress.update(task, total=total)
        if done is not None:
            progress.update(task, completed=done)

    def finish(e: Entry) -> None:
        task = tasks.pop(e.key, None)
        if task is not None:
            progress.remove_task(task)

    return ProgressHooks(start, advance, finish), progress


@lima.command()
@click.argument("template")
@_templates_option
@click.option("--arch", default=None, help="Only entries of this lima arch (default: all).")
@click.option("--write", is_flag=True,
              help="Rewrite each file that holds an entry, in place (default: print diffs).")
@click.option("--from-dir", type=click.Path(file_okay=False), default=None,
              help="Read each entry's file from DIR (by the location's last path segment) "
                   "instead of downloading it.")
def annotate(template: str, templates_dirs: tuple[str, ...], arch: str | None, write: bool,
             from_dir: str | None) -> None:
    """Add cid: lines (ipfs add --cid-version=1) after each entry's digest: line.

    Each cid: goes into the file that holds its entry: for a lima 2 template, the
    _images/*.yaml base it names; every other byte of every file stays as it was.
    Entries without a digest get a digest: line too, computed in the same pass, since lima
    checks the digest when it downloads over HTTPS. A digest that disagrees with the file
    is an error (exit 5); nothing is then written. With --write, a file carget may not
    write (lima's installed templates, a base read over http(s)) is an error (exit 1)
    before anything is downloaded: copy the template first (limactl template copy).
    """
    from ..lima.annotate import annotate as run_annotate
    from ..lima.template import check_arch

    if arch is not None:
        check_arch(arch)
    console = _console()
    tpl = _compose(template, templates_dirs, console)
    if write:
        _check_writable(tpl, arch)

    def report(entry: object, computed: object) -> None:
        from ..lima.annotate import Computed
        from ..lima.template import Entry

        assert isinstance(entry, Entry) and isinstance(computed, Computed)
        console.print(f"{entry.label}: {computed.cid} {computed.digest} "
                      f"({_size(computed.size)})", soft_wrap=True)

    result = run_annotate(tpl, arch=arch, from_dir=from_dir, report=report)
    counts = {k: sum(1 for *_, status in result.rows if status == k)
              for k in ("added", "updated", "same")}
    console.print(f"{counts['added']} cid(s) added, {counts['updated']} updated, "
                  f"{counts['same']} already right")
    changed = [f for f in result.files if f.changed]
    if not changed:
        console.print(f"{template}: every entry already carries its cid")
        return
    if write:
        for f in changed:
            _write_atomic(f.target, f.text)
            console.print(f"{f.template.path}: written", soft_wrap=True)
        return
    for f in changed:
        _diff(f)
        if f.read_only is not None:
            console.print(f"{f.template.path}: not writable by carget: {f.read_only}",
                          soft_wrap=True)
    sys.stdout.flush()


def _diff(f: FileEdit) -> None:
    name = f.template.path
    diff = difflib.unified_diff(f.template.text.splitlines(keepends=True),
                                f.text.splitlines(keepends=True),
                                fromfile=f"a/{name}", tofile=f"b/{name}")
    for line in diff:
        sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")


def _check_writable(tpl: Composed, arch: str | None) -> None:
    """Refuse ``--write`` before any work when a file holding a selected entry is one
    carget may not write: lima's installed templates, a base read over http(s)."""
    from ..lima.locate import lima_home
    from ..lima.template import select

    wanted = {id(e) for e in select(tpl.entries, arch)}
    for part in tpl.parts:
        if not any(id(e) in wanted for e in part.template.entries):
            continue
        if part.read_only is None and part.real is not None and os.access(part.real, os.W_OK):
            continue
        why = part.read_only or "no permission to write it"
        copy = "limactl template copy --embed-all TEMPLATE FILE"
        if part.locator.startswith("template:"):
            name = part.locator.split(":", 1)[1]
            user = lima_home() / "_templates" / name
            copy = (f"mkdir -p {user.parent} && limactl template copy --verbatim "
                    f"{part.locator} {user}.yaml (lima reads $LIMA_HOME/_templates before "
                    f"its own), or {copy}")
        raise InputError(
            f"{part.template.path}: carget may not write this file ({why}); copy the "
            f"template first: {copy}, then annotate the copy"
        )


def _write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by a temporary file beside it, keeping its mode."""
    from ..atomic import atomic_file

    try:
        mode = os.stat(path).st_mode & 0o7777
        with atomic_file(path, "w", file_mode=mode, encoding="utf-8", newline="") as (f, _):
            f.write(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
