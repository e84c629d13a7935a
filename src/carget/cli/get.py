"""``carget get`` and ``carget cat``: verified fetching from trustless gateways.

Output conventions (so scripts can rely on them):

* ``cat`` (and ``get -o -``): stdout carries the file's verified bytes and nothing else;
  the digest asked for with ``--digest``, logs, progress and ``--json`` events go to
  stderr.
* ``get``: stdout carries only the computed digest (one ``sha256:HEX`` line) when
  ``--digest`` is given, so a caller can record it; one summary line (``saved NAME
  (SIZE) in S s, RATE, from N gateways``), logs and progress go to stderr; ``-q``
  silences all but errors.
* ``get -o OUT`` follows curl, wget and cp (:func:`output_path`): an existing directory,
  or a path ending in ``/``, receives the result inside it under its own name.
* ``--json`` prints one JSON object per line on stderr (``resolved``, ``resume``,
  ``progress``, ``gateway-dropped``, ``fallback``, ``done``, and on failure a last
  ``{"event": "error", "code": N, "message": ...}``), for programs that draw their own
  bar. The rich bar is drawn only when stderr is a terminal and ``--no-progress`` is not
  given.

Exit codes: 0 ok, 2 usage, 3 not found on any gateway or a path segment that does not
exist (named in the message), 4 verification failed or
incomplete, 5 digest mismatch, 6 network or timeout, 130 interrupted (SIGINT, SIGTERM or
SIGHUP, see :mod:`carget.cli._signals`: temporaries removed; an interrupted ``get`` keeps
what it verified, says so, and the next run resumes unless ``--no-resume``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import CargetError, NetworkError
from ._flagforms import SwitchCommand
from ._jsonlines import error_event, write_json
from ._signals import run_trio

__all__ = ["cat", "figures", "get", "human_size", "output_path"]


def human_size(n: float) -> str:
    """Binary units, as lima's downloader and ``ls -h`` show them: ``51.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def output_path(out: str | None, name: str) -> tuple[str, str | None]:
    """Where ``get`` writes, by the rule curl, wget and cp share, for files and trees
    alike: no ``-o`` is ``./NAME``; an existing directory, or a path ending in ``/`` (made
    if missing), receives ``DIR/NAME``; any other path is the output itself. ``NAME`` is
    the target's last path segment, else its CID. Returns the path and the directory made
    for it (None if none was made), so a failed run can take that away again."""
    if not out:
        return name, None
    made = None
    if out.endswith("/") and not os.path.isdir(out):
        try:
            os.makedirs(out)
        except OSError as exc:
            raise CargetError(f"cannot create {out}: {exc.strerror or exc}") from None
        made = out
    if os.path.isdir(out):
        return os.path.join(out, name), made
    return out, None


def _resume_files(path: str) -> list[str]:
    from ..fetcher.outputs.journal import JOURNAL_SUFFIX, PARTIAL_SUFFIX

    return [path + PARTIAL_SUFFIX, path + JOURNAL_SUFFIX, path + JOURNAL_SUFFIX + ".tmp"]


def _kept_bytes(path: str) -> int | None:
    """Bytes an interrupted run kept for ``path`` (None: nothing kept)."""
    partial, journal = _resume_files(path)[:2]
    if not os.path.lexists(journal):
        return None
    if os.path.isfile(partial):
        from ..fetcher.outputs.journal import kept_file_bytes

        return kept_file_bytes(journal)
    total = 0
    for top, _, names in os.walk(partial):
        for n in names:
            try:
                total += os.lstat(os.path.join(top, n)).st_size
            except OSError:
                pass
    return total


