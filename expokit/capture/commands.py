"""What the ``expokit capture`` commands do, as plain functions (click is only the front)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from expokit.capture.backends.base import CameraError, UsbClaimError
from expokit.capture.factory import list_cameras
from expokit.capture.rig_config import ROLES, RigConfig
from expokit.capture.runner import Rig, RunReport, Shooter
from expokit.capture.session import Session, ShotPlan
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
    """Create a session and shoot ``kind`` (``pair``, ``bracket`` or ``video``).

    The session folder is created (and locked) only after the name, the output root and
    the cameras are checked; it stays locked until the command ends.
    """
    if session_name:  # before touching any camera or folder
        check_name(session_name, "session name", where="--session")
    ensure_writable_dir(config.output_root)
    with Rig(config) as rig:
        rig.preflight()
        session = Session.create(config, session_name, purpose=f"expokit capture {kind}")
        try:
            shooter = Shooter(rig, session, progress=progress)
            plans: list[ShotPlan]
            if kind == "pair":
                plans = shooter.plan_pairs(count)
            elif kind == "bracket":
                plans = shooter.plan_bracket(roles or config.bracket_roles)
            elif kind == "video":
                plans = shooter.plan_video(seconds)
            else:
                raise ExpokitError(f"unknown shot kind {kind!r}")
            report = shooter.run(plans)
            session.journal.append(
                "command_finished",
                kind=kind,
                shots_done=report.shots_done,
                shots_failed=report.shots_failed,
            )
        finally:
            session.close()
    return session, report


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
        with Rig(session.config) as rig:
            shooter = Shooter(rig, session, progress=progress)
            report = shooter.run(pending)
        session.journal.append(
            "command_finished",
            kind="resume",
            shots_done=report.shots_done,
            shots_failed=report.shots_failed,
        )
    finally:
        session.close()
    return session, report
