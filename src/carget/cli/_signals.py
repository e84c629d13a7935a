"""The signals that end a run, in one place: SIGINT, SIGTERM and SIGHUP all clean up exactly
as Ctrl-C does, and the run exits 130 ("interrupted", DESIGN) with one line, no traceback.

Two mechanisms, one rule:

* blocking commands (``car extract``, ``add --car``, ...) clean up in ``finally`` blocks
  and context managers that already answer Ctrl-C's :class:`KeyboardInterrupt`.
  :func:`signals_as_ctrl_c`, held by :func:`carget.cli.main` around every command, hands
  SIGTERM and SIGHUP to whatever answers SIGINT at that moment: Python's
  ``default_int_handler`` (which raises KeyboardInterrupt), or trio's own SIGINT handler,
  which delivers it only at a safe point inside ``trio.run``.
* trio commands (``get``, ``cat``, ``lima prefetch``) run under :func:`run_trio`, which
  turns any of :data:`INTERRUPT_SIGNALS` into a cancellation (so every ``finally`` and
  ``except BaseException`` of the run executes, inside trio), then raises
  KeyboardInterrupt once the run has unwound.

130 rather than 128 + signum: DESIGN documents one code for "interrupted", and a caller
that tells SIGTERM from SIGINT already knows which one it sent.
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

__all__ = ["INTERRUPT_SIGNALS", "run_trio", "signals_as_ctrl_c"]

T = TypeVar("T")

#: the signals that mean "stop, and clean up as Ctrl-C does": SIGTERM is what kill,
#: systemd and container runtimes send; SIGHUP is what a closed terminal or ssh session sends
INTERRUPT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: the ones :func:`signals_as_ctrl_c` forwards (SIGINT answers itself)
_FORWARDED = tuple(s for s in INTERRUPT_SIGNALS if s != signal.SIGINT)


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Answer ``signum`` as SIGINT's current handler would answer Ctrl-C.

    Raises KeyboardInterrupt when SIGINT's handler does (Python's default), or when SIGINT
    is ignored or left to the OS (a background job started with SIGINT ignored must still
    stop cleanly on SIGTERM)."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


@contextmanager
def signals_as_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP do what Ctrl-C does (see the module docstring);
    the previous handlers come back on exit. Does nothing off the main thread (Python
    lets only the main thread set handlers), e.g. when a test runs the CLI in a thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _as_ctrl_c) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_trio(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` under ``trio.run`` and return its result.

    Any of :data:`INTERRUPT_SIGNALS` cancels it, letting its cleanup run, then raises
    KeyboardInterrupt. An exception group out of the run is reduced to its most telling
    leaf (an interrupt, then carget's own error, then anything else), so callers and
    :func:`carget.cli.main` see carget's errors bare, with their exit codes.
    """
    import trio

    from ..fetcher.run import leaf_error

    async def main() -> T:
        interrupted = False
        box: list[T] = []
        try:
            async with trio.open_nursery() as nursery:
                async def watch() -> None:
                    nonlocal interrupted
                    with trio.open_signal_receiver(*INTERRUPT_SIGNALS) as sigs:
                        async for _ in sigs:
                            interrupted = True
                            nursery.cancel_scope.cancel()
                            return

                async def work() -> None:
                    box.append(await fn())
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                nursery.start_soon(work)
        except BaseExceptionGroup as eg:
            raise leaf_error(eg) from None
        if interrupted or not box:
            raise KeyboardInterrupt
        return box[0]

    # what start-up made lives to the end: keep the cyclic collector from walking it again
    gc.freeze()
    return trio.run(main)
