"""What the ``expokit capture`` commands do, as plain functions (click is only the front)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from expokit.capture.backends.base import CameraError, UsbClaimError
from expokit.capture.backends.fake import attach_simulation, simulated_movies
from expokit.capture.factory import list_cameras
from expokit.capture.journal import CommandFinished, read_events
from expokit.capture.rig_config import ROLES, RigConfig, RigConfigError
from expokit.capture.runner import Rig, RunReport, Shooter
from expokit.capture.session import CALIBRATION_KIND, JOURNAL_FILE, SHOT_KINDS, Session, ShotPlan
from expokit.capture.simulate import truth_file_keys
from expokit.capture.simulator import RigSimulation, write_truth
from expokit.core.atomic import ensure_writable_dir
from expokit.core.errors import ExpokitError
from expokit.core.paths import check_name

#: Free space below which doctor warns (bytes): a few hundred RAW pairs.
LOW_DISK_BYTES = 5 * 1024**3
#: Camera clock offset above which doctor warns (seconds).
CLOCK_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class Check:
    """One preflight check: ``status`` is ``ok``, ``warn`` or ``fail``."""

    name: str
    status: str
    detail: str


def doctor(config: RigConfig) -> list[Check]:
    """Preflight: library version, cameras, roles, settings round trip, disk, clocks."""
    checks: list[Check] = []
    if config.backend == "gphoto2":
        try:
            import gphoto2 as gp

            version = gp.gp_library_version(gp.GP_VERSION_SHORT)[0]
            checks.append(
                Check("libgphoto2", "ok", f"libgphoto2 {version}, python-gphoto2 {gp.__version__}")
            )
        except ImportError:
            checks.append(
                Check(
                    "libgphoto2", "fail", "python-gphoto2 missing: pip install 'expokit[capture]'"
                )
            )
            return checks
    try:
        root = ensure_writable_dir(config.output_root)
        free = shutil.disk_usage(root).free
        status = "ok" if free >= LOW_DISK_BYTES else "warn"
        checks.append(Check("disk", status, f"{free / 1024**3:.1f} GiB free in {root}"))
    except ExpokitError as exc:
        checks.append(Check("disk", "fail", str(exc)))
    rig = Rig(config)
    try:
        found = list_cameras(config.backend)
    except CameraError as exc:
        checks.append(Check("cameras", "fail", str(exc)))
        return checks
    listing = "; ".join(f"{c.model} serial {c.serial} on {c.port}" for c in found) or "none"
    checks.append(Check("cameras", "ok" if found else "fail", f"{len(found)} found: {listing}"))
    try:
        rig.connect()
    except UsbClaimError as exc:
        checks.append(Check("roles", "fail", f"{exc} ({UsbClaimError.HINT})"))
        return checks
    except CameraError as exc:
        checks.append(Check("roles", "fail", str(exc)))
        return checks
    try:
        for role in ROLES:
            camera = rig.cameras[role]
            checks.append(
                Check(
                    f"{role} camera",
                    "ok",
                    f"{camera.info.model} serial {camera.info.serial} on {camera.info.port}",
                )
            )
            try:
                settings, _ = rig.base_settings(role)
                resolved = rig.resolve(role, settings)
                mismatches = rig.apply(role, resolved)
                status = "fail" if mismatches else "ok"
                detail = "read back as written: " + ", ".join(
                    f"{k}={v}" for k, v in resolved.items()
                )
                if mismatches:
                    detail = f"settings did not read back: {mismatches}"
                checks.append(Check(f"{role} settings", status, detail))
            except CameraError as exc:
                checks.append(Check(f"{role} settings", "fail", str(exc)))
            clock = camera.camera_time()
            if clock is None:
                checks.append(Check(f"{role} clock", "warn", "camera does not report its clock"))
            else:
                offset = (clock - dt.datetime.now()).total_seconds()
                status = "ok" if abs(offset) <= CLOCK_TOLERANCE_S else "warn"
                checks.append(
                    Check(f"{role} clock", status, f"camera clock {offset:+.1f} s from host")
                )
    finally:
        rig.disconnect()
    return checks


def apply_settings(config: RigConfig) -> dict[str, list[dict[str, str]]]:
    """Apply each role's settings and read them back; mismatches per role."""
    with Rig(config) as rig:
        rig.preflight()
        result = {}
        for role in ROLES:
            settings, _ = rig.base_settings(role)
            result[role] = rig.apply(role, rig.resolve(role, settings))
        return result


def shoot(
    config: RigConfig,
    kind: str,
    *,
    count: int = 1,
    roles: Iterable[str] = (),
    seconds: float = 1.0,
    session_name: str | None = None,
    progress: bool = True,
) -> tuple[Session, RunReport]:
    """Create a session and shoot ``kind`` (``pair``, ``bracket``, ``video`` or
    ``calibration``: ``count`` pairs journaled as calibration stills, which ``curate build``
    skips and ``calibrate geometry`` takes).

    The session folder is created (and locked) only after the name, the output root, the
    cameras and (on a fake rig with a ``source``) the simulation are checked; it stays
    locked until the command ends. A simulated session also gets a ``truth.json``.
    """
    if session_name:  # before touching any camera or folder
        check_name(session_name, "session name", where="--session")
    if kind not in SHOT_KINDS:
        raise ExpokitError(f"unknown shot kind {kind!r} (kinds: {', '.join(SHOT_KINDS)})")
    ensure_writable_dir(config.output_root)
    simulation = _simulation(config, seconds if kind == "video" else None)
    with Rig(config) as rig:
        rig.preflight()
        _attach(config, simulation, [kind])
        session = Session.create(config, session_name, purpose=f"expokit capture {kind}")
        try:
            shooter = Shooter(rig, session, progress=progress)
            plans: list[ShotPlan]
            if kind == "pair":
                plans = shooter.plan_pairs(count)
            elif kind == CALIBRATION_KIND:
                pair = {r: shooter.role_plan(r, *rig.base_settings(r)) for r in ROLES}
                plans = session.plan(CALIBRATION_KIND, [pair] * count)
            elif kind == "bracket":
                plans = shooter.plan_bracket(roles or config.bracket_roles)
            else:
                plans = shooter.plan_video(seconds)
            report = shooter.run(plans)
            _finish(session, kind, report, simulation)
        finally:
            session.close()
    return session, report


