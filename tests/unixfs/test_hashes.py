"""The multihash table: known-answer digests from the standards, whole multihashes from
go-multihash (kubo's), and every entry verifying blocks the same way it hashes them.

Digest sources: SHA-1 FIPS 180-4 examples; SHA-3 and SHAKE256 FIPS 202 examples (NIST's
"abc" and 1600-bit 0xa3 messages); Keccak-256/-512 the Keccak team's original padding
(the empty and "abc" values Ethereum and the Keccak reference code give); BLAKE2b/BLAKE2s
RFC 7693 appendices A and B; BLAKE3 the reference repository's test_vectors.json (input
bytes ``i % 251``); double SHA-256 Bitcoin's ``hello`` and empty-string values.
The multihashes are go-multihash v0.2.3's ``sum_test.go`` cases at default lengths.
"""

from __future__ import annotations

import pytest

from carget.car import verify_block
from carget.cid import ALIASES, CID, HASHES, RAW, encode_varint, hash_function
from carget.errors import HashMismatch, UsageError, VerificationError

A3 = bytes([0xA3]) * 200  # FIPS 202's 1600-bit message


def _b3(n: int) -> bytes:
    """BLAKE3 test_vectors.json's input of length ``n``."""
    return bytes(i % 251 for i in range(n))


