"""The gateway-conformance expectations from the fixtures README, over real HTTP.

Every CAR case runs twice, as the suite does: once with ``?format=car`` and once with
``Accept: application/vnd.ipld.car``; block lists are exact and in DFS order.
"""

from __future__ import annotations

import httpx
import pytest
from servehelp import CAR_TYPE, car_cids

# subdir-with-two-single-block-files.car
TWO = "bafybeietjm63oynimmv5yyqay33nui4y4wx6u3peezwetxgiwvfmelutzu"
TWO_SUB = "bafybeiggghzz6dlue3m6nb2dttnbrygxh3lrjl5764f2m4gq7dgzdt55o4"
ASCII = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm"
HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
# subdir-with-mixed-block-files.car
MIXED = "bafybeidh6k2vzukelqtrjsmd4p52cpmltd2ufqrdtdg6yigi73in672fwu"
MIXED_SUB = "bafybeicnmple4ehlz3ostv2sbojz3zhh5q7tz5r2qkfdpqfilgggeen7xm"
MULTI = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
LEAVES = [
    "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
    "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
    "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
    "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
    "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
]
# single-layer-hamt-with-multi-block-files.car
HAMT = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
HAMT_1 = "bafybeiawjmzmi5c6v5h75nepfpx7jj5ns5t54girned3kilvakmhctxlxy"
HAMT_685 = "bafybeifajm5xyg46n4hjxg7clq2f7vcn7eg7bn3yevylcemr6vd7mp6gta"
# dir-with-duplicate-files.car
DUPS = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"
# file-3k-and-3-blocks-missing-block.car
MISSING = "QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk"
MISSING_FIRST = "QmPKt7ptM2ZYSGPUc8PmPT2VBkLDK3iqpG9TBJY7PCE9rF"
MISSING_LAST = "QmWXY482zQdwecnfBsj78poUUuPXvyw2JAFAEMw4tzTavV"
# dir-with-dag-cbor-with-links.car
CBOR_DIR = "bafybeia264q44a3kmfc2otctzu4egp2k235o3t7mslz2yjraymp4nv6asi"
CBOR_DOC = "bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha"

CASES: list[tuple[str, list[str]]] = [
    (f"{TWO}/subdir/ascii.txt", [TWO, TWO_SUB, ASCII]),
    (f"{TWO}/subdir?dag-scope=block", [TWO, TWO_SUB]),
    (f"{TWO}/subdir/ascii.txt?dag-scope=block", [TWO, TWO_SUB, ASCII]),
    (f"{TWO}?dag-scope=entity", [TWO]),
    (f"{MIXED}/subdir/ascii.txt?dag-scope=entity", [MIXED, MIXED_SUB, ASCII]),
    (f"{MIXED}/subdir/multiblock.txt?dag-scope=entity", [MIXED, MIXED_SUB, MULTI, *LEAVES]),
    (f"{MIXED}/subdir/multiblock.txt?dag-scope=entity&entity-bytes=0:*",
     [MIXED, MIXED_SUB, MULTI, *LEAVES]),
    (f"{MIXED}/subdir?dag-scope=all", [MIXED, MIXED_SUB, ASCII, HELLO, MULTI, *LEAVES]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=512:*", [MULTI, *LEAVES[2:]]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=512:1023", [MULTI, *LEAVES[2:4]]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=512:-256", [MULTI, *LEAVES[2:4]]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=-5:*", [MULTI, *LEAVES[3:]]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=-9999:*", [MULTI, *LEAVES]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=-9999:-3", [MULTI, *LEAVES[0:4]]),
    (f"{MULTI}?dag-scope=entity&entity-bytes=0:0", [MULTI, LEAVES[0]]),
    # as kubo 0.43.1's gateway: entity-bytes narrows dag-scope=entity only; the default scope
    # (all) sends the whole DAG, as lassie expects, and block the block alone
    (f"{MULTI}?entity-bytes=512:1023", [MULTI, *LEAVES]),
    (f"{MULTI}?dag-scope=all&entity-bytes=512:1023", [MULTI, *LEAVES]),
    (f"{MULTI}?entity-bytes=99999:*", [MULTI, *LEAVES]),  # past the end: only entity refuses
    (f"{MULTI}?dag-scope=block&entity-bytes=512:1023", [MULTI]),
    (f"{HAMT}/685.txt", [HAMT, HAMT_685, MULTI, *LEAVES]),
    (f"{HAMT}/1.txt?dag-scope=block", [HAMT, HAMT_1, MULTI]),
    (f"{MISSING}?dag-scope=entity&entity-bytes=0:1000", [MISSING, MISSING_FIRST]),
    (f"{MISSING}?dag-scope=entity&entity-bytes=2200:*", [MISSING, MISSING_LAST]),
    (f"{CBOR_DOC}/files/single", [CBOR_DOC, HELLO]),
    (f"{CBOR_DIR}/document?dag-scope=entity", [CBOR_DIR, CBOR_DOC]),
    (f"{DUPS}?dag-scope=all", [DUPS, ASCII, HELLO, MULTI, *LEAVES]),  # dups=n by default
]


