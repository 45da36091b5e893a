"""Pair the two cameras' photos of a capture session by host trigger time.

Each downloaded still of a session (``downloaded`` journal events: ``index``, ``role``,
``file``) gets the host time of the trigger that made it: the last ``triggered`` event of
the same ``(index, role)`` before the download (retries re-trigger), ``wall_before`` in
epoch seconds (the event's own ``t_wall`` when an older journal lacks it). Host wall time,
not the monotonic clock, so sessions made of separate runs (one camera at a time, resumed
after a reboot) still compare.

Shots of the two roles are then matched one-to-one, closest trigger times first, within
``tolerance_s``; what is left is listed as unmatched. Matching by index alone would only
work for sessions where both roles were shot by one command.

EXIF ``DateTimeOriginal`` has one-second resolution and the camera clock its own offset, so
it is only a check: each role's clock offset to the host is the median of ``EXIF - host``
over its shots (assumed 0 with fewer than 3 shots, as ``capture doctor`` keeps camera
clocks within 2 s), and a shot whose EXIF time deviates from ``host + offset`` by more than
``exif_tolerance_s`` is flagged (wrong file, camera fired late, a shot from another run).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expokit.capture.journal import DownloadedEvent, PlannedEvent, TriggeredEvent, read_events
from expokit.capture.session import FILES_DIR, JOURNAL_FILE
from expokit.core.errors import InputFileError
from expokit.core.exif import read_exif_tags

#: Roles paired by default (``expokit.capture.rig_config.ROLES``).
DEFAULT_ROLES: tuple[str, str] = ("reference", "test")


class SessionError(InputFileError):
    """A session folder cannot be read (no journal, unreadable journal)."""


@dataclass(frozen=True)
class Shot:
    """One downloaded still of one role.

    Attributes
    ----------
    host_time
        Host wall-clock time of its trigger (epoch seconds), ``None`` when the journal has
        no trigger for it (a file adopted after a crash without one).
    exif_time
        EXIF ``DateTimeOriginal`` (+ ``SubSecTimeOriginal``) read as local time, epoch
        seconds; ``None`` when absent.
    exif_deviation_s
        ``exif_time - host_time - clock offset of the role``; ``None`` when not checkable.
    """

    role: str
    index: int
    file: str
    host_time: float | None
    exif_time: float | None = None
    exif_deviation_s: float | None = None
    exists: bool = True


@dataclass(frozen=True)
class StillPair:
    """Two shots taken together: ``dt_s = test host time - reference host time``."""

    first: Shot
    second: Shot
    dt_s: float


@dataclass(frozen=True)
class StillPairing:
    """Result of :func:`pair_stills`."""

    session: Path
    roles: tuple[str, str]
    tolerance_s: float
    pairs: tuple[StillPair, ...]
    unmatched: tuple[tuple[Shot, str], ...]
    clock_offsets_s: dict[str, float | None]
    exif_flags: tuple[str, ...]
    missing_files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Every shot paired, every file present, no EXIF disagreement."""
        return not (self.unmatched or self.exif_flags or self.missing_files)

    def to_dict(self) -> dict[str, Any]:
        def shot(s: Shot) -> dict[str, Any]:
            return dataclasses.asdict(s)

        return {
            "session": str(self.session),
            "roles": list(self.roles),
            "tolerance_s": self.tolerance_s,
            "pairs": [
                {self.roles[0]: shot(p.first), self.roles[1]: shot(p.second), "dt_s": p.dt_s}
                for p in self.pairs
            ],
            "unmatched": [{**shot(s), "reason": why} for s, why in self.unmatched],
            "clock_offsets_s": self.clock_offsets_s,
            "exif_flags": list(self.exif_flags),
            "missing_files": list(self.missing_files),
        }

    def describe(self) -> list[str]:
        """Human-readable lines (for the command line)."""
        first, second = self.roles
        lines = [f"{len(self.pairs)} pairs ({first} / {second}), {len(self.unmatched)} unmatched"]
        for pair in self.pairs:
            lines.append(f"  {pair.first.file}  {pair.second.file}  dt {pair.dt_s * 1000:+.1f} ms")
        for item, why in self.unmatched:
            lines.append(f"unmatched {item.role} #{item.index} {item.file}: {why}")
        lines += [f"EXIF: {flag}" for flag in self.exif_flags]
        lines += [f"missing file: {name}" for name in self.missing_files]
        return lines


# ----------------------------------------------------------------------------- journal


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def session_shots(session_dir: str | Path) -> list[Shot]:
    """Every downloaded still of a session with its host trigger time (journal order)."""
    root = Path(session_dir)
    journal = root / JOURNAL_FILE
    if not journal.is_file():
        raise SessionError(root, f"not a capture session (no {JOURNAL_FILE})")
    try:
        events, _torn = read_events(journal)
    except OSError as exc:
        raise SessionError(journal, f"cannot read the journal ({exc})") from None
    video_plans = {e.index for e in events if isinstance(e, PlannedEvent) and e.kind == "video"}
    last_trigger: dict[tuple[int, str], float | None] = {}
    shots: list[Shot] = []
    for event in events:
        if isinstance(event, TriggeredEvent) and event.movie is None:
            if event.index not in video_plans:
                wall = event.wall_before if event.wall_before is not None else event.t_wall
                last_trigger[(event.index, event.role)] = _epoch(wall)
        elif isinstance(event, DownloadedEvent) and event.index not in video_plans:
            shots.append(
                Shot(
                    role=event.role,
                    index=event.index,
                    file=event.file,
                    host_time=last_trigger.get((event.index, event.role)),
                    exists=(root / FILES_DIR / event.file).is_file(),
                )
            )
    return shots


# ----------------------------------------------------------------------------- EXIF


