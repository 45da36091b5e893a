"""Train/val/test splits made by scene, never by row.

Two ways to assign a scene to a split (:class:`SplitSpec`):

``hash`` (default)
    ``u = int(sha256(salt + scene_id)[:8 bytes]) / 2**64`` puts every scene at a fixed point
    of ``[0, 1)``; the fractions cut that interval in their order (``train`` takes
    ``[0, 0.8)``, ``val`` ``[0.8, 0.9)``, ``test`` ``[0.9, 1)``). The same scenes and salt
    give the same split on every machine, whatever their order.

    Small datasets: hashing alone can leave a split empty (10 scenes at 0.8/0.1/0.1 often
    get no test scene, and an export then has no ``testing/`` folder). When there are at
    least as many scenes as splits with a non-zero fraction, every such split gets at least
    one scene: for each empty split, in fraction order, the scene placed now whose ``u`` is
    closest to that split's interval (distance ``lo - u`` or ``u - hi``; ties by scene id),
    taken from a split that keeps at least one scene, moves into it (:func:`fill_empty_splits`).
    Otherwise the hash decides alone, so adding scenes moves no other scene, except a scene
    moved by this rule, which may go back to its hashed split once the batch fills that
    split by itself. Scenes kept from an earlier build are never moved (they count as
    filling their split).
``lists``
    Explicit scene ids per split (a JSON file ``{"train": [...], "val": [...]}`` or a text
    file of ``<split> <scene_id>`` lines). A scene listed under two splits is an error; a
    scene listed nowhere is an error unless ``default_split`` names where it goes; a listed
    id that is no scene of the dataset is an error too (a typo would otherwise send the
    intended test scene to the default split).

Split names and scene ids become folder names (``images/<scene_id>/``, exports by split),
so both must be safe path components (:func:`expokit.core.paths.check_name`); they are
checked where they enter: :class:`SplitSpec`, :func:`parse_fractions` and
:func:`load_split_lists`.

An incremental build keeps scenes of earlier builds: :func:`assign_splits` gives them their
recorded split (``kept``) unless the lists now place them explicitly.

:func:`check_disjoint` proves a manifest puts no scene in two splits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.core.errors import ExpokitError
from expokit.core.paths import UnsafeNameError, check_name

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_FRACTIONS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))
DEFAULT_SALT = "expokit-v1"
HASH_RULE = (
    "u = int.from_bytes(sha256((salt + scene_id).encode('utf-8')).digest()[:8], 'big') / 2**64"
)
FILL_RULE = (
    "then, if there are at least as many scenes as non-zero splits, each empty non-zero split "
    "(in order) takes the scene placed now whose u is nearest its interval [lo, hi) (ties by "
    "scene id) from a split that keeps at least one scene"
)


class SplitError(ExpokitError):
    """A split specification cannot be applied (bad fractions, unlisted or doubly listed scenes)."""


def check_split_name(value: object, what: str = "split name", *, where: str = "") -> str:
    """``value`` when it is a safe path component, else :class:`SplitError` naming it.

    Parameters
    ----------
    value
        A split name or scene id.
    what
        What it is, for the message.
    where
        Where it came from (an option or a file), for the message.
    """
    try:
        return check_name(value, what, where=where)
    except UnsafeNameError as exc:
        raise SplitError(str(exc)) from None


class SplitOverlapError(SplitError):
    """A scene appears in more than one split of a manifest."""

    def __init__(self, scene_id: str, splits: Sequence[str], rows: Sequence[str]) -> None:
        self.scene_id = scene_id
        self.splits = tuple(splits)
        shown = ", ".join(rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        super().__init__(
            f"scene {scene_id!r} is in {len(self.splits)} splits ({', '.join(self.splits)}); "
            f"rows: {shown}. Splits must be made by scene so no scene leaks between them."
        )


@dataclass(frozen=True)
class SplitSpec:
    """How scenes are assigned to splits (see the module docstring).

    Attributes
    ----------
    fractions
        ``((name, fraction), ...)`` in interval order; fractions are >= 0 and sum to 1.
    salt
        Mixed into the hash; change it to draw another random split.
    lists
        ``{split: (scene_id, ...)}`` to assign scenes explicitly (``fractions`` is then unused).
    default_split
        With ``lists``: the split of scenes listed nowhere (``None``: such scenes are an error).
    lists_source
        Where ``lists`` came from (recorded in info.json only).
    """

    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS
    salt: str = DEFAULT_SALT
    lists: Mapping[str, tuple[str, ...]] | None = None
    default_split: str | None = None
    lists_source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        fractions = tuple((str(n), float(f)) for n, f in self.fractions)
        object.__setattr__(self, "fractions", fractions)
        names = [n for n, _ in fractions]
        if not fractions:
            raise SplitError("split fractions are empty")
        if len(set(names)) != len(names):
            raise SplitError(f"split names repeat: {', '.join(names)}")
        for name, value in fractions:
            check_split_name(name)
            if not math.isfinite(value) or value < 0:
                raise SplitError(f"split {name!r}: fraction must be a finite number >= 0")
        total = sum(f for _, f in fractions)
        if abs(total - 1.0) > 1e-6:
            raise SplitError(f"split fractions sum to {total:g}, not 1 ({_describe(fractions)})")
        if self.lists is not None:
            lists = {str(k): tuple(str(s) for s in v) for k, v in self.lists.items()}
            if not lists:
                raise SplitError("split lists are empty")
            where = self.lists_source or ""
            for split, scenes in lists.items():
                check_split_name(split, where=where)
                for scene in scenes:
                    check_split_name(scene, "scene id", where=where)
            object.__setattr__(self, "lists", lists)
            _check_lists_disjoint(lists)
            if self.default_split is not None:
                check_split_name(self.default_split, "default split")
        elif self.default_split is not None:
            raise SplitError("default_split only applies to explicit split lists")

    @property
    def method(self) -> str:
        return "lists" if self.lists is not None else "hash"

    def to_dict(self) -> dict[str, Any]:
        """The ``splits`` block of info.json (without per-scene assignments)."""
        if self.lists is None:
            return {
                "method": "hash",
                "unit": "scene_id",
                "salt": self.salt,
                # A list, not an object: the order defines the intervals and JSON writers
                # may sort object keys.
                "fractions": [[name, value] for name, value in self.fractions],
                "rule": HASH_RULE
                + "; split = first name whose cumulative fraction exceeds u; "
                + FILL_RULE,
            }
        return {
            "method": "lists",
            "unit": "scene_id",
            "source": self.lists_source,
            "lists": {k: list(v) for k, v in self.lists.items()},
            "default_split": self.default_split,
        }


def _describe(fractions: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{n}={f:g}" for n, f in fractions)


def _check_lists_disjoint(lists: Mapping[str, Sequence[str]]) -> None:
    seen: dict[str, str] = {}
    for split, scenes in lists.items():
        for scene in scenes:
            if scene in seen and seen[scene] != split:
                raise SplitError(
                    f"scene {scene!r} is listed in split {seen[scene]!r} and in {split!r}"
                )
            seen[scene] = split


def hash_fraction(scene_id: str, salt: str = DEFAULT_SALT) -> float:
    """The scene's point in ``[0, 1)``: first 8 bytes of ``sha256(salt + scene_id)`` / 2**64."""
    digest = hashlib.sha256((salt + scene_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(
    scene_ids: Iterable[str],
    spec: SplitSpec,
    *,
    kept: Mapping[str, str] | None = None,
    removed: Iterable[str] = (),
) -> dict[str, str]:
    """``{scene_id: split}`` for every scene of ``scene_ids`` and of ``kept``.

    Parameters
    ----------
    scene_ids
        Scenes (re)built now: placed by ``spec``.
    spec
        The split specification.
    kept
        ``{scene_id: split}`` of scenes kept from an earlier build: they keep their split
        unless ``spec``'s lists name them.
    removed
        Scenes being removed from the dataset: a list may still name them (not a typo),
        they get no split.

    Raises
    ------
    SplitError
        With ``lists``: scenes built now that are listed nowhere and no ``default_split``,
        or listed ids that are no scene of the dataset (the message names them).
    """
    scenes = sorted(set(scene_ids))
    earlier = {s: v for s, v in (kept or {}).items() if s not in set(scenes)}
    if spec.lists is not None:
        where = {scene: split for split, ids in spec.lists.items() for scene in ids}
        unlisted = [s for s in scenes if s not in where]
        if unlisted and spec.default_split is None:
            shown = ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
            raise SplitError(
                f"{len(unlisted)} scene(s) are in no split list ({spec.lists_source or 'lists'}): "
                f"{shown}; list them or name a default split"
            )
        known = set(scenes) | set(earlier) | set(removed)
        unknown = sorted(set(where) - known)
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise SplitError(
                f"{len(unknown)} scene id(s) in the split lists "
                f"({spec.lists_source or 'lists'}) are no scene of the dataset: {shown} "
                f"({len(set(scenes) | set(earlier))} scene(s) known); fix the typo or drop them"
            )
        assigned = {s: where.get(s, spec.default_split or "") for s in scenes}
        assigned.update({s: where.get(s, split) for s, split in earlier.items()})
        return dict(sorted(assigned.items()))
    out: dict[str, str] = dict(earlier)
    for scene in scenes:
        u = hash_fraction(scene, spec.salt)
        cumulative = 0.0
        chosen = spec.fractions[-1][0]
        for name, fraction in spec.fractions:
            cumulative += fraction
            if u < cumulative:
                chosen = name
                break
        out[scene] = chosen
    return dict(sorted(fill_empty_splits(out, scenes, spec).items()))


def split_intervals(spec: SplitSpec) -> dict[str, tuple[float, float]]:
    """``{split: (lo, hi)}``: the part of ``[0, 1)`` each hash split takes."""
    out: dict[str, tuple[float, float]] = {}
    lo = 0.0
    for name, fraction in spec.fractions:
        out[name] = (lo, lo + fraction)
        lo += fraction
    return out


def fill_empty_splits(
    assigned: Mapping[str, str], movable: Iterable[str], spec: SplitSpec
) -> dict[str, str]:
    """``assigned`` with every empty non-zero split given one scene, where possible.

    Applies only when ``assigned`` holds at least as many scenes as ``spec`` has splits with
    a non-zero fraction. For each empty such split, in fraction order, the scene of
    ``movable`` nearest to the split's interval by its hash point (ties: smallest scene id)
    moves there, taken only from a split that still holds two or more scenes. Scenes not in
    ``movable`` (kept from earlier builds) never move. Deterministic: the result depends on
    the set of scenes and the salt only.
    """
    out = dict(assigned)
    wanted = [name for name, fraction in spec.fractions if fraction > 0]
    if len(out) < len(wanted):
        return out
    intervals = split_intervals(spec)
    candidates = sorted(set(movable) & set(out))
    points = {scene: hash_fraction(scene, spec.salt) for scene in candidates}
    for split in wanted:
        counts: dict[str, int] = {}
        for value in out.values():
            counts[value] = counts.get(value, 0) + 1
        if counts.get(split):
            continue
        lo, hi = intervals[split]
        donors = [s for s in candidates if counts.get(out[s], 0) >= 2]
        if not donors:
            continue

        def distance(scene: str, lo: float = lo, hi: float = hi) -> tuple[float, str]:
            u = points[scene]
            return (lo - u if u < lo else u - hi if u >= hi else 0.0, scene)

        out[min(donors, key=distance)] = split
    return out


def parse_fractions(
    text: str, names: Sequence[str] = ("train", "val", "test")
) -> tuple[tuple[str, float], ...]:
    """``"0.8,0.1,0.1"`` (names taken from ``names``) or ``"train=0.7,val=0.15,test=0.15"``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    out: list[tuple[str, float]] = []
    try:
        if all("=" in t for t in items):
            for item in items:
                name, value = item.split("=", 1)
                out.append(
                    (check_split_name(name.strip(), where="--split-fractions"), float(value))
                )
        elif any("=" in t for t in items):
            raise ValueError("mix of named and unnamed fractions")
        else:
            if len(items) > len(names):
                raise ValueError(f"{len(items)} fractions but only {len(names)} split names")
            out = [(names[i], float(v)) for i, v in enumerate(items)]
    except ValueError as exc:
        raise SplitError(f"cannot read split fractions {text!r}: {exc}") from None
    return tuple(out)


def load_split_lists(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Read explicit split lists.

    Accepted formats: JSON ``{"train": ["scene", ...], ...}`` (or ``{"splits": {...}}``), or
    text with one ``<split> <scene_id>`` per line (space, tab or comma separated; ``#``
    comments).

    Raises
    ------
    SplitError
        Unreadable file, wrong structure, or a scene listed under two splits.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"{file}: cannot read split lists: {exc}") from None
    lists: dict[str, list[str]] = {}
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SplitError(f"{file}: not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("splits"), dict):
            data = data["splits"]
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
        ):
            raise SplitError(f"{file}: expected {{split: [scene_id, ...]}}")
        lists = {str(k): list(v) for k, v in data.items()}
        for split, scenes in lists.items():
            check_split_name(split, where=str(file))
            for scene in scenes:
                check_split_name(scene, "scene id", where=str(file))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            content = line.split("#", 1)[0].replace(",", " ").split()
            if not content:
                continue
            if len(content) != 2:
                raise SplitError(f"{file}:{number}: expected '<split> <scene_id>', got {line!r}")
            split = check_split_name(content[0], where=f"{file}:{number}")
            scene = check_split_name(content[1], "scene id", where=f"{file}:{number}")
            lists.setdefault(split, []).append(scene)
    if not lists:
        raise SplitError(f"{file}: no split lists found")
    result = {k: tuple(v) for k, v in lists.items()}
    try:
        _check_lists_disjoint(result)
    except SplitError as exc:
        raise SplitError(f"{file}: {exc}") from None
    return result


def check_disjoint(manifest: pd.DataFrame) -> None:
    """Prove that no scene of ``manifest`` is in two splits.

    Raises
    ------
    SplitOverlapError
        Naming the first offending scene (sorted), its splits and its rows.
    """
    import pandas as pd

    if manifest.empty:
        return
    frame = manifest[["scene_id", "split", "pair_id"]].astype("string")
    counts = frame.groupby("scene_id", dropna=False)["split"].nunique(dropna=False)
    for scene in sorted(str(s) for s in counts[counts > 1].index):
        rows = frame[frame["scene_id"] == scene]
        splits = sorted({"<null>" if pd.isna(v) else str(v) for v in rows["split"].tolist()})
        raise SplitOverlapError(scene, splits, [str(p) for p in rows["pair_id"].tolist()])