def _get(client: httpx.Client, path: str, how: str,
         accept: str | None = None) -> httpx.Response:
    url = f"/ipfs/{path}"
    headers = {}
    if how == "format":
        url += ("&" if "?" in url else "?") + "format=car"
        if accept:
            headers["Accept"] = accept
    else:
        headers["Accept"] = accept or CAR_TYPE
    return client.get(url, headers=headers)


def _check_car_headers(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["accept-ranges"] == "none"
    assert CAR_TYPE in r.headers["content-type"]
    assert "version=1" in r.headers["content-type"]
    assert r.headers["content-disposition"].startswith("attachment; filename=\"")
    assert '.car"; filename*=' in r.headers["content-disposition"]
    assert r.headers["etag"]
    assert r.headers["cache-control"] == "public, max-age=29030400, immutable"


@pytest.mark.parametrize("how", ["format", "accept"])
@pytest.mark.parametrize(("path", "expected"), CASES, ids=[c[0][-40:] for c in CASES])
def test_exact_blocks_in_dfs_order(client: httpx.Client, path: str, expected: list[str],
                                   how: str) -> None:
    r = _get(client, path, how)
    _check_car_headers(r)
    assert car_cids(r.content) == expected


def test_hamt_entity_is_root_and_every_shard(client: httpx.Client) -> None:
    for q in ("dag-scope=entity", "dag-scope=entity&entity-bytes=0:*"):
        r = client.get(f"/ipfs/{HAMT}?format=car&{q}")
        cids = car_cids(r.content)
        assert cids[0] == HAMT
        assert len(cids) == 237  # root plus 236 sub-shards (README), no file blocks
        assert MULTI not in cids and not set(LEAVES) & set(cids)


def test_missing_path_entry_is_404(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{TWO}/subdir/i-do-not-exist?format=car")
    assert r.status_code == 404


def test_dups_y_repeats_and_dups_n_does_not(client: httpx.Client) -> None:
    yes = client.get(f"/ipfs/{DUPS}",
                     headers={"Accept": f"{CAR_TYPE}; version=1; order=dfs; dups=y"})
    _check_car_headers(yes)
    assert "order=dfs" in yes.headers["content-type"]
    assert "dups=y" in yes.headers["content-type"]
    assert car_cids(yes.content) == [DUPS, ASCII, ASCII, HELLO, MULTI, *LEAVES]
    no = client.get(f"/ipfs/{DUPS}",
                    headers={"Accept": f"{CAR_TYPE}; version=1; order=dfs; dups=n"})
    assert "dups=n" in no.headers["content-type"]
    assert car_cids(no.content) == [DUPS, ASCII, HELLO, MULTI, *LEAVES]


def test_order_unk_still_answers_with_an_order(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{DUPS}", headers={"Accept": f"{CAR_TYPE}; order=unk"})
    assert "order=" in r.headers["content-type"]
    assert sorted(car_cids(r.content)) == sorted([DUPS, ASCII, HELLO, MULTI, *LEAVES])


def test_query_parameters_beat_accept_parameters(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{DUPS}?format=car&car-order=dfs",
                   headers={"Accept": f"{CAR_TYPE}; order=unk"})
    assert "order=dfs" in r.headers["content-type"]
    r = client.get(f"/ipfs/{DUPS}?format=car&car-dups=y",
                   headers={"Accept": f"{CAR_TYPE}; order=dfs; dups=n"})
    assert "dups=y" in r.headers["content-type"]
    assert car_cids(r.content).count(ASCII) == 2


def test_identity_cid_is_never_sent_as_a_block(client: httpx.Client) -> None:
    ident = "bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa"
    r = client.get(f"/ipfs/{ident}",
                   headers={"Accept": f"{CAR_TYPE}; version=1; order=dfs; dups=y"})
    assert r.status_code == 200
    assert car_cids(r.content) == []


def test_missing_block_mid_car_ends_the_stream_early(client: httpx.Client) -> None:
    # the middle leaf is absent: the response must stop, not complete or pad
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"/ipfs/{MISSING}?format=car")


RAW_ROOT = "bafybeie72edlprgtlwwctzljf6gkn2wnlrddqjbkxo3jomh4n7omwblxly"
RAW_ASCII = "bafkreihhpc5y2pqvl5rbe5uuyhqjouybfs3rvlmisccgzue2kkt5zq6upq"


@pytest.mark.parametrize("how", ["format", "accept"])
def test_raw_block_response(client: httpx.Client, how: str) -> None:
    if how == "format":
        r = client.get(f"/ipfs/{RAW_ASCII}?format=raw")
    else:
        r = client.get(f"/ipfs/{RAW_ASCII}", headers={"Accept": "application/vnd.ipld.raw"})
    assert r.status_code == 200
    assert r.content == b"hello application/vnd.ipld.raw\n"
    assert r.headers["content-type"] == "application/vnd.ipld.raw"
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert RAW_ASCII in r.headers["x-ipfs-path"]
    assert RAW_ASCII in r.headers["x-ipfs-roots"]
    cc = r.headers["cache-control"]
    assert "public" in cc and "immutable" in cc
    assert int(cc.split("max-age=")[1].split(",")[0]) >= 29030400


def test_format_beats_accept_both_ways(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{RAW_ROOT}?format=car",
                   headers={"Accept": "application/vnd.ipld.raw"})
    assert CAR_TYPE in r.headers["content-type"]
    r = client.get(f"/ipfs/{RAW_ROOT}?format=raw", headers={"Accept": CAR_TYPE})
    assert r.headers["content-type"] == "application/vnd.ipld.raw"


def test_probe_bafkqaaa(client: httpx.Client) -> None:
    r = client.get("/ipfs/bafkqaaa?format=raw")
    assert r.status_code == 200 and r.content == b""
    r = client.get("/ipfs/bafkqaaa", headers={"Accept": "application/vnd.ipld.raw"})
    assert r.status_code == 200 and r.content == b""
    r = client.get("/ipfs/bafkqaaa?format=car")
    assert r.status_code == 200
    from carget.car.decoder import decode_car

    header, blocks = decode_car(r.content)
    assert [str(c) for c in header.roots] == ["bafkqaaa"] and blocks == []
    r = client.head("/ipfs/bafkqaaa?format=raw")
    assert r.status_code == 200


def test_only_if_cached(client: httpx.Client) -> None:
    absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    r = client.get(f"/ipfs/{absent}?format=raw", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 412
    r = client.get(f"/ipfs/{absent}?format=car", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 412
    r = client.get(f"/ipfs/{absent}?format=raw")
    assert r.status_code == 404
    r = client.get(f"/ipfs/{RAW_ASCII}?format=raw", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 200


@pytest.mark.parametrize("rng", ["bytes=2200-2201", "bytes=0-1"])
def test_path_range_around_a_missing_block(client: httpx.Client, rng: str) -> None:
    """The suite's TestGatewayUnixFSFileRanges: a range of a file succeeds though the
    gateway lacks a block before or after it (the type is sniffed from what is there)."""
    r = client.get(f"/ipfs/{MISSING}", headers={"Range": rng})
    assert r.status_code == 206, r.text
    first, last = (int(x) for x in rng[len("bytes="):].split("-"))
    assert r.headers["content-range"].startswith(f"bytes {first}-{last}/")
    assert len(r.content) == last - first + 1
