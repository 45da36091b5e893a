"""Splits by scene: deterministic hash assignment, explicit lists, disjointness check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from expokit.curation.build.splits import (
    SplitError,
    SplitOverlapError,
    SplitSpec,
    assign_splits,
    check_disjoint,
    hash_fraction,
    load_split_lists,
    parse_fractions,
)

SCENES = [f"scene-{i:04d}" for i in range(400)]


def test_hash_fraction_is_the_documented_sha256_rule() -> None:
    digest = hashlib.sha256(b"saltscene-0001").digest()
    assert hash_fraction("scene-0001", "salt") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0.0 <= hash_fraction("x", "") < 1.0


def test_hash_splits_follow_fractions_and_are_stable() -> None:
    spec = SplitSpec()
    first = assign_splits(SCENES, spec)
    counts = pd.Series(first).value_counts(normalize=True)
    assert counts["train"] == pytest.approx(0.8, abs=0.06)
    assert counts["val"] == pytest.approx(0.1, abs=0.05)
    assert counts["test"] == pytest.approx(0.1, abs=0.05)
    # Same salt -> same split, whatever else is in the batch (no scene moves when others join).
    assert assign_splits(list(reversed(SCENES)), spec) == first
    assert assign_splits(SCENES[:30], spec) == {s: first[s] for s in SCENES[:30]}
    # Another salt draws another split.
    other = assign_splits(SCENES, SplitSpec(salt="another"))
    assert sum(first[s] != other[s] for s in SCENES) > 50


def test_interval_order_is_the_fraction_order() -> None:
    spec = SplitSpec(fractions=(("a", 0.5), ("b", 0.5)), salt="s")
    for scene, split in assign_splits(SCENES[:50], spec).items():
        assert split == ("a" if hash_fraction(scene, "s") < 0.5 else "b")
    assert set(assign_splits(SCENES[:50], SplitSpec(fractions=(("all", 1.0),))).values()) == {"all"}
    recorded = SplitSpec().to_dict()
    assert recorded["fractions"] == [["train", 0.8], ["val", 0.1], ["test", 0.1]]
    assert recorded["method"] == "hash" and "sha256" in recorded["rule"]


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((("train", 0.8), ("val", 0.1)), "sum to 0.9"),
        ((("train", 1.2), ("val", -0.2)), ">= 0"),
        ((("train", 0.5), ("train", 0.5)), "repeat"),
        ((), "empty"),
    ],
)
def test_bad_fractions_are_rejected(fractions: tuple[tuple[str, float], ...], message: str) -> None:
    with pytest.raises(SplitError, match=message):
        SplitSpec(fractions=fractions)


def test_parse_fractions() -> None:
    assert parse_fractions("0.8,0.1,0.1") == (("train", 0.8), ("val", 0.1), ("test", 0.1))
    assert parse_fractions("a=0.25, b=0.75") == (("a", 0.25), ("b", 0.75))
    with pytest.raises(SplitError, match="mix"):
        parse_fractions("a=0.5,0.5")
    with pytest.raises(SplitError, match="cannot read"):
        parse_fractions("0.5,x")


def test_explicit_lists(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": ["s1", "s2"], "test": ["s3"]}))
    lists = load_split_lists(path)
    spec = SplitSpec(lists=lists, lists_source=str(path))
    assert assign_splits(["s1", "s2", "s3"], spec) == {"s1": "train", "s2": "train", "s3": "test"}
    with pytest.raises(SplitError, match=r"1 scene\(s\) are in no split list.*s4"):
        assign_splits(["s1", "s2", "s3", "s4"], spec)
    fallback = SplitSpec(lists=lists, default_split="train")
    assert assign_splits(["s1", "s2", "s3", "s4"], fallback)["s4"] == "train"
    assert spec.to_dict()["lists"] == {"train": ["s1", "s2"], "test": ["s3"]}
    text = tmp_path / "splits.txt"
    text.write_text("# split scene\ntrain s1\nval\ts2\ntest,s3\n")
    assert load_split_lists(text) == {"train": ("s1",), "val": ("s2",), "test": ("s3",)}


def test_a_scene_listed_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": ["s1"], "test": ["s1"]}))
    with pytest.raises(SplitError, match="'s1' is listed in split 'train' and in 'test'"):
        load_split_lists(path)
    bad = tmp_path / "bad.txt"
    bad.write_text("train s1 extra\n")
    with pytest.raises(SplitError, match=r"bad.txt:1"):
        load_split_lists(bad)


def test_check_disjoint_names_the_scene_and_splits() -> None:
    ok = pd.DataFrame(
        {
            "pair_id": ["a/-/1", "a/-/2", "b/-/1"],
            "scene_id": ["a", "a", "b"],
            "split": ["train"] * 2 + ["test"],
        }
    )
    check_disjoint(ok)
    leaked = ok.assign(split=["train", "val", "test"])
    with pytest.raises(SplitOverlapError, match=r"scene 'a' is in 2 splits \(train, val\)") as info:
        check_disjoint(leaked)
    assert info.value.scene_id == "a" and "a/-/2" in str(info.value)
