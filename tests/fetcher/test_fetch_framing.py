"""The one sans-IO HTTP/1.1 response reader (carget.fetcher.framing): vectors fed whole,
byte by byte and with trailing junk (h11's test_io habit), then hypothesis fuzzing of heads
and chunked bodies. The only escape allowed for garbage is carget's NetworkError; the
reader never loops without consuming input (a step bound proves it), never hangs."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carget.errors import NetworkError
from carget.fetcher.framing import (
    END,
    MAX_CHUNK_DIGITS,
    MAX_HEAD,
    MAX_INTERIM,
    NEED_DATA,
    Head,
    ResponseReader,
)


def drive(pieces: list[bytes]) -> tuple[Head, bytes]:
    """Feed ``pieces`` one by one (then EOF) and collect the head and body. Raises what
    the reader raises; fails the test if the reader takes more steps than its input
    could justify (it would be spinning)."""
    reader = ResponseReader("u")
    todo = iter(pieces)
    head: Head | None = None
    body: list[bytes] = []
    budget = 4 * sum(len(p) for p in pieces) + 4 * len(pieces) + 64
    for _ in range(budget):
        event = reader.next_event()
        if event is NEED_DATA:
            piece = next(todo, None)
            if piece is None:
                reader.feed_eof()
            else:
                reader.feed(piece)
        elif event is END:
            assert head is not None
            return head, b"".join(body)
        elif isinstance(event, Head):
            assert head is None
            head = event
        else:
            assert isinstance(event, memoryview) and len(event) > 0
            assert head is not None
            body.append(bytes(event))
    pytest.fail("the reader took more steps than its input allows: it spins")


def ways(raw: bytes) -> list[list[bytes]]:
    return [[raw], [raw[i : i + 1] for i in range(len(raw))],
            [raw[:7], raw[7:20], raw[20:]]]


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

GOOD = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.0 200 OK\r\n\r\nclose delimited", b"close delimited"),
    (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", b"hi"),  # no reason phrase
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", b"abc"),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", b""),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\nz", b"z"),
    (CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n", b"x"),
    (CHUNKED_HEAD + b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (CHUNKED_HEAD + b"5 ; name=value;x=\"q ;\\\"\"\r\nhello\r\n000\r\n\r\n", b"hello"),
    (CHUNKED_HEAD + b"2\r\nhi\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n", b"hi"),
]


@pytest.mark.parametrize(("raw", "body"), GOOD)
def test_good_responses_whole_bytewise_and_with_junk(raw: bytes, body: bytes) -> None:
    for pieces in ways(raw):
        assert drive(pieces)[1] == body
    if b"close delimited" not in raw:  # after a framed body, junk is ignored
        assert drive([raw + b"JUNK\r\n\r\n"])[1] == body


BAD = [
    (CHUNKED_HEAD + b"-10\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"-5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"0x5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"+5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b" 5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"0" * (MAX_CHUNK_DIGITS + 1) + b"5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
    (CHUNKED_HEAD + b"5;\r\nhello\r\n0\r\n\r\n", "chunk-size"),  # an extension without a name
    (CHUNKED_HEAD + b"5\r\nhelloXX0\r\n\r\n", "CRLF"),
    (CHUNKED_HEAD + b"5\nhello\r\n0\r\n\r\n", "bare LF"),
    (CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", "header line"),
    (CHUNKED_HEAD + b"5\r\nhel", "ends early"),
    (CHUNKED_HEAD + b"5\r\nhello\r\n", "ends early"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "early"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "disagree"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", "disagree"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "both"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\n Folded-first: x\r\n\r\n", "whitespace"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "header value"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "header value"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * MAX_HEAD + b"\r\n\r\n", "longer than"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: aaaaaaaaaaaaaaaaaaaa\r\n" * 4000 + b"\r\n", "larger than"),
    (b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM + 1) + b"HTTP/1.1 200 OK\r\n\r\n",
     "interim"),
    (b"", "before a response"),
    (b"HTTP/1.1 200 OK\r\nContent-", "inside the response head"),
]


@pytest.mark.parametrize(("raw", "match"), BAD)
def test_malformed_responses_are_network_errors(raw: bytes, match: str) -> None:
    for pieces in ways(raw) if len(raw) < 2000 else [[raw]]:
        with pytest.raises(NetworkError, match=re.escape(match)):
            drive(pieces)


def test_an_error_sticks() -> None:
    reader = ResponseReader("u")
    reader.feed(CHUNKED_HEAD + b"-10\r\n")
    reader.next_event()
    for _ in range(3):
        with pytest.raises(NetworkError, match="chunk-size"):
            reader.next_event()


# --- hypothesis ------------------------------------------------------------------------

TOKEN = st.text(alphabet="abcXYZ019-_.!~", min_size=1, max_size=8)
EXTENSION = st.one_of(
    st.builds(lambda n: f";{n}", TOKEN),
    st.builds(lambda n, v: f" ; {n}={v}", TOKEN, TOKEN),
    st.builds(lambda n, v: f';{n}="{v}"', TOKEN, st.text(alphabet="ab ;=,", max_size=6)),
)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A well-formed response (random framing, interim heads, extensions, trailers) and
    its body."""
    body = draw(st.binary(max_size=300))
    interim = b"".join(b"HTTP/1.1 1%02d Hint\r\nLink: </x>\r\n\r\n" % n
                       for n in draw(st.lists(st.sampled_from([0, 2, 3]), max_size=3)))
    extra = b"".join(f"X-{n}: {v}\r\n".encode() for n, v in
                     draw(st.lists(st.tuples(TOKEN, TOKEN), max_size=3)))
    mode = draw(st.sampled_from(["length", "chunked", "close"]))
    if mode == "length":
        return (interim + b"HTTP/1.1 200 OK\r\n" + extra
                + b"Content-Length: %d\r\n\r\n" % len(body) + body), body
    if mode == "close":
        return interim + b"HTTP/1.1 200 OK\r\n" + extra + b"\r\n" + body, body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    out = [interim + b"HTTP/1.1 200 OK\r\n" + extra + b"Transfer-Encoding: chunked\r\n\r\n"]
    prev = 0
    for cut in [*cuts, len(body)]:
        if cut > prev:
            digits = draw(st.sampled_from(["%x", "%X", "%04x"])) % (cut - prev)
            ext = "".join(draw(st.lists(EXTENSION, max_size=2)))
            out.append(f"{digits}{ext}\r\n".encode() + body[prev:cut] + b"\r\n")
            prev = cut
    trailers = b"".join(f"T-{n}: {v}\r\n".encode() for n, v in
                        draw(st.lists(st.tuples(TOKEN, TOKEN), max_size=2)))
    out.append(b"0\r\n" + trailers + b"\r\n")
    return b"".join(out), body