class CalibrationShooter:
    """Calibration stills from a rig that is already open (``expokit align live``'s
    button), journaled in one session created at the first shot and kept open, locked,
    until :meth:`close`.

    On a fake rig with a ``source`` the bodies serve the simulation's board for the
    calibration shots and its scene (for the live view) in between; the session gets its
    ``truth.json`` on close.
    """

    def __init__(self, config: RigConfig, rig: Rig, session_name: str | None = None) -> None:
        if session_name:
            check_name(session_name, "session name", where="--session")
        self.config = config
        self.rig = rig
        self.session_name = session_name
        self.session: Session | None = None
        self.simulation = _simulation(config, None)
        _attach(config, self.simulation, ["pair"])  # the live view shows the scene

    def shoot(self, count: int = 1) -> tuple[Session, list[tuple[int, Path, Path]]]:
        """Shoot ``count`` calibration pairs; the session and each pair's
        ``(shot index, reference file, test file)``.

        Raises
        ------
        ExpokitError
            A shot failed (the journal says which; the session stays usable).
        """
        if count < 1:
            raise ExpokitError(f"need at least one calibration pair, got {count}")
        if self.session is None:
            ensure_writable_dir(self.config.output_root)
            self.rig.preflight()
            self.session = Session.create(
                self.config, self.session_name, purpose="expokit align live"
            )
        session = self.session
        _attach(self.config, self.simulation, [CALIBRATION_KIND])
        try:
            shooter = Shooter(self.rig, session, progress=False)
            pair = {r: shooter.role_plan(r, *self.rig.base_settings(r)) for r in ROLES}
            plans = session.plan(CALIBRATION_KIND, [pair] * count)
            report = shooter.run(plans)
            _finish(session, CALIBRATION_KIND, report, None)  # truth is written on close
        finally:
            _attach(self.config, self.simulation, ["pair"])
        if report.shots_failed:
            raise ExpokitError(
                f"calibration shot(s) {', '.join(map(str, report.shots_failed))} failed "
                f"(see {session.root / JOURNAL_FILE})"
            )
        downloaded = session.state().downloaded
        files = [
            (
                plan.index,
                session.file_path(downloaded[(plan.index, "reference")].file),
                session.file_path(downloaded[(plan.index, "test")].file),
            )
            for plan in plans
        ]
        return session, files

    def close(self) -> None:
        """Write a simulated session's truth and release the session (idempotent)."""
        if self.session is None:
            return
        try:
            if self.simulation is not None:
                _write_truth(self.session, self.simulation)
        finally:
            self.session.close()
            self.session = None


def _simulation(config: RigConfig, seconds: float | None) -> Any:
    """The :class:`~expokit.capture.simulator.physics.RigSimulation` of a fake rig with a
    ``source`` (``None`` otherwise), made before any folder exists so a bad source or an
    impossible setting fails first."""
    if config.backend != "fake":
        return None
    try:
        sim_config = config.simulation(seconds)
    except ValueError as exc:
        where = f"{config.source}: " if config.source else ""
        raise RigConfigError(f"{where}{exc}") from None
    if sim_config is None:
        return None

    return RigSimulation.create(sim_config)


def _attach(config: RigConfig, simulation: Any, kinds: list[str]) -> None:
    """Let the rig's fake bodies serve ``simulation``: the board for calibration shots."""
    if simulation is None:
        return

    subject = "board" if kinds and all(k == CALIBRATION_KIND for k in kinds) else "scene"
    attach_simulation(simulation, {c.serial: r for r, c in config.roles.items()}, subject)


def _finish(session: Session, kind: str, report: RunReport, simulation: Any) -> None:
    """Journal the end of a command and, for a simulated rig, write the session's truth."""
    session.journal.append(
        CommandFinished(kind=kind, shots_done=report.shots_done, shots_failed=report.shots_failed)
    )
    if simulation is not None:
        _write_truth(session, simulation)


def _write_truth(session: Session, simulation: Any) -> None:
    events, _ = read_events(session.root / JOURNAL_FILE)
    files = truth_file_keys(events)
    truth = simulation.truth(files, simulated_movies())
    capture = "expokit capture on a fake rig with a source (simulated footage)"
    write_truth(session.root, replace(truth, capture=capture))


def resume(session_dir: str | Path, progress: bool = True) -> tuple[Session, RunReport]:
    """Finish every planned shot of a session that is not done, keeping its index.

    Raises
    ------
    RootInUseError
        Another command (a shoot or a resume) has the session open.
    """
    session = Session.open(session_dir, purpose="expokit capture resume")
    try:
        pending = session.state().pending
        videos = [p.seconds for p in pending if p.kind == "video"]
        simulation = _simulation(session.config, float(videos[0] or 1.0) if videos else None)
        with Rig(session.config) as rig:
            _attach(session.config, simulation, [p.kind for p in pending])
            shooter = Shooter(rig, session, progress=progress)
            report = shooter.run(pending)
        _finish(session, "resume", report, simulation)
    finally:
        session.close()
    return session, report