def _discard(path: str) -> None:
    """``--no-resume``: forget what an earlier run kept for ``path``."""
    from ..safetree import remove_tree

    for p in _resume_files(path):
        if os.path.isdir(p) and not os.path.islink(p):
            remove_tree(p)
        elif os.path.lexists(p):
            os.unlink(p)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("target"),
        click.option("--gateway", "-g", "gateways", multiple=True, metavar="URL",
                     help="Trustless gateway to ask (repeatable; before IPFS_GATEWAY, "
                          "$IPFS_PATH/gateway, ~/.ipfs/gateway and the public ones)."),
        click.option("--routing", "routers", multiple=True, metavar="URL",
                     help="Delegated routing endpoint (/routing/v1) to find more gateways."),
        click.option("--digest", default=None, metavar="ALGO:HEX",
                     help="Expected digest of the file: sha256:HEX, sha512:HEX, or a bare "
                          "64-digit HEX (sha256, as sha256sum prints it); checked at the end."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds the whole run may take."),
        click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=30.0, show_default=True,
                     help="Seconds without new bytes after which a stream is abandoned."),
        click.option("--car", "car_out", type=click.Path(dir_okay=False), default=None,
                     help="Also save the verified blocks as a CAR file."),
        click.option("--progress/--no-progress", default=None,
                     help="Draw a progress bar on stderr (default: when it is a terminal)."),
        click.option("--json", "json_events", is_flag=True,
                     help="Print progress events as JSON lines on stderr, and a last "
                          "{\"event\": \"error\", ...} line on failure."),
        click.option("--streams", type=click.IntRange(1, 16), default=2, show_default=True,
                     help="Connections per gateway for large files; those past one a CPU "
                          "open once the first prove slow."),
        click.option("-q", "--quiet", is_flag=True,
                     help="Print nothing on stderr but errors (no bar, no summary)."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Also log every failed attempt (retries, a gateway's 404)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


class _Reporter:
    """Turns the fetcher's events into a rich bar and/or JSON lines on stderr, prints notices
    above the bar, and remembers what the summary line needs."""

    def __init__(self, bar: bool, json_events: bool, label: str, quiet: bool) -> None:
        self.json_events = json_events
        self.quiet = quiet
        self.label = label
        self.progress: Any = None
        self.task: Any = None
        self.began = time.monotonic()
        self.gateways: set[str] = set()
        self.resumed = 0
        if bar:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     _figures(), console=Console(stderr=True),
                                     transient=True)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json_events:
            self.json(event)
        kind = event["event"]
        for key in ("gateway",):
            if kind in ("resolved", "takeover", "streams") and event.get(key):
                self.gateways.add(event[key])
        if kind == "resume":
            self.resumed = event.get("bytes", 0)
            self.notice(f"resuming: {human_size(self.resumed)} already verified")
        if self.progress is None:
            return
        if kind == "resolved" and self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=event.get("size"))
        elif kind in ("progress", "resume") and self.task is not None:
            done = event.get("bytes", 0)
            self.progress.update(self.task, completed=done, total=event.get("total"))

    def json(self, event: dict[str, Any]) -> None:
        write_json(sys.stderr, event)

    def notice(self, message: str) -> None:
        """One line on stderr, above the bar while it is drawn (not with --json or -q)."""
        if self.quiet or self.json_events:
            return
        if self.progress is not None and self.task is not None:
            self.progress.console.print(f"carget: {message}", markup=False, highlight=False,
                                        soft_wrap=True)
        else:
            click.echo(f"carget: {message}", err=True)

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.stop()

    def summary(self, what: str, size: int) -> None:
        """``saved NAME (2.9 MiB) in 0.4 s, 7.1 MiB/s, from 1 gateway``."""
        seconds = max(time.monotonic() - self.began, 1e-3)
        fetched = max(0, size - self.resumed)
        n = len(self.gateways)
        source = f", from {n} gateway{'s' if n != 1 else ''}" if n else ""
        kept = f", {human_size(self.resumed)} resumed" if self.resumed else ""
        took = f"{seconds:.2f}" if seconds < 1 else f"{seconds:.1f}"
        self.notice(f"saved {what} ({human_size(size)}) in {took} s, "
                    f"{human_size(fetched / seconds)}/s{source}{kept}")


