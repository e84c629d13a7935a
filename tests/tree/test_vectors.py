"""Every directory vector of tests/vectors/dirs.json (kubo v0.43.1, each confirmed live)
through carget's tree importer: root CID, and each listed entry's CID and relative order."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from carget.tree import add_paths

VECTORS = Path(__file__).parent.parent / "vectors"
sys.path.insert(0, str(VECTORS))
from content import tree_entries, write_tree  # noqa: E402
from kuboflags import import_options  # noqa: E402

DIRS = json.loads((VECTORS / "dirs.json").read_text("utf-8"))
ROOT_NAME: str = DIRS["tree_root_name"]

@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dir-vectors")
    made: dict[str, Path] = {}
    for name in {v["tree"] for v in DIRS["vectors"]}:
        made[name] = write_tree(base / name / ROOT_NAME, tree_entries(DIRS["trees"], name))
    return made


@pytest.mark.parametrize("vec", DIRS["vectors"], ids=[v["name"] for v in DIRS["vectors"]])
def test_directory_vector(vec: dict[str, Any], trees: dict[str, Path]) -> None:
    opts = import_options(vec["options"])
    root = trees[vec["tree"]]
    src = root / vec["file"] if "file" in vec else root
    lines: list[tuple[str, str]] = []
    roots = add_paths([str(src)], opts, jobs=1,
                      report=lambda cid, name, _d: lines.append((name, cid)))
    assert str(roots[-1]) == vec["cid"]
    assert lines[-1] == (vec["entries"][-1]["path"] if "entries" in vec else lines[-1][0],
                         vec["cid"])
    got = dict(lines)
    assert len(got) == len(lines), "a path was reported twice"
    want = [(e["path"], e["cid"]) for e in vec.get("entries", [])]
    for path, cid in want:
        assert got.get(path) == cid, path
    # the oracle's listing (files in walk order, then directories children-first) is a
    # subsequence of kubo's output order
    order = [p for p, _ in lines]
    positions = [order.index(p) for p, _ in want]
    assert positions == sorted(positions)
