"""``--json`` output shared by the commands that stream JSON events (``get``, ``cat``,
``lima prefetch``): one compact object a line, and a run that fails ends with one last
line ``{"event": "error", "code": N, "message": ...}`` (``code`` is the exit status),
with no plain text after it, so a program reading the lines never has to parse prose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import click

from ..errors import CargetError

__all__ = ["error_event", "json_errors", "write_json"]


def write_json(stream: TextIO, event: dict[str, Any]) -> None:
    """One event as one compact line, flushed (a reader sees it at once)."""
    import json  # here: only --json runs pay its import

    stream.write(json.dumps(event, separators=(",", ":")) + "\n")
    stream.flush()


def error_event(exc: BaseException) -> dict[str, Any] | None:
    """The last line for a run that ended with ``exc``, with the exit code
    :func:`carget.cli.main` gives it; None for what is not a reported failure (a bug
    keeps its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        code, message = 130, "interrupted"
    elif isinstance(exc, CargetError):
        code, message = exc.exit_code, str(exc)
    elif isinstance(exc, click.exceptions.Exit):
        return None  # the command chose its exit status and has said why
    elif isinstance(exc, click.ClickException):
        code, message = exc.exit_code, exc.format_message()
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        code, message = 1, f"{exc.strerror or exc}{where}"
    else:
        return None
    return {"event": "error", "code": code, "message": message}


@contextmanager
def json_errors(emit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Around a ``--json`` run: a failure becomes its :func:`error_event`, passed to
    ``emit`` as the last line, and the run exits with its code and nothing more."""
    try:
        yield
    except BaseException as exc:
        event = error_event(exc)
        if event is None:
            raise
        emit(event)
        raise click.exceptions.Exit(event["code"]) from None
