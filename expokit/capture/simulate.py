"""The session writer of the rig simulator (``expokit simulate``): a simulated rig's session.

A scene (:mod:`expokit.capture.footage`: a movie, a folder of frames, a still, or our own
``generated`` footage) is recorded by two simulated bodies, and the result is written as a
capture session in exactly the form ``expokit capture`` writes (``rig.json``,
``journal.jsonl``, ``files/`` named by the rig's template, root marker kind ``session``)
plus ``truth.json`` (what every calibration stage should recover). The calibration stills
(a ChArUco board seen by both cameras, as a lab shoots before recording) are journaled as
a shot of kind ``calibration`` (``curate build`` skips that kind; pass its two files to
``expokit calibrate geometry``; ``truth.json["files"]`` names them ``board_reference`` and
``board_test``).

The physics, the encoders and ``truth.json`` live below the session in
:mod:`expokit.capture.simulator` (``physics``, ``encode``, ``truth_file``); the fake capture
backend serves the same :class:`~expokit.capture.simulator.physics.RigSimulation` when a rig
config's ``[fake]`` table names a ``source``: ``expokit capture video/pair/calibration`` on
such a rig then writes these files through the normal capture code (download, journal,
template names) and a ``truth.json`` into the session. This module sits above the session
and the rig config and keeps only the writer: :func:`simulate`, the rig config of a
simulated session (:func:`fake_table`) and the journal -> ``truth.json["files"]`` keys
(:func:`truth_file_keys`).

The simulator's own names (``SimulationConfig``, ``RigSimulation``, ``TruthFile``, ...) are
imported from :mod:`expokit.capture.simulator`, their package face.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from expokit.capture.exposure import SHUTTER_CHOICES, nearest_shutter, shutter_seconds
from expokit.capture.journal import (
    CommandFinished,
    Downloaded,
    DownloadedEvent,
    Journal,
    JournalEvent,
    PlannedEvent,
    SettingsApplied,
    ShotDone,
    Triggered,
)
from expokit.capture.rig_config import RigConfig, RoleConfig
from expokit.capture.session import CALIBRATION_KIND, Session
from expokit.capture.simulator import (
    SIMULATION_KEYS,
    TRUTH_FILE,
    Image,
    RigSimulation,
    SimulationConfig,
    TruthFile,
    write_png16,
    write_truth,
)
from expokit.core.atomic import atomic_path
from expokit.core.errors import OutputError
from expokit.core.hashing import sha256_file
from expokit.core.paths import check_name

__all__ = ["REFERENCE_SHUTTER", "SimulationResult", "fake_table", "simulate", "truth_file_keys"]

#: Reference settings written into rig.json (the test shutter follows ev_offset).
REFERENCE_SHUTTER = "1/125"


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote."""

    root: Path
    truth: TruthFile
    files: dict[str, str]

    @property
    def truth_path(self) -> Path:
        return self.root / TRUTH_FILE


def truth_file_keys(events: list[JournalEvent]) -> dict[str, str]:
    """``truth.json["files"]`` of a session from its journal events (:func:`read_events`):
    ``board_<role>`` (the first calibration shot), ``calibration_<index>_<role>``,
    ``video_<role>`` (the first video shot) and ``still_<index>_<role>``, each
    ``files/<name>``."""
    kinds = {e.index: e.kind for e in events if isinstance(e, PlannedEvent)}
    files: dict[str, str] = {}
    for event in events:
        if not isinstance(event, DownloadedEvent):
            continue
        index, role = event.index, event.role
        path = f"files/{event.file}"
        kind = kinds.get(index)
        if kind == CALIBRATION_KIND:
            files.setdefault(f"board_{role}", path)
            files[f"calibration_{index:04d}_{role}"] = path
        elif kind == "video":
            files.setdefault(f"video_{role}", path)
        elif kind is not None:
            files[f"still_{index:04d}_{role}"] = path
    return files


