"""The sans-IO CAR decoder: fixtures fed whole, byte by byte and at random splits; bad
input gives carget's own errors with offsets; limits refuse lengths before allocating."""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator

import pytest
from carfixtures import ALL_CARS, FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carget.car import CAR_END, NEED_DATA, TRUSTLESS_LIMITS, CarDecoder, CarHeader, decode_car
from carget.car.encoder import encode_header, section_prefix
from carget.car.header import CARV2_PRAGMA, CarV2Header, encode_v2_header
from carget.cid import CID, RAW, Block, encode_varint
from carget.errors import CARError, DecodeError, HashMismatch, LimitExceeded, VerificationError

HELLO = FIXTURES / "tooling" / "hello_ipfs.car"


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A decoder that loops forever fails the test instead of blocking CI."""

    def boom(signum: int, frame: object) -> None:
        raise TimeoutError("decoder test exceeded 120 s: a hang")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _decode_pieces(pieces: list[bytes]) -> list[tuple[bytes, bytes]]:
    dec = CarDecoder()
    out: list[tuple[bytes, bytes]] = []
    headers = 0
    for p in pieces:
        dec.feed(p)
        for ev in dec.events():
            if isinstance(ev, CarHeader):
                headers += 1
            else:
                out.append((ev.cid.bytes, bytes(ev.data)))
    dec.feed_eof()
    assert dec.next_event() is CAR_END
    assert headers == 1
    return out


def _car(blocks: list[bytes], roots: list[CID] | None = None) -> tuple[bytes, list[Block]]:
    bs = [Block(CID.of(b, RAW), b) for b in blocks]
    out = bytearray(encode_header(roots if roots is not None else [bs[0].cid]))
    for b in bs:
        out += section_prefix(b.cid, len(b.data)) + b.data
    return bytes(out), bs


@pytest.mark.parametrize("path", ALL_CARS, ids=lambda p: p.name)
def test_fixture_whole_equals_byte_by_byte(path: object) -> None:
    data = path.read_bytes()  # type: ignore[attr-defined]
    whole = _decode_pieces([data])
    assert whole and whole == _decode_pieces([data[i : i + 1] for i in range(len(data))])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_CARS), st.lists(st.integers(0, 90_000), max_size=25))
def test_random_split_points_yield_the_same_blocks(path: object, cuts: list[int]) -> None:
    data = path.read_bytes()  # type: ignore[attr-defined]
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _decode_pieces(pieces) == _decode_pieces([data])


def test_large_feeds_are_not_copied() -> None:
    data, blocks = _car([bytes([i]) * 300_000 for i in range(4)])
    dec = CarDecoder()
    dec.feed(data)
    evs = list(dec.events())
    # zero-copy: every block is a view into the very bytes object that was fed
    assert all(ev.data.obj is data for ev in evs if isinstance(ev, Block))
    assert [ev.cid for ev in evs if isinstance(ev, Block)] == [b.cid for b in blocks]


def test_a_block_that_starts_a_fed_buffer_is_not_copied() -> None:
    """A chunked answer that sends each section's length and CID apart from its block
    (kubo's gateway does): the block is a view of the buffer it came in, and until it is
    in, the section's head counts as fed but not consumed."""
    blocks = [bytes([i]) * 300_000 for i in range(3)]
    cids = [CID.of(b, RAW) for b in blocks]
    dec = CarDecoder()
    dec.feed(encode_header(cids[:1]))
    assert isinstance(dec.next_event(), CarHeader)
    for cid, block in zip(cids, blocks, strict=True):
        start = dec.offset
        head = section_prefix(cid, len(block))
        dec.feed(head)
        assert dec.next_event() is NEED_DATA
        assert dec.offset == start and dec.buffered == len(head)  # not at a boundary
        fed = bytes(block)
        dec.feed(fed)
        ev = dec.next_event()
        assert isinstance(ev, Block) and ev.cid == cid
        assert isinstance(ev.data, memoryview) and ev.data.obj is fed
        assert dec.section_offset == start and dec.offset == start + len(head) + len(block)
        assert dec.buffered == 0
    dec.feed_eof()
    assert dec.next_event() is CAR_END


def test_a_section_cut_after_its_cid_is_truncated() -> None:
    data, _ = _car([b"x" * 100])
    with pytest.raises(CARError, match="truncated") as info:
        decode_car(data[:-50])
    assert info.value.offset == len(encode_header([CID.of(b"x" * 100, RAW)]))


def test_need_data_then_clean_end_on_section_boundary() -> None:
    data, _ = _car([b"a" * 10, b"b" * 20])
    dec = CarDecoder()
    dec.feed(data[:5])
    assert dec.next_event() is NEED_DATA
    dec.feed(data[5:])
    assert isinstance(dec.next_event(), CarHeader)
    assert isinstance(dec.next_event(), Block)
    assert isinstance(dec.next_event(), Block)
    assert dec.next_event() is NEED_DATA
    dec.feed_eof()
    assert dec.next_event() is CAR_END


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_truncated_header_raises_with_offset(cut: int) -> None:
    data, _ = _car([b"x" * 100])
    with pytest.raises(CARError, match="header") as info:
        decode_car(data[:cut])
    assert info.value.offset is not None


def test_truncated_section_raises_at_its_offset() -> None:
    data, _ = _car([b"x" * 100, b"y" * 100])
    header_len = len(encode_header([CID.of(b"x" * 100, RAW)]))
    first = len(data) - header_len
    with pytest.raises(CARError) as info:
        decode_car(data[:-3])
    assert info.value.offset == header_len + first // 2
    assert info.value.exit_code == 4


def test_length_prefix_of_2_pow_60_is_refused_without_allocating() -> None:
    head = encode_header([CID.of(b"x", RAW)])
    with pytest.raises(LimitExceeded) as info:
        decode_car(head + encode_varint(1 << 60) + b"\x01")
    assert info.value.offset == len(head)
    with pytest.raises(LimitExceeded):
        decode_car(encode_varint(1 << 60))


def test_block_limit_for_trustless_streams() -> None:
    data, _ = _car([b"z" * ((2 << 20) + 1)])
    dec = CarDecoder(limits=TRUSTLESS_LIMITS)
    dec.feed(data)
    assert isinstance(dec.next_event(), CarHeader)
    with pytest.raises(LimitExceeded):
        dec.next_event()
    assert len(decode_car(data)[1]) == 1  # the default limits allow it


def test_hash_mismatch_and_sticky_error() -> None:
    data, _ = _car([b"hello"])
    bad = data[:-1] + b"X"
    dec = CarDecoder()
    dec.feed(bad)
    dec.feed_eof()
    assert isinstance(dec.next_event(), CarHeader)
    with pytest.raises(HashMismatch):
        dec.next_event()
    with pytest.raises(HashMismatch):  # errors are sticky, as h11's
        dec.next_event()
    assert len(decode_car(bad, verify=False)[1]) == 1


def test_identity_cid_block_must_equal_inline_data() -> None:
    cid = CID(1, RAW, b"\x00\x03abc")
    head = encode_header([cid])
    ok = head + section_prefix(cid, 3) + b"abc"
    assert bytes(decode_car(ok)[1][0].data) == b"abc"
    with pytest.raises(HashMismatch):
        decode_car(head + section_prefix(cid, 3) + b"abd")


@pytest.mark.parametrize("section", [
    b"\x02\x01\x55",                      # CID cut by the section end
    b"\x05\x02\x55\x12\x20\x00",          # CID version 2
    b"\x03\x12\x20\x00",                  # CIDv0 longer than its section
])
def test_bad_cids_raise_car_error(section: bytes) -> None:
    with pytest.raises(CARError):
        decode_car(encode_header([CID.of(b"x", RAW)]) + section)


def test_bad_headers() -> None:
    for body in [b"\xa0", b"\xa1\x67version\x03", b"\x80", b"\xa1\x65roots\x80"]:
        with pytest.raises(CARError):
            decode_car(encode_varint(len(body)) + body)
    with pytest.raises(CARError):
        decode_car(b"")
    with pytest.raises(CARError):
        decode_car(b"\x00")


def _v2(payload: bytes, data_offset: int = 51, data_size: int | None = None,
        index_offset: int = 0) -> bytes:
    size = len(payload) if data_size is None else data_size
    head = encode_v2_header(CarV2Header(bytes(16), data_offset, size, index_offset))
    return head + bytes(data_offset - 51) + payload


def test_carv2_is_read_transparently_with_padding_and_index_skipped() -> None:
    payload, blocks = _car([b"one", b"two"])
    data = _v2(payload, data_offset=60, index_offset=60 + len(payload)) + b"\x80\x08junk"
    header, got = decode_car(data)
    assert header.version == 2 and header.v2 is not None and header.v2.data_offset == 60
    assert [b.cid for b in got] == [b.cid for b in blocks]
    assert _decode_pieces([data[i : i + 1] for i in range(len(data))]) == \
        [(b.cid.bytes, b.data) for b in blocks]


@pytest.mark.parametrize(("kw", "match"), [
    ({"data_offset": 10_000}, "data offset"),
    ({"data_size": 10_000}, "data size"),
    ({"index_offset": 10_000}, "index offset"),
    ({"data_offset": 20}, "inside the header"),
])
def test_carv2_offsets_past_the_end(kw: dict[str, int], match: str) -> None:
    payload, _ = _car([b"one"])
    if "data_offset" in kw and kw["data_offset"] < 51:
        data = encode_v2_header(CarV2Header(bytes(16), 20, len(payload), 0)) + payload
    else:
        data = _v2(payload, **kw) if "data_offset" not in kw else \
            encode_v2_header(CarV2Header(bytes(16), kw["data_offset"], len(payload), 0)) \
            + payload
    with pytest.raises(CARError, match=match):
        decode_car(data)


def test_carv2_pragma_must_be_canonical() -> None:
    assert CARV2_PRAGMA == bytes.fromhex("0aa16776657273696f6e02")
    with pytest.raises(CARError):
        decode_car(b"\x0a\xa1\x67version\x02" + struct.pack("<QQQQQ", 0, 0, 51, 0, 0)[:-1])


_SEEDS = [p.read_bytes() for p in ALL_CARS[:8]] + [HELLO.read_bytes()]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SEEDS), st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)),
                                          max_size=6),
       st.integers(0, 6000), st.binary(max_size=40))
def test_fuzz_mutated_fixtures_raise_only_carget_errors(seed: bytes, flips: list[tuple[int, int]],
                                                        cut: int, junk: bytes) -> None:
    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    mutated = bytes(data[: cut % (len(data) + 1)]) + junk
    try:
        decode_car(mutated)
    except (DecodeError, VerificationError):
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for prefix in (b"", CARV2_PRAGMA):
        try:
            decode_car(prefix + data)
        except (DecodeError, VerificationError):
            pass