def figures(completed: float, total: float | None, speed: float | None) -> str:
    """``12.0 MiB / 51.5 MiB   23%  340.5 MiB/s  0:00:03``: binary units, and nothing
    rather than ``?`` and ``-:--:--`` for what is not known yet."""
    done = human_size(completed)
    parts = [f"{done} / {human_size(total)}" if total else done]
    if total:
        parts.append(f"{100 * completed / total:3.0f}%")
    if speed:
        parts.append(f"{human_size(speed)}/s")
        if total and total > completed:
            left = int((total - completed) / speed)
            parts.append(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")
    return "  ".join(parts)


def _figures() -> Any:
    """The bar's figures column (rich is imported only when a bar is drawn)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Figures(ProgressColumn):
        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            return Text(figures(task.completed, task.total,
                                task.finished_speed or task.speed))

    return Figures()


def _options(gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
             timeout: float | None, idle_timeout: float, car_out: str | None,
             progress: bool | None, json_events: bool, streams: int, quiet: bool,
             verbose: bool, label: str, fallback_url: str | None = None
             ) -> tuple[Any, _Reporter]:
    from ..fetcher.gateways import discover_gateways
    from ..fetcher.types import FetchOptions

    found = discover_gateways(gateways, include_public=False)
    if not found and not routers:
        found = discover_gateways((), include_public=True)
    bar = sys.stderr.isatty() if progress is None else progress
    reporter = _Reporter(bar and not json_events and not quiet, json_events, label, quiet)
    opts = FetchOptions(gateways=found, digest=_digest_arg(digest), fallback_url=fallback_url,
                        timeout=timeout, idle_timeout=idle_timeout, progress=reporter,
                        routers=list(routers), car_out=car_out, streams_per_gateway=streams,
                        log=reporter.notice, verbose=verbose)
    return opts, reporter


def _digest_arg(text: str | None) -> str | None:
    """``--digest``: ``sha256:HEX``, ``sha512:HEX``, or a bare HEX of 64 digits (what
    ``sha256sum`` prints: sha256). A wrong length says so, naming the right one."""
    if text is None:
        return None
    from ..digest import DigestSyntaxError, parse_digest
    from ..errors import UsageError

    try:
        algo, hexpart = parse_digest(text, bare=True)
    except DigestSyntaxError as exc:
        raise UsageError(f"--digest {text.strip()!r}: {exc}") from None
    return f"{algo}:{hexpart}"


@contextmanager
def _reporting(reporter: _Reporter, out: str | None, made: str | None) -> Iterator[None]:
    """Around a run: a last JSON ``error`` event, the notice that an interrupted or cut
    off ``get`` kept its work (and how to resume or discard it), and a directory made
    for ``-o DIR/`` taken away again when the run leaves nothing in it."""
    try:
        yield
    except BaseException as exc:
        reporter.close()
        interrupted = isinstance(exc, KeyboardInterrupt)
        if out is not None and (interrupted or isinstance(exc, NetworkError)):
            kept = _kept_bytes(out)
            if kept is not None:
                reporter.notice(f"{'interrupted: ' if interrupted else ''}"
                                f"the {human_size(kept)} verified so far for {out} are kept; "
                                f"run the same command to resume, or add --no-resume to "
                                f"discard them and start over")
        if made is not None:
            try:
                os.rmdir(made)  # only if empty: a kept download stays where it is
            except OSError:
                pass
        if reporter.json_events:
            # the error event is the run's last line: nothing in plain text after it
            event = error_event(exc)
            if event is None:
                raise
            reporter.json(event)
            raise click.exceptions.Exit(event["code"]) from None
        raise
    reporter.close()


@click.command(cls=SwitchCommand)
@_common
@click.option("-o", "--output", "out", default=None, metavar="PATH",
              help="Where to save: a new path; an existing directory, or a path ending in / "
                   "(created if missing), to save inside it under the target's own name; "
                   "- for stdout. Default: ./NAME, NAME being the last path segment or the "
                   "CID.")
@click.option("--no-resume", is_flag=True,
              help="Discard what an interrupted run kept for this output and start over.")
@click.option("--fallback-url", default=None, metavar="URL",
              help="Plain HTTP(S) mirror used only if IPFS fails (needs --digest).")
def get(target: str, gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
        timeout: float | None, idle_timeout: float, car_out: str | None,
        progress: bool | None, json_events: bool, streams: int, quiet: bool, verbose: bool,
        out: str | None, no_resume: bool, fallback_url: str | None) -> None:
    """Download TARGET (ipfs://CID/path, /ipfs/CID/path, CID/path or a gateway URL) to a
    file or directory, verifying every block; the result appears only when complete.

    \b
    Where it goes, for files and trees alike (as curl -o, wget -P and cp):
      carget get CID/a.iso             ./a.iso
      carget get CID/a.iso -o b.iso    ./b.iso
      carget get CID/a.iso -o dir/     dir/a.iso (dir/ made if missing)
      carget get CID -o existing-dir   existing-dir/CID
      carget get CID/a.iso -o -        stdout, as carget cat

    An interrupted run keeps what it verified; the same command resumes it, and
    --no-resume discards it. With --digest the computed digest is printed on stdout;
    a summary line goes to stderr unless -q. A path that does not exist exits 3
    naming the missing segment and where it was looked for."""
    from ..fetcher.target import parse_target

    name = parse_target(target).default_name
    if out == "-":
        opts, reporter = _options(gateways, routers, digest, timeout, idle_timeout, car_out,
                                  progress, json_events, streams, quiet, verbose, name,
                                  fallback_url)
        with _reporting(reporter, None, None):
            _cat_to_stdout(target, opts)
        return
    path, made = output_path(out, name)
    if no_resume:
        _discard(path)
    opts, reporter = _options(gateways, routers, digest, timeout, idle_timeout, car_out,
                              progress, json_events, streams, quiet, verbose,
                              os.path.basename(path.rstrip("/")) or path, fallback_url)
    from ..fetcher.get import run_get

    with _reporting(reporter, path, made):
        result = run_trio(lambda: run_get(target, path, opts))
    if result.source == "fallback":
        reporter.gateways.clear()
    shown = path + "/" if os.path.isdir(path) and not path.endswith("/") else path
    reporter.summary(shown, result.size)
    if result.digest:
        click.echo(result.digest)


def _cat_to_stdout(target: str, opts: Any) -> Any:
    from ..fetcher.cat import run_cat

    try:
        result = run_trio(lambda: run_cat(target, opts, sys.stdout.buffer))
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CargetError("stdout closed") from None
    if result.digest:
        click.echo(result.digest, err=True)
    return result


@click.command(cls=SwitchCommand)
@_common
def cat(target: str, gateways: tuple[str, ...], routers: tuple[str, ...], digest: str | None,
        timeout: float | None, idle_timeout: float, car_out: str | None,
        progress: bool | None, json_events: bool, streams: int, quiet: bool,
        verbose: bool) -> None:
    """Write the verified bytes of the file TARGET to stdout, in order (nothing is written
    before its block is verified). With --digest the digest is checked at the end and
    printed on stderr."""
    from ..fetcher.target import parse_target

    opts, reporter = _options(gateways, routers, digest, timeout, idle_timeout, car_out,
                              progress, json_events, streams, quiet, verbose,
                              parse_target(target).default_name)
    with _reporting(reporter, None, None):
        _cat_to_stdout(target, opts)