def split(raw: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(raw) + 1) for p in points})
    edges = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(edges) if b > a]


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(responses(), st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_good_responses_parse_to_their_body(case: tuple[bytes, bytes],
                                                 points: list[int]) -> None:
    raw, body = case
    assert drive(split(raw, points))[1] == body


@FUZZ
@given(responses(), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3),
                                       st.integers(0, 3)), min_size=1, max_size=4),
       st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_garbled_responses_parse_or_raise_network_error(
        case: tuple[bytes, bytes], edits: list[tuple[int, bytes, int]],
        points: list[int]) -> None:
    raw = bytearray(case[0])
    for at, insert, delete in edits:
        at %= len(raw) + 1
        raw[at : at + delete] = insert
    try:
        drive(split(bytes(raw), points))
    except NetworkError:
        pass


@FUZZ
@given(st.text(alphabet="0123456789abcdefABCDEF-+x_ ;=\t\"g", max_size=24))
def test_fuzz_chunk_size_lines(line: str) -> None:
    """A chunk-size line is accepted exactly when it is 1-16 hex digits, then only
    well-formed extensions (RFC 9112 §7.1.1); anything else is a NetworkError."""
    size = re.match(r"[0-9a-fA-F]*", line)
    assert size is not None
    tchar = r"[-+\w.!~]+"
    ext = rf'(?:[ \t]*;[ \t]*{tchar}(?:[ \t]*=[ \t]*(?:{tchar}|"[^"\\]*"))?)*'
    valid = (1 <= len(size.group(0)) <= MAX_CHUNK_DIGITS
             and re.fullmatch(ext, line[size.end():]) is not None)
    reader = ResponseReader("u")
    reader.feed(CHUNKED_HEAD + line.encode() + b"\r\n")
    assert isinstance(reader.next_event(), Head)
    try:
        event = reader.next_event()
    except NetworkError:
        assert not valid, line
    else:
        assert valid and event is NEED_DATA, line


def test_garbage_is_told_from_a_cut() -> None:
    """A malformed body is ``garbled`` (the gateway sent garbage); a body that merely
    ends early is not (a gateway cutting its answer at a missing block)."""
    garbage = ResponseReader("u")
    garbage.feed(CHUNKED_HEAD + b"-1\r\n")
    assert isinstance(garbage.next_event(), Head)
    with pytest.raises(NetworkError):
        garbage.next_event()
    assert garbage.garbled
    cut = ResponseReader("u")
    cut.feed(CHUNKED_HEAD + b"2\r\nab\r\n")
    cut.feed_eof()
    assert isinstance(cut.next_event(), Head)
    assert bytes(cut.next_event()) == b"ab"  # type: ignore[arg-type]
    with pytest.raises(NetworkError, match="ends early"):
        cut.next_event()
    assert not cut.garbled