def exif_datetime(path: str | Path) -> float | None:
    """EXIF ``DateTimeOriginal`` (+ sub-seconds) of an image as local-time epoch seconds."""
    tags = read_exif_tags(path)
    value = tags.get("EXIF DateTimeOriginal") or tags.get("Image DateTime")
    if value is None:
        return None
    try:
        stamp = dt.datetime.strptime(str(value).strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    sub = tags.get("EXIF SubSecTimeOriginal")
    fraction = 0.0
    if sub is not None and str(sub).strip().isdigit():
        digits = str(sub).strip()
        fraction = int(digits) / 10 ** len(digits)
    return stamp.timestamp() + fraction


# ----------------------------------------------------------------------------- pairing


def _match(first: list[Shot], second: list[Shot], tolerance_s: float) -> list[tuple[int, int]]:
    """One-to-one matches ``(i, j)`` of timed shots, closest trigger times first."""
    candidates = []
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            if a.host_time is not None and b.host_time is not None:
                gap = abs(b.host_time - a.host_time)
                if gap <= tolerance_s:
                    candidates.append((gap, i, j))
    used_i: set[int] = set()
    used_j: set[int] = set()
    matches = []
    for _, i, j in sorted(candidates):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            matches.append((i, j))
    return matches


def _with_exif(
    shots: list[Shot], root: Path, tolerance_s: float
) -> tuple[list[Shot], dict[str, float | None], list[str]]:
    """Shots with EXIF times and deviations, per-role clock offsets, and flags."""
    timed = [
        dataclasses.replace(
            s, exif_time=exif_datetime(root / FILES_DIR / s.file) if s.exists else None
        )
        for s in shots
    ]
    offsets: dict[str, float | None] = {}
    for role in sorted({s.role for s in timed}):
        diffs = [
            s.exif_time - s.host_time
            for s in timed
            if s.role == role and s.exif_time is not None and s.host_time is not None
        ]
        offsets[role] = float(statistics.median(diffs)) if len(diffs) >= 3 else None
    flags = []
    checked = []
    for s in timed:
        if s.exif_time is None or s.host_time is None:
            checked.append(s)
            continue
        deviation = s.exif_time - s.host_time - (offsets.get(s.role) or 0.0)
        s = dataclasses.replace(s, exif_deviation_s=deviation)
        if abs(deviation) > tolerance_s:
            flags.append(
                f"{s.role} #{s.index} {s.file}: EXIF DateTimeOriginal is {deviation:+.1f} s "
                f"from its host trigger time (camera clock offset "
                f"{offsets.get(s.role) or 0.0:+.1f} s removed; tolerance {tolerance_s:g} s)"
            )
        checked.append(s)
    return checked, offsets, flags


def pair_stills(
    session_dir: str | Path,
    tolerance_s: float = 1.0,
    *,
    roles: tuple[str, str] = DEFAULT_ROLES,
    check_exif: bool = True,
    exif_tolerance_s: float = 2.0,
) -> StillPairing:
    """Pair the stills of ``roles[0]`` and ``roles[1]`` in a session by host trigger time.

    Parameters
    ----------
    session_dir
        A capture session folder (``journal.jsonl``, ``files/``).
    tolerance_s
        Largest trigger-time difference of a pair (seconds). Threaded triggering puts the
        two cameras within milliseconds; sequential triggering and separate runs need more,
        but it must stay below half the interval between shots.
    check_exif
        Read ``DateTimeOriginal`` of every file and flag deviations (see module docstring).

    Raises
    ------
    SessionError
        No journal in ``session_dir``.
    ValueError
        A tolerance is not positive.
    """
    if not (math.isfinite(tolerance_s) and tolerance_s > 0):
        raise ValueError(f"tolerance must be > 0 seconds, got {tolerance_s}")
    if not (math.isfinite(exif_tolerance_s) and exif_tolerance_s > 0):
        raise ValueError(f"EXIF tolerance must be > 0 seconds, got {exif_tolerance_s}")
    root = Path(session_dir)
    shots = [s for s in session_shots(root) if s.role in roles]
    offsets: dict[str, float | None] = {}
    flags: list[str] = []
    if check_exif:
        shots, offsets, flags = _with_exif(shots, root, exif_tolerance_s)
    first = sorted((s for s in shots if s.role == roles[0]), key=_order)
    second = sorted((s for s in shots if s.role == roles[1]), key=_order)
    matches = _match(first, second, tolerance_s)
    pairs = sorted(
        (StillPair(first[i], second[j], _gap(first[i], second[j])) for i, j in matches),
        key=lambda p: _order(p.first),
    )
    paired_first = {i for i, _ in matches}
    paired_second = {j for _, j in matches}
    unmatched: list[tuple[Shot, str]] = []
    for group, paired, other in (
        (first, paired_first, roles[1]),
        (second, paired_second, roles[0]),
    ):
        for k, shot in enumerate(group):
            if k in paired:
                continue
            if shot.host_time is None:
                why = "no trigger time in the journal"
            else:
                why = f"no {other} shot triggered within {tolerance_s:g} s"
            unmatched.append((shot, why))
    unmatched.sort(key=lambda item: _order(item[0]))
    missing = tuple(s.file for s in shots if not s.exists)
    return StillPairing(
        session=root,
        roles=roles,
        tolerance_s=tolerance_s,
        pairs=tuple(pairs),
        unmatched=tuple(unmatched),
        clock_offsets_s=offsets,
        exif_flags=tuple(flags),
        missing_files=missing,
    )


def _order(shot: Shot) -> tuple[float, int]:
    return (shot.host_time if shot.host_time is not None else math.inf, shot.index)


def _gap(a: Shot, b: Shot) -> float:
    assert a.host_time is not None and b.host_time is not None
    return b.host_time - a.host_time