# --------------------------------------------------------------------------- session


def _prepare_out(out: Path) -> None:
    check_name(out.name, "session folder name", where="--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(
            f"--out {out} is not empty; a session folder is never reused (choose a new one)"
        )


def fake_table(config: SimulationConfig, serials: dict[str, str]) -> dict[str, Any]:
    """The rig config's ``[fake]`` table of a rig that records ``config`` (rig.json of a
    simulated session: ``expokit capture`` on it shoots the same simulation)."""
    simulation: dict[str, Any] = {
        key: getattr(config, key) for key in SIMULATION_KEYS if key != "ev_offset"
    }
    simulation["size"] = list(config.size) if config.size else None
    simulation = {k: v for k, v in simulation.items() if v is not None}
    for key in ("reference_sensor", "test_sensor"):
        simulation[key] = asdict(getattr(config, key))
    return {
        "cameras": [
            {"serial": serial, "model": f"Simulated body ({role})"}
            for role, serial in serials.items()
        ],
        "source": config.source,
        "simulation": simulation,
    }


def _rig_config(out: Path, config: SimulationConfig) -> RigConfig:
    test_shutter, _ = nearest_shutter(
        shutter_seconds(REFERENCE_SHUTTER) * 2.0**config.ev_offset, SHUTTER_CHOICES
    )
    serials = {"reference": f"SIMREF{config.seed:04d}", "test": f"SIMTEST{config.seed:04d}"}
    source = config.source if config.generated else str(Path(config.source).resolve())
    return RigConfig(
        roles={
            "reference": RoleConfig(
                serials["reference"],
                {"shutter": REFERENCE_SHUTTER, "aperture": "8", "iso": "100"},
            ),
            "test": RoleConfig(
                serials["test"], {"shutter": test_shutter, "aperture": "8", "iso": "100"}
            ),
        },
        backend="fake",
        output_root=out.resolve().parent,
        ev_offset=config.ev_offset,
        fake=fake_table(replace(config, source=source), serials),
    )


def _camera_settings(generic: dict[str, str]) -> dict[str, str]:
    names = {"shutter": "shutterspeed", "aperture": "f-number", "iso": "iso"}
    return {names.get(k, k): v for k, v in generic.items()}


def _role_plans(rig: RigConfig) -> dict[str, dict[str, Any]]:
    plans = {}
    for role, role_config in rig.roles.items():
        generic = dict(role_config.settings)
        ev = 0.0 if role == "reference" else rig.ev_offset
        plans[role] = {
            "ev": round(ev, 4),
            "generic": generic,
            "settings": _camera_settings(generic),
        }
    return plans


