"""Identity CIDs carry their block: get and cat answer them with no gateway at all (the
only gateway given here is a closed port, so asking it would fail the run)."""

from __future__ import annotations

from pathlib import Path

from fetchhelp import run_cli

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens there
HELLO = "bafkqac3imvwgy3zao5xxe3de"  # identity raw CID of b"hello world"


async def test_cat_identity_cid_needs_no_gateway() -> None:
    code, out, err = await run_cli("cat", f"ipfs://{HELLO}", "--gateway", DEAD, "--timeout", "10")
    assert code == 0, err
    assert out == b"hello world"
    assert "127.0.0.1:9" not in err
    code, out, err = await run_cli("cat", "bafkqaaa", "--gateway", DEAD, "--timeout", "10")
    assert (code, out) == (0, b""), err


async def test_get_identity_cid_with_digest(tmp_path: Path) -> None:
    out_path = tmp_path / "hello"
    want = "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    code, out, err = await run_cli("get", HELLO, "-o", str(out_path), "--gateway", DEAD,
                                   "--digest", want, "--timeout", "10")
    assert code == 0, err
    assert out_path.read_bytes() == b"hello world"
    assert want in out.decode()
