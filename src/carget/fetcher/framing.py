"""Sans-IO HTTP/1.1 response framing: the one strict reader every body path shares.

:class:`ResponseReader` does no I/O (h11's shape): :meth:`~ResponseReader.feed` it the
bytes a connection received, :meth:`~ResponseReader.feed_eof` once the peer closed, and
pull events with :meth:`~ResponseReader.next_event`:

* a :class:`Head` once a final response head is in (1xx interim heads are skipped);
* ``memoryview`` pieces of the body, slices of the fed buffers (no copies: the bulk path
  stays lean);
* :data:`END` once the body is complete (what follows belongs to the connection's next
  answer, which is read by a new reader: carget sends one request at a time);
* :data:`NEED_DATA` when it needs more bytes (or, after ``feed_eof``, never: a body that
  ends early is an error).

The trio reader (:meth:`carget.fetcher.http.HttpResponse.receive`) and the worker-thread
reader (:meth:`~carget.fetcher.http.HttpResponse.read_body_blocking`) both drive one
instance of it, so the two cannot disagree about framing.

Strict by RFC 9112: status line ``HTTP/1.0|1.1 3DIGIT [reason]``; field names are tokens,
values hold no CR, LF or NUL; obsolete line folding is unfolded to a space (§5.2); every
line ends in CRLF; chunk sizes are 1 to :data:`MAX_CHUNK_DIGITS` hex digits (no sign, no
``0x``, no ``_``, no spaces) with chunk extensions parsed and ignored (§7.1.1); the CRLF
after each chunk's data is checked; trailer fields are parsed as header fields and
dropped (§7.1.2); ``Transfer-Encoding`` is read by token, and only ``chunked`` is
supported (carget asks for no other coding); ``Content-Length`` is digits only, and
copies that disagree are refused (§6.3); a message with both is refused (§6.1: "ought to
be handled as an error").

Every error the peer can cause is :class:`~carget.errors.NetworkError` (the gateway sent
garbage: another gateway may still be tried). Misuse of the API (feeding after EOF) is
``RuntimeError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..errors import NetworkError

__all__ = [
    "END",
    "MAX_CHUNK_DIGITS",
    "MAX_CHUNK_LINE",
    "MAX_FIELD_LINE",
    "MAX_HEAD",
    "MAX_INTERIM",
    "NEED_DATA",
    "Head",
    "ReaderEvent",
    "ResponseReader",
]

#: a response head (or trailer section) larger than this is refused: real gateways send
#: ~1 KiB; the bound keeps a peer that never ends its head from growing our memory
MAX_HEAD: Final = 64 << 10
#: the longest single field line (a long CSP or Link header is a few KiB)
MAX_FIELD_LINE: Final = 16 << 10
#: the longest chunk-size line, extensions included (ours carry none; h11 allows ~1 KiB)
MAX_CHUNK_LINE: Final = 1024
#: hex digits in a chunk size: 16 is any 64-bit size; more is either leading-zero padding
#: no server sends or a size no body has
MAX_CHUNK_DIGITS: Final = 16
#: digits in a Content-Length: 19 is any size below 2^63
MAX_LENGTH_DIGITS: Final = 19
#: 1xx interim heads skipped before the final one (103 Early Hints is one or two); the
#: bound stops a peer from keeping a request alive with interim heads alone
MAX_INTERIM: Final = 8


class _Signal(Enum):
    NEED_DATA = "need data"
    END = "end of message"


#: :meth:`ResponseReader.next_event` needs more bytes (or :meth:`~ResponseReader.feed_eof`)
NEED_DATA: Final = _Signal.NEED_DATA
#: the body is complete
END: Final = _Signal.END


@dataclass(frozen=True, slots=True)
class Head:
    """A final response head. ``headers`` is keyed in lower case; repeated fields are
    joined with ``", "`` (RFC 9110 §5.3). ``length`` is the body's Content-Length (None for
    chunked or close-delimited bodies, 0 for a status without a body)."""

    status: int
    reason: str
    headers: dict[str, str]
    chunked: bool
    length: int | None
    #: the connection may carry another request once this body is complete: HTTP/1.1
    #: without ``Connection: close``, a body framed by length or chunks (RFC 9112 §9.3)
    keep_alive: bool = False


ReaderEvent = Head | memoryview | _Signal

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_NAME: Final = re.compile(_TOKEN + rb":")
_FIELD_VALUE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS val ] )
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,%d})((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)"
    % (MAX_CHUNK_DIGITS, _TOKEN, _TOKEN, _QUOTED))
_DIGITS: Final = re.compile(rb"[0-9]{1,%d}" % MAX_LENGTH_DIGITS)

# states
_STATUS, _FIELDS, _LENGTH, _CLOSE, _SIZE, _DATA, _DATA_END, _TRAILERS, _DONE = range(9)
_EMPTY: Final = memoryview(b"")


class ResponseReader:
    """Frames one HTTP/1.1 response (see the module docstring). ``where`` (the URL) starts
    every error message."""

    def __init__(self, where: str = "", *, connect: bool = False) -> None:
        self.where = where
        #: this answers a CONNECT: a 2xx has no body, the tunnel starts after its head
        #: (RFC 9112 §6.3 item 2)
        self._connect = connect
        self._state = _STATUS
        self._buf = _EMPTY  # fed bytes not yet consumed
        self._partial = bytearray()  # the start of a line whose CRLF has not arrived
        self._eof = False
        self._error: NetworkError | None = None
        self._cut = False  # the error is a body that ended early, not garbage
        self._head_bytes = 0  # of the head (or trailer section) being read
        self._interim = 0
        self._status = 0
        self._http11 = False
        self._reason = ""
        self._fields: list[tuple[str, str]] = []
        self._left = 0  # Content-Length bytes, or bytes of the current chunk, still to come

    @property
    def finished(self) -> bool:
        """True once :data:`END` was returned."""
        return self._state == _DONE

    @property
    def garbled(self) -> bool:
        """True once :meth:`next_event` raised for malformed bytes (as opposed to a
        connection that closed before the response was complete)."""
        return self._error is not None and not self._cut

    @property
    def in_body(self) -> bool:
        """True once the head was returned and until the body is complete."""
        return self._state not in (_STATUS, _FIELDS, _DONE)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Call :meth:`next_event` until :data:`NEED_DATA` first, so
        body bytes are handed out without a copy. Raises ``RuntimeError`` after
        :meth:`feed_eof`."""
        if self._eof:
            raise RuntimeError("feed after feed_eof")
        if not data or self._state == _DONE:
            return
        if self._buf:
            self._buf = memoryview(bytes(self._buf) + bytes(data))
        else:
            self._buf = memoryview(data).cast("B")

    def feed_eof(self) -> None:
        """Say the peer closed the connection."""
        self._eof = True

    def next_event(self) -> ReaderEvent:
        """The next event (see the module docstring). Raises :class:`NetworkError` when the
        bytes are not a well-framed response, or end before it is complete; once raised,
        every later call raises it again."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except NetworkError as exc:
            self._error = exc
            self._buf = _EMPTY
            raise

    # --- internals -------------------------------------------------------------------------

    def _fail(self, what: str) -> NetworkError:
        return NetworkError(f"{self.where}: {what}" if self.where else what)

    def _cut_short(self, what: str) -> NetworkError:
        self._cut = True
        return self._fail(what)

    def _next(self) -> ReaderEvent:
        while True:
            state = self._state
            if state == _LENGTH:
                if self._left == 0:
                    return self._end()
                if not self._buf:
                    if self._eof:
                        raise self._cut_short(f"body ends {self._left} bytes early")
                    return NEED_DATA
                return self._piece()
            if state == _DATA:
                if not self._buf:
                    if self._eof:
                        raise self._cut_short("chunked body ends early (inside a chunk)")
                    return NEED_DATA
                piece = self._piece()
                if self._left == 0:
                    self._state = _DATA_END
                return piece
            if state == _CLOSE:
                if self._buf:
                    piece = self._buf
                    self._buf = _EMPTY
                    return piece
                return self._end() if self._eof else NEED_DATA
            if state == _DONE:
                self._buf = _EMPTY
                return END
            # line states: the head, chunk-size lines, chunk ends, trailers
            if state in (_STATUS, _FIELDS, _TRAILERS):
                limit = max(0, min(MAX_FIELD_LINE, MAX_HEAD - self._head_bytes))
            elif state == _SIZE:
                limit = MAX_CHUNK_LINE
            else:
                limit = 0  # _DATA_END: the CRLF alone
            line = self._line(limit, state)
            if line is None:
                return NEED_DATA
            event = self._on_line(state, line)
            if event is not None:
                return event

    def _piece(self) -> memoryview:
        buf = self._buf
        if len(buf) > self._left:
            piece, self._buf = buf[: self._left], buf[self._left :]
        else:
            piece, self._buf = buf, _EMPTY
        self._left -= len(piece)
        return piece

    def _end(self) -> _Signal:
        self._state = _DONE
        self._buf = _EMPTY
        return END

    def _line(self, limit: int, state: int) -> bytes | None:
        """The next CRLF-ended line (without its CRLF), or None until its end arrives.
        Looks at no more than ``limit`` + 2 bytes, so a line in front of a megabyte of body
        costs a small copy."""
        partial = self._partial
        window = bytes(self._buf[: limit + 2 - len(partial)])
        nl = window.find(b"\n")
        if nl < 0:
            if len(partial) + len(window) > limit + 1:
                raise self._fail(self._too_long(state, limit))
            if self._eof:
                raise self._cut_short(self._early(state))
            partial += window
            self._buf = _EMPTY
            return None
        line = bytes(partial) + window[:nl]
        partial.clear()
        self._buf = self._buf[nl + 1 :]
        if state in (_STATUS, _FIELDS, _TRAILERS):
            self._head_bytes += len(line) + 1
        if not line.endswith(b"\r"):
            raise self._fail(f"a line ends in a bare LF: {line[:40]!r}")
        line = line[:-1]
        if len(line) > limit:
            raise self._fail(self._too_long(state, limit))
        return line

    def _too_long(self, state: int, limit: int) -> str:
        if state == _SIZE:
            return f"chunk-size line longer than {MAX_CHUNK_LINE} bytes"
        if state == _DATA_END:
            return "chunk data not followed by CRLF"
        if state == _TRAILERS:
            return f"trailer section larger than {MAX_HEAD} bytes"
        if limit < MAX_FIELD_LINE:
            return f"response head larger than {MAX_HEAD} bytes"
        return f"header line longer than {MAX_FIELD_LINE} bytes"

    def _early(self, state: int) -> str:
        if state == _STATUS and not self._head_bytes and not self._partial:
            return "connection closed before a response"
        if state in (_STATUS, _FIELDS):
            return "connection closed inside the response head"
        return "chunked body ends early"

    def _on_line(self, state: int, line: bytes) -> ReaderEvent | None:
        if state == _STATUS:
            m = _STATUS_LINE.fullmatch(line)
            if m is None:
                raise self._fail(f"not an HTTP/1.x status line: {line[:80]!r}")
            self._status = int(m.group(1))
            self._http11 = line[5:8] == b"1.1"
            self._reason = (m.group(2) or b"").decode("latin-1")
            self._fields = []
            self._state = _FIELDS
            return None
        if state == _FIELDS:
            if line:
                self._field(line, self._fields)
                return None
            return self._head_done()
        if state == _SIZE:
            m = _CHUNK_LINE.fullmatch(line)
            if m is None:
                raise self._fail(f"bad chunk-size line {line[:40]!r}")
            size = int(m.group(1), 16)
            if size:
                self._left = size
                self._state = _DATA
            else:
                self._state = _TRAILERS
                self._head_bytes = 0
                self._fields = []
            return None
        if state == _DATA_END:
            if line:
                raise self._fail("chunk data not followed by CRLF")
            self._state = _SIZE
            return None
        # _TRAILERS: parsed like header fields, then dropped (none is of use to carget)
        if line:
            self._field(line, self._fields)
            return None
        self._fields = []
        return self._end()

    def _field(self, line: bytes, fields: list[tuple[str, str]]) -> None:
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 §5.2): a client replaces it with a space
            if not fields:
                raise self._fail(f"a header block starts with whitespace: {line[:40]!r}")
            value = line.strip(b" \t")
            if _FIELD_VALUE.fullmatch(value) is None:
                raise self._fail(f"bad header value {line[:80]!r}")
            name, old = fields[-1]
            fields[-1] = (name, f"{old} {value.decode('latin-1')}")
            return
        m = _FIELD_NAME.match(line)
        if m is None:
            raise self._fail(f"malformed header line {line[:80]!r}")
        value = line[m.end() :].strip(b" \t")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise self._fail(f"bad header value {line[:80]!r}")
        fields.append((line[: m.end() - 1].decode("ascii").lower(), value.decode("latin-1")))

    def _head_done(self) -> ReaderEvent | None:
        status = self._status
        self._head_bytes = 0
        if status < 200:
            if status == 101:
                raise self._fail("101 Switching Protocols to a request that asked for none")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise self._fail(f"more than {MAX_INTERIM} interim (1xx) responses")
            self._state = _STATUS
            return None
        headers: dict[str, str] = {}
        lengths: list[str] = []
        codings: list[str] = []
        for name, value in self._fields:
            if name == "content-length":
                lengths += [v.strip() for v in value.split(",")]
            elif name == "transfer-encoding":
                codings += [v.strip().lower() for v in value.split(",") if v.strip()]
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self._fields = []
        chunked = False
        length: int | None = None
        if status in (204, 304) or (self._connect and status < 300):
            length = 0  # RFC 9112 §6.3: no body, whatever the fields say
        elif codings:
            if lengths:
                raise self._fail("both Transfer-Encoding and Content-Length")
            if codings != ["chunked"]:
                raise self._fail(f"unsupported Transfer-Encoding {headers['transfer-encoding']!r}")
            chunked = True
        elif lengths:
            if any(_DIGITS.fullmatch(v.encode("latin-1")) is None for v in lengths):
                raise self._fail(f"bad Content-Length {headers['content-length']!r}")
            if len({int(v) for v in lengths}) != 1:
                raise self._fail(f"Content-Length values disagree: "
                                 f"{headers['content-length']!r}")
            length = int(lengths[0])
            headers["content-length"] = str(length)
        elif "transfer-encoding" in headers:
            raise self._fail("empty Transfer-Encoding")
        if length is not None:
            self._state = _LENGTH
            self._left = length
        else:
            self._state = _SIZE if chunked else _CLOSE
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = self._http11 and "close" not in tokens and (chunked or length is not None)
        return Head(status, self._reason, headers, chunked, length, keep)