def simulate(
    config: SimulationConfig,
    out: str | Path,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Simulate a beam-splitter rig recording ``config.source``; write the session at ``out``.

    The session holds, in this order: shot 1 of kind ``video`` (unless the source is a
    still), ``config.still_pairs`` shots of kind ``pair`` and one shot of kind
    ``calibration`` (the ChArUco board seen by both cameras, as a lab shoots it);
    every file is journaled and named by the rig's template, as ``expokit capture``
    writes them. The physics is :class:`RigSimulation`'s, shared with the fake backend.
    Every setting and the source are checked before ``out`` is created; a failure after
    that (or an interrupt) removes what was written, so no half session is left behind.

    Raises
    ------
    SimulationError
        A setting the simulation cannot honour (the message names it).
    FootageError
        A missing or unusable source (no frames, mixed frame sizes, RAW, unreadable).
    OutputError
        ``out`` exists and is not an empty folder, or cannot be written.
    """
    say = log or (lambda _: None)
    out = Path(out)
    _prepare_out(out)
    sim = RigSimulation.create(config)
    say(sim.describe())
    for injection in sim.defects.injections:
        say(f"defect      {injection.spec.text()}")

    rig = _rig_config(out, config)
    created = not out.exists()
    try:
        session = Session.start(
            out, rig, "expokit simulate", what="simulated session folder (--out)",
            simulated=True,
        )  # fmt: skip
    except BaseException:
        _discard(out, created)  # as a failure below: leave no half-made session behind
        raise
    journal = session.journal
    files: dict[str, str] = {}
    bodies_info: dict[str, dict[str, Any]] = {}
    order = ("reference", "test")
    try:
        roles = _role_plans(rig)
        for role in order:
            journal.append(SettingsApplied(
                index=1, role=role, settings=roles[role]["settings"], mismatches=[],
            ))  # fmt: skip
        host_t0 = time.monotonic()

        def still_shot(plan: Any, role: str, image: Image, scene_t: float) -> str:
            name = session.filename(plan, role, ".png")
            target = session.file_path(name)
            write_png16(target, image)
            journal.append(Triggered(
                index=plan.index, role=role, t_before=host_t0 + scene_t,
                t_after=host_t0 + scene_t, attempt=1, trigger="simulated",
            ))  # fmt: skip
            _journal_download(journal, plan.index, role, target)
            return f"files/{name}"

        if sim.video:
            (plan,) = session.plan("video", [roles], seconds=round(sim.seconds, 6))
            for role in order:
                body = sim.bodies[role]
                name = session.filename(plan, role, ".mp4")
                target = session.file_path(name)
                journal.append(Triggered(
                    index=plan.index, role=role,
                    t_before=host_t0 + body.start_s, t_after=host_t0 + body.start_s,
                    attempt=1, movie="start", simulated=True,
                ))  # fmt: skip
                with atomic_path(target) as tmp:
                    bodies_info[role] = sim.movie(role, tmp, progress)
                _journal_download(journal, plan.index, role, target)
                files[f"video_{role}"] = f"files/{name}"
            journal.append(ShotDone(index=plan.index))
        # Still pairs of the scene, both cameras at the same scene instant.
        still_times = sim.session_still_times()
        plans = session.plan("pair", [roles] * len(still_times))
        for number, (plan, scene_t) in enumerate(zip(plans, still_times, strict=True), 1):
            for role in order:
                key = f"still_{plan.index:04d}_{role}"
                image = sim.still(role, scene_t, pair=number)
                files[key] = still_shot(plan, role, image, scene_t)
            journal.append(ShotDone(index=plan.index, scene_time_s=scene_t))
        # The calibration board (a lab shoots it before recording; journaled last so the
        # dataset shots keep their indices): a calibration shot, never a dataset pair.
        (calibration,) = session.plan(CALIBRATION_KIND, [roles])
        for role in order:
            files[f"board_{role}"] = still_shot(calibration, role, sim.board(role), 0.0)
        journal.append(ShotDone(index=calibration.index))
        journal.append(CommandFinished(
            kind="simulate", shots_done=len(plans) + 1 + int(sim.video), shots_failed=[],
        ))  # fmt: skip
        truth = write_truth(out, sim.truth(files, bodies_info))
    except BaseException:
        # A session cut short (an error, Ctrl-C) would look like a real one to the
        # commands that read sessions; the folder was new or empty, so remove what we wrote.
        session.close()
        _discard(out, created)
        raise
    session.close()
    return SimulationResult(out, truth, files)


def _discard(out: Path, created: bool) -> None:
    """Remove what a failed :func:`simulate` wrote at ``out``: the folder when it made
    it, else its contents (``_prepare_out`` proved it empty before)."""
    import shutil

    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in list(out.iterdir()) if out.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _journal_download(journal: Journal, index: int, role: str, target: Path) -> None:
    journal.append(Downloaded(
        index=index, role=role, file=target.name, size=target.stat().st_size,
        sha256=sha256_file(target), camera_file=f"/simulated/{target.name}", attempts=1,
        synchronized=True,
    ))  # fmt: skip
