"""The state one run shares among its tasks (trio): the gateways and their fates, the
errors so far, progress, the read budget, kept connections; and the helpers every
strategy uses (a worker's turn on a gateway, the nursery that raises one error, the
run's timeout).

A gateway that sends a bad block is dropped for the run; failures back it off
(``Retry-After``, or an exponential backoff) and after :data:`MAX_FAILURES` drop it; a
404 retires it. :data:`FATAL_ERRORS` are the errors that end the run at once: the
content, the caller or the output is at fault, not the gateway, so asking another one
cannot help.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import trio

from ..digest import parse_digest
from ..errors import (
    CARError,
    CargetError,
    DagCBORError,
    DagPBError,
    FetchTimeout,
    HashMismatch,
    IncompleteDAG,
    InputError,
    NetworkError,
    NotFoundError,
    OutputError,
    RetryLater,
    UnixFSError,
    UnsafePathError,
    UsageError,
    VerificationError,
    WrongAnswer,
)
from .buffers import ReceiveBuffers
from .gateways import find_providers, normalize_gateway
from .http import READ_SIZE, ConnectionPool
from .split import Pace
from .target import Target, parse_target
from .types import FetchOptions
from .verifier import PathNotFound

__all__ = [
    "FATAL_ERRORS",
    "MAX_FAILURES",
    "MIN_READ",
    "PIECES_PER_REQUEST",
    "READ_BUDGET",
    "Gateway",
    "Run",
    "bounded",
    "hold_back",
    "leaf_error",
    "open_nursery",
    "prepare",
    "retry_after",
    "spare_whole",
    "start_run",
]

#: failures (timeouts, broken answers) after which a gateway is no longer asked
MAX_FAILURES: Final = 4
#: Retry-After values above this are capped (the run's --timeout bounds the wait anyway)
MAX_RETRY_AFTER: Final = 120.0
#: pieces a request holds at once: one being received and one waiting, one or two in the
#: verifier (the decoder keeps the last one), one batch waiting, one being written, and
#: a finished batch the verifier holds while the writer is busy (measured: ~8 MiB of RSS
#: a request with 1 MiB reads)
PIECES_PER_REQUEST: Final = 8
#: receive-buffer bytes a run may hold across all its requests: reads shrink from 1 MiB
#: as requests are added, so memory does not grow with --streams (the 100 MiB budget);
#: up to five requests read a MiB at a time
READ_BUDGET: Final = 40 << 20
MIN_READ: Final = 256 << 10

_T = TypeVar("_T")


class Gateway:
    __slots__ = ("dropped", "failures", "last_error", "not_found", "ready_at", "url", "whole")

    def __init__(self, url: str) -> None:
        self.url = url
        self.dropped = False
        self.failures = 0
        self.not_found = False
        self.ready_at = 0.0
        self.last_error: CargetError | None = None
        #: it answers with the whole DAG whatever dag-scope and entity-bytes ask (seen
        #: once): every request to it costs the file again, so it gets one worker
        self.whole = False


async def hold_back(gw: Gateway, pace: Pace, work_left: bool,
                     changed: Callable[[], trio.Event]) -> bool:
    """A worker's turn on ``gw``: wait out the gateway's back-off, or, while there is
    work and a gateway far faster than this one still serves (``pace``), leave it to that
    one for up to a second before looking again (the fast one may fail). ``changed``
    gives the event that wakes workers when the work changes. True if it waited: the
    caller looks at the work again."""
    wait = gw.ready_at - trio.current_time()
    if wait <= 0 and not (work_left and pace.outpaced(gw)):
        return False
    with trio.move_on_after(wait if wait > 0 else 1.0):
        await changed().wait()
    return True


def retry_after(value: str | None, failures: int) -> float:
    """Seconds to wait before asking a gateway again: its ``Retry-After`` (seconds or an
    HTTP date, capped at :data:`MAX_RETRY_AFTER`), else a backoff that doubles with its
    ``failures`` up to 8 s."""
    backoff = min(0.25 * float(1 << min(failures, 10)), 8.0)
    if not value:
        return backoff
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        from email.utils import parsedate_to_datetime  # rare: not worth its import time

        when: float = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return backoff
    import time

    return float(max(0.0, min(when - time.time(), MAX_RETRY_AFTER)))


class Run:
    """State shared by the tasks of one run."""

    def __init__(self, target: Target, opts: FetchOptions) -> None:
        self.target = target
        self.opts = opts
        urls = [normalize_gateway(g) for g in opts.gateways]
        if target.gateway_hint:
            urls.append(normalize_gateway(target.gateway_hint))
        self.gateways = [Gateway(u) for u in dict.fromkeys(urls)]
        self.errors: list[CargetError] = []
        #: requests that may run at once (set by whoever starts them): sizes their reads
        self.concurrency = 1
        self.bytes_done = 0
        self.total: int | None = None
        self._last_progress = 0.0
        #: kept connections to the gateways (closed by :meth:`close`)
        self.pool = ConnectionPool()
        #: the receive buffers its requests read into, reused (at most the read budget)
        self.buffers = ReceiveBuffers(READ_BUDGET // READ_SIZE)

    def close(self) -> None:
        """Close the kept connections (at the end of the run)."""
        self.pool.close()

    # --- reporting ----------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        if self.opts.progress is not None:
            self.opts.progress({"event": name, **fields})

    def log(self, message: str) -> None:
        if self.opts.log is not None:
            self.opts.log(message)

    def detail(self, message: str) -> None:
        """A line about one attempt: logged only with ``verbose`` (the final error names
        what failed with each gateway)."""
        if self.opts.verbose:
            self.log(message)

    def progressed(self, n: int) -> None:
        self.bytes_done += n
        now = trio.current_time()
        if now - self._last_progress >= 0.1 or (self.total and self.bytes_done >= self.total):
            self._last_progress = now
            # a leaf that straddles a take-over cut is written by both requests: never
            # report more than the whole
            done = min(self.bytes_done, self.total) if self.total else self.bytes_done
            self.event("progress", bytes=done, total=self.total)

    def read_size(self) -> int:
        """Bytes per receive for each request: 1 MiB, less once many requests share
        :data:`READ_BUDGET`."""
        per = READ_BUDGET // (PIECES_PER_REQUEST * max(1, self.concurrency))
        return max(MIN_READ, min(READ_SIZE, per - per % 4096))

    # --- gateway bookkeeping ------------------------------------------------------------

    def usable(self) -> list[Gateway]:
        return [g for g in self.gateways if not g.dropped and not g.not_found]

    def failed(self, gw: Gateway, exc: CargetError) -> None:
        """Record a request's failure and decide the gateway's fate."""
        self.errors.append(exc)
        gw.last_error = exc
        if gw.dropped:
            return  # another request to this gateway already had it dropped
        if isinstance(exc, NotFoundError):
            gw.not_found = True
            self.detail(f"{gw.url}: not found: {exc}")
            return
        if isinstance(exc, (HashMismatch, CARError, WrongAnswer)) or (
                isinstance(exc, VerificationError) and not isinstance(exc, IncompleteDAG)):
            gw.dropped = True
            self.detail(f"{gw.url}: dropped for the rest of the run: {exc}")
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))
            return
        gw.failures += 1
        delay = exc.delay if isinstance(exc, RetryLater) else retry_after(None, gw.failures)
        gw.ready_at = trio.current_time() + delay
        self.detail(f"{gw.url}: {exc} (retry in {delay:.2g} s)")
        if gw.failures >= MAX_FAILURES:
            gw.dropped = True
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))

    def gateway_failures(self) -> str:
        """What last failed with each gateway that failed, in one line ("" if none)."""
        if not any(g.last_error is not None for g in self.gateways):
            return ""
        return _each_gateway(self.gateways)

    def final_error(self, what: str) -> CargetError:
        """The error that describes why no gateway could serve ``what``."""
        if not self.gateways:
            return UsageError("no gateway to ask (use --gateway or IPFS_GATEWAY)")
        each = _each_gateway(self.gateways)
        if self.errors and all(isinstance(e, NotFoundError) for e in self.errors):
            return NotFoundError(f"{what}: not found on any gateway ({each})")
        for kind in (VerificationError, CARError, WrongAnswer):
            if any(isinstance(e, kind) for e in self.errors):
                return VerificationError(f"{what}: no gateway gave a verified answer "
                                         f"({each})")
        last = self.errors[-1] if self.errors else None
        if isinstance(last, FetchTimeout):
            return FetchTimeout(f"{what}: {last}")
        return NetworkError(f"{what}: every gateway failed ({each})")


def _each_gateway(gateways: list[Gateway]) -> str:
    """What last failed with each gateway, in one line: ``URL: answered 404; URL: cannot
    connect: ...`` (the request URL each error repeats is left out)."""
    parts = []
    for gw in gateways:
        if gw.last_error is None:
            continue
        text = str(gw.last_error).removeprefix(gw.url)
        if text.startswith("/"):  # "{request url}: what happened"
            text = text.partition(": ")[2] or text
        text = text.lstrip(" :")
        parts.append(f"{gw.url}: {text.partition(' for http')[0]}")
    return "; ".join(parts) or "no answer"


#: errors that end the run at once, because the gateway is not at fault: what verified
#: blocks prove (bad UnixFS, unsafe names, a path that does not exist), a usage problem,
#: the output (a full disk): asking another gateway cannot help
FATAL_ERRORS: Final = (PathNotFound, UsageError, UnixFSError, DagPBError, DagCBORError,
                       UnsafePathError, InputError, OutputError, OSError)


def leaf_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception worth raising from a nursery's group: an interrupt first, then
    carget's own errors, then anything else but Cancelled, else Cancelled itself."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [eg]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    for kind in (KeyboardInterrupt, CargetError, Exception):
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that raises its most telling child exception bare, not in a group, so
    callers can ``except CargetError`` (trio's strict exception groups)."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as eg:
        raise leaf_error(eg) from None


async def prepare(target_text: str, opts: FetchOptions) -> Run:
    """The run for ``carget get`` / ``cat``: the target parsed, the options checked
    (UsageError), routing asked for more gateways."""
    target = parse_target(target_text)
    if opts.digest is not None:
        parse_digest(opts.digest)
    if opts.fallback_url is not None and opts.digest is None:
        raise UsageError("--fallback-url needs --digest: a plain mirror is unverified otherwise")
    return await start_run(target, opts)


async def start_run(target: Target, opts: FetchOptions) -> Run:
    """The shared state of a run for ``target``: ``opts.gateways`` and the target's hint,
    plus what ``opts.routers`` name as providers. Raises UsageError with no gateway."""
    run = Run(target, opts)
    for router in opts.routers:
        try:
            extra = await find_providers(router, target.cid, timeout=opts.idle_timeout)
        except NetworkError as exc:
            run.log(f"routing: {exc}")
            continue
        known = {g.url for g in run.gateways}
        for url in extra:
            if normalize_gateway(url) not in known:
                run.gateways.append(Gateway(normalize_gateway(url)))
    if not run.gateways:
        raise UsageError("no gateway to ask (use --gateway, IPFS_GATEWAY or --routing)")
    return run


def spare_whole(gateways: list[Gateway]) -> list[Gateway]:
    """The gateways to split ranges among: those that answer with the whole DAG only when
    no other is left (each range asked of them costs the file from its start again,
    and they have sent it once already in the race)."""
    honest = [g for g in gateways if not g.whole]
    return honest or gateways


async def bounded(timeout: float | None, fn: Callable[[], Awaitable[_T]], run: Run) -> _T:
    """``await fn()`` within the run's ``timeout`` (None: no bound). Raises
    :class:`FetchTimeout` naming what last failed with each gateway."""
    if timeout is None:
        return await fn()
    try:
        with trio.fail_after(timeout):
            return await fn()
    except trio.TooSlowError:
        # with retries silent, the timeout is the one line: it names what failed so far
        failed = run.gateway_failures()
        raise FetchTimeout(f"the run took longer than --timeout {timeout:g} s"
                           + (f" ({failed})" if failed else "")) from None