#: (name, input, digest hex) from the standards and reference implementations
KNOWN_ANSWERS = [
    ("sha1", b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("sha1", b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("sha3-224", b"abc", "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf"),
    ("sha3-224", A3, "9376816aba503f72f96ce7eb65ac095deee3be4bf9bbc2a1cb7e11e0"),
    ("sha3-384", b"abc", "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b2"
                         "98d88cea927ac7f539f1edf228376d25"),
    ("sha3-384", A3, "1881de2ca7e41ef95dc4732b8f5f002b189cc1e42b74168ed1732649ce1dbcdd"
                     "76197a31fd55ee989f2d7050dd473e8f"),
    ("sha3-512", b"abc", "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e"
                         "10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"),
    ("sha3-512", A3, "e76dfad22084a8b1467fcf2ffa58361bec7628edf5f3fdc0e4805dc48caeeca8"
                     "1b7c13c30adf52a3659584739a2df46be589c51ca1a4a8416df6545a1ce8ba00"),
    ("shake-256", b"", "46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762f"
                       "d75dc4ddd8c0f200cb05019d67b592f6fc821c49479ab48640292eacb3b7c4be"),
    ("shake-256", b"abc", "483366601360a8771c6863080cc4114d8db44530f8f1e1ee4f94ea37e78b5739"
                          "d5a15bef186a5386c75744c0527e1faa9f8726e462a12a4feb06bd8801e751e4"),
    ("shake-256", A3, "cd8a920ed141aa0407a22d59288652e9d9f1a7ee0c1e7c1ca699424da84a904d"
                      "2d700caae7396ece96604440577da4f3aa22aeb8857f961c4cd8e06f0ae6610b"),
    ("keccak-256", b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
    ("keccak-256", b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    ("keccak-512", b"", "0eab42de4c3ceb9235fc91acffe746b29c29a8c366b7c60e4e67c466f36a4304"
                        "c00fa9caf9d87976ba469bcbe06713b435f091ef2769fb160cdab33d3670680e"),
    ("keccak-512", b"abc", "18587dc2ea106b9a1563e32b3312421ca164c7f1f07bc922a9c83d77cea3a1e5"
                           "d0c69910739025372dc14ac9642629379540c17e2a65b19d77aa511a9d00bb96"),
    ("blake3", b"", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
    ("blake3", _b3(1), "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"),
    ("blake3", _b3(1024), "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"),
    ("blake3", _b3(1025), "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"),
    ("blake2b-512", b"abc", "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
                            "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"),
    ("blake2s-256", b"abc", "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"),
    ("dbl-sha2-256", b"", "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"),
    ("dbl-sha2-256", b"hello",
     "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"),
]

#: (name, input, multihash hex) from go-multihash v0.2.3 sum_test.go, default lengths
GO_MULTIHASH = [
    ("sha1", b"foo", "11140beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"),
    ("sha3-512", b"foo", "14404bca2b137edc580fe50a88983ef860ebaca36c857b1f492839d6d7392452"
                         "a63c82cbebc68e3b70a2a1480b4bb5d437a7cba6ecf9d89f9ff3ccd14cd6146ea7e7"),
    ("sha3-224", b"beep boop", "171c0da73a89549018df311c0a63250e008f7be357f93ba4e582aaea32b8"),
    ("sha3-384", b"beep boop", "153075a9cff1bcfbe8a7025aa225dd558fb002769d4bf3b67d2aaf1804591722"
                               "08bea989804aefccf060b583e629e5f41e8d"),
    ("dbl-sha2-256", b"foo",
     "5620c7ade88fc7a21498a6a5e5c385e1f68bed822b72aa63c4a9a48a02c2466ee29e"),
    ("blake2b-512", b"foo", "c0e40240ca002330e69d3e6b84a46a56a6533fd79d51d97a3bb7cad6c2ff43b3"
                            "54185d6dc1e723fb3db4ae0737e120378424c714bb982d9dc5bbd7a0ab318240"
                            "ddd18f8d"),
    ("blake2b-256", b"foo",
     "a0e40220b8fe9f7f6255a6fa08f668ab632a8d081ad87983c77cd274e48ce450f0b349fd"),
    ("blake2b-360", b"foo", "ade4022dca82ab956d5885e3f5db10cca94182f01a6ca2c47f9f4228497dcc9f"
                            "4a0121c725468b852a71ec21fcbeb725df"),
    ("blake2b-384", b"foo", "b0e40230e629ee880953d32c8877e479e3b4cb0a4c9d5805e2b34c675b5a5863"
                            "c4ad7d64bb2a9b8257fac9d82d289b3d39eb9cc2"),
    ("blake2b-160", b"foo", "94e40214983ceba2afea8694cc933336b27b907f90c53a88"),
    ("blake2s-256", b"foo",
     "e0e4022008d6cad88075de8f192db097573d0e829411cd91eb6ec65e8fc16c017edfdb74"),
    ("keccak-256", b"foo",
     "1b2041b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d"),
    ("keccak-512", b"beep boop", "1d40e161c54798f78eba3404ac5e7e12d27555b7b810e7fd0db3f25ffa0c785c"
                                 "438331b0fbb6156215f69edf403c642e5280f4521da9bd767296ec81f05100"
                                 "852e78"),
    ("shake-256", b"foo", "19401af97f7818a28edfdfce5ec66dbdc7e871813816d7d585fe1f12475ded5b"
                          "6502b7723b74e2ee36f2651a10a8eaca72aa9148c3c761aaceac8f6d6cc64381ed39"),
    ("blake3", b"foo", "1e2004e0bb39f30b1a3feb89f536c93be15055482df748674b00d26e5a75777702e9"),
]

#: kubo 0.43.1's ``--hash`` names (go-multihash Names that boxo's verifcid allows and
#: go-multihash computes), identity aside
KUBO_NAMES = {
    "sha1", "sha2-256", "sha2-512", "sha3-224", "sha3-256", "sha3-384", "sha3-512",
    "shake-256", "keccak-256", "keccak-512", "blake3", "dbl-sha2-256", "blake2s-256",
    *(f"blake2b-{8 * n}" for n in range(20, 65)),
}


@pytest.mark.parametrize(("name", "data", "digest"), KNOWN_ANSWERS,
                         ids=[f"{n}-{len(d)}" for n, d, _ in KNOWN_ANSWERS])
def test_known_answer_digests(name: str, data: bytes, digest: str) -> None:
    assert hash_function(name).digest(data).hex() == digest


@pytest.mark.parametrize(("name", "data", "mh"), GO_MULTIHASH, ids=[n for n, _, _ in GO_MULTIHASH])
def test_multihashes_equal_go_multihash(name: str, data: bytes, mh: str) -> None:
    h = hash_function(name)
    assert h.multihash(data).hex() == mh
    assert hash_function(h.code) is h


def test_the_table_is_kubos_hashes() -> None:
    assert set(HASHES) - {"identity"} == KUBO_NAMES
    for name, h in HASHES.items():
        assert h.name == name
        assert h.prefix == encode_varint(h.code) + encode_varint(h.digest_size)
        if name.startswith("blake2b-"):  # the BLAKE2 code carries the length
            assert h.code == 0xB200 + h.digest_size == 0xB200 + int(name[8:]) // 8
        if name != "identity":
            assert len(h.digest(b"x")) == h.digest_size >= 20


@pytest.mark.parametrize("name", ["SHA1", "Blake3", "KECCAK-256", "sha3", "SHA3"])
def test_names_as_kubo_takes_them(name: str) -> None:
    want = ALIASES.get(name.lower(), name.lower())
    assert hash_function(name) is HASHES[want]
    assert hash_function("sha3").name == "sha3-512"


@pytest.mark.parametrize("name", ["md5", "shake-128", "murmur3-x64-64", "keccak-224",
                                  "keccak-384", "blake2b-152", "blake2b-8", "blake2s-248",
                                  "sha2-384", "x11", "nope"])
def test_what_kubo_refuses_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="unsupported hash function"):
        hash_function(name)


@pytest.mark.parametrize("name", sorted(KUBO_NAMES))
def test_each_hash_verifies_its_blocks_and_refuses_others(name: str) -> None:
    h = HASHES[name]
    data = bytes(range(256)) * 41  # several blocks of every sponge and tree hash
    # hashed in pieces (as the importer hashes a framed leaf) or whole: one digest
    assert h.new is not None
    parts = h.new()
    for i in range(0, len(data), 1000):
        parts.update(memoryview(data)[i:i + 1000])
    assert parts.digest() == h.digest(data)
    cid = CID(1, RAW, h.multihash(data))
    assert cid.hash_code == h.code and len(cid.digest) == h.digest_size
    cid.verify(data)
    verify_block(cid, data)
    verify_block(CID.from_bytes(cid.bytes), memoryview(data))
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(HashMismatch):
        cid.verify(bad)
    with pytest.raises(HashMismatch):
        verify_block(cid, bytes(bad), offset=7)


@pytest.mark.parametrize("code", [0xD5, 0x18, 0x1A, 0xB213, 0xB25F])  # md5, shake-128, ...
def test_a_block_under_a_hash_kubo_refuses_cannot_be_verified(code: int) -> None:
    cid = CID(1, RAW, encode_varint(code) + bytes([20]) + bytes(20))
    with pytest.raises(VerificationError, match="cannot verify"):
        verify_block(cid, b"data")
    with pytest.raises(UsageError):
        cid.verify(b"data")
