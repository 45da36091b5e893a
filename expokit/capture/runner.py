"""Shoot with a two-camera rig: synchronized pairs, brackets and video, with crash-safe sessions.

Synchronization: one thread per camera, released together by a :class:`threading.Barrier`
(python-gphoto2 releases the GIL in trigger, wait_for_event and file_get); host monotonic and
wall timestamps are journaled per camera before and after each trigger. The trigger itself
is a :class:`TriggerSource` so a hardware trigger box can replace USB triggering.

Downloads are decoupled from triggering: camera threads hand the downloaded bytes to one
writer thread that names, writes (atomically, never overwriting), hashes, EXIF-checks and
journals them, in whatever order they arrive.

Faults: busy and I/O errors are retried with exponential backoff; a camera that disconnects
is found again **by serial number**, its settings re-applied and verified, and the shot
retried. Shots that still fail are journaled and reported; ``expokit capture resume`` redoes
them without renumbering anything.
"""

from __future__ import annotations

import contextlib
import queue
import statistics
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from expokit.capture.aliases import movie_control, resolve_setting
from expokit.capture.backends.base import (
    Camera,
    CameraDisconnected,
    CameraError,
    CameraFile,
    CameraNotFound,
    SettingValueError,
)
from expokit.capture.backends.fake import configure_bus, set_live_depth
from expokit.capture.exif_check import check_exposure
from expokit.capture.exposure import nearest_shutter, shutter_seconds
from expokit.capture.factory import list_cameras, open_camera
from expokit.capture.journal import (
    Downloaded,
    Error,
    ExifCheck,
    FileAdded,
    Reconnected,
    Retry,
    SettingsApplied,
    ShotDone,
    Triggered,
)
from expokit.capture.rig_config import ROLES, RigConfig
from expokit.capture.session import Session, ShotPlan
from expokit.core.atomic import atomic_path
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.hashing import sha256_bytes
from expokit.core.progress import show_progress


class TriggerSource(ABC):
    """Fires one camera; called in that camera's thread right after the barrier releases."""

    name = "abstract"

    @abstractmethod
    def fire(self, role: str, camera: Camera) -> None: ...


class UsbTrigger(TriggerSource):
    """Trigger over USB (``trigger_capture``); 0.3-1.5 s body-dependent latency on real bodies."""

    name = "usb"

    def fire(self, role: str, camera: Camera) -> None:
        camera.trigger()


@dataclass
class Fired:
    """What one camera thread produced for one shot."""

    role: str
    plan: ShotPlan
    camera_file: CameraFile | None = None
    data: bytes | None = None
    t_before: float = 0.0
    t_after: float = 0.0
    attempts: int = 0
    synchronized: bool = True
    error: str | None = None


@dataclass
class RunReport:
    """Totals of a shooting command, with trigger skew statistics."""

    shots_done: int = 0
    shots_failed: list[int] = field(default_factory=list)
    files: int = 0
    exif_mismatches: int = 0
    skews_s: list[float] = field(default_factory=list)
    retries: int = 0
    reconnects: int = 0

    def skew_summary(self) -> str:
        if not self.skews_s:
            return "trigger skew: no synchronized shots"
        values = sorted(self.skews_s)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        return (
            f"trigger skew over {len(values)} shots: "
            f"median {statistics.median(values) * 1e3:.3f} ms, "
            f"p95 {p95 * 1e3:.3f} ms, max {values[-1] * 1e3:.3f} ms"
        )


class Rig:
    """The two cameras of a rig, bound by serial number, with their settings."""

    def __init__(self, config: RigConfig, trigger: TriggerSource | None = None) -> None:
        self.config = config
        self.trigger = trigger or UsbTrigger()
        self.cameras: dict[str, Camera] = {}
        self.applied: dict[str, dict[str, str]] = {role: {} for role in ROLES}
        if config.backend == "fake" and config.fake.get("cameras"):
            configure_bus(config.fake["cameras"])
            set_live_depth(config.live_depth())

    # -- connection ------------------------------------------------------------------
    def connect(self) -> None:
        """Open both roles' cameras by serial number; clear error listing what is connected."""
        found = list_cameras(self.config.backend)
        serials = {info.serial for info in found}
        for role, role_config in self.config.roles.items():
            if role_config.serial not in serials:
                listing = ", ".join(f"{i.model} serial {i.serial} on {i.port}" for i in found)
                raise CameraNotFound(
                    f"{role} camera serial {role_config.serial} is not connected "
                    f"(connected: {listing or 'no cameras'})"
                )
        for role, role_config in self.config.roles.items():
            camera = open_camera(self.config.backend, serial=role_config.serial)
            camera.connect()
            self.cameras[role] = camera

    def disconnect(self) -> None:
        for camera in self.cameras.values():
            with contextlib.suppress(CameraError):
                camera.disconnect()

    def __enter__(self) -> Rig:
        self.connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.disconnect()

    def reconnect(self, role: str, deadline_s: float) -> Camera:
        """Find ``role``'s body again by serial (its port may have changed), reconnect and
        re-apply its last settings. Raises :class:`CameraDisconnected` after the deadline."""
        serial = self.config.roles[role].serial
        with contextlib.suppress(CameraError):
            self.cameras[role].disconnect()
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if any(info.serial == serial for info in list_cameras(self.config.backend)):
                camera = open_camera(self.config.backend, serial=serial)
                try:
                    camera.connect()
                except CameraError:
                    time.sleep(0.1)
                    continue
                self.cameras[role] = camera
                settings = dict(self.applied[role])
                self.applied[role] = {}
                mismatches = self.apply(role, settings)
                if mismatches:
                    raise CameraDisconnected(
                        f"{role} camera {serial} came back but settings did not verify: "
                        f"{mismatches}"
                    )
                return camera
            time.sleep(0.05)
        raise CameraDisconnected(
            f"{role} camera serial {serial} did not come back in {deadline_s:g} s"
        )

    # -- settings --------------------------------------------------------------------
    def resolve(self, role: str, generic: dict[str, str]) -> dict[str, str]:
        """Map generic names to this body's names and check every value is offered.

        Raises
        ------
        NotSupported
            ``"<setting> not supported by <model>"``.
        SettingValueError
            For a value the camera does not offer, listing the allowed values.
        """
        camera = self.cameras[role]
        available = camera.list_settings()
        model = camera.info.model
        resolved: dict[str, str] = {}
        for name, value in generic.items():
            camera_name = resolve_setting(name, available, model)
            choices = available[camera_name].choices
            if choices and value not in choices:
                raise SettingValueError(
                    f"{role} camera ({model}): {value!r} is not offered for {name} "
                    f"({camera_name}); allowed: {', '.join(choices)}"
                )
            resolved[camera_name] = value
        return resolved

    def base_settings(self, role: str) -> tuple[dict[str, str], float]:
        """Generic settings of ``role`` and its EV relative to the reference exposure.

        The test role's shutter, when not given, is the reference shutter moved by
        ``ev_offset`` and snapped to the nearest speed the body offers; the EV returned is
        the one actually achieved.
        """
        settings = dict(self.config.roles[role].settings)
        if role == "reference":
            return settings, 0.0
        ev = self.config.ev_offset
        reference = self.config.roles["reference"].settings.get("shutter")
        if "shutter" not in settings and reference:
            settings["shutter"], ev = self._shutter_at(role, shutter_seconds(reference), ev)
        return settings, ev

    def _shutter_at(self, role: str, base_seconds: float, ev: float) -> tuple[str, float]:
        camera = self.cameras[role]
        name = resolve_setting("shutter", camera.list_settings(), camera.info.model)
        choices = camera.list_settings()[name].choices
        choice, error = nearest_shutter(base_seconds * 2.0**ev, choices)
        return choice, ev + error

    def bracket_settings(self, role: str) -> list[tuple[dict[str, str], float]]:
        """Generic settings and EV (relative to the reference) for each bracket step."""
        settings, base_ev = self.base_settings(role)
        if "shutter" not in settings:
            raise ExpokitError(f"bracketing {role} needs a shutter setting in the rig config")
        base_seconds = shutter_seconds(settings["shutter"])
        steps = []
        for step in self.config.bracket:
            shutter, achieved = self._shutter_at(role, base_seconds, step)
            steps.append(({**settings, "shutter": shutter}, base_ev + achieved))
        return steps

    def apply(self, role: str, camera_settings: dict[str, str]) -> list[dict[str, str]]:
        """Set values that differ from what was last applied, read all back, list mismatches."""
        camera = self.cameras[role]
        for name, value in camera_settings.items():
            if self.applied[role].get(name) != value:
                camera.set_setting(name, value)
        mismatches = []
        for name, value in camera_settings.items():
            readback = camera.get_setting(name)
            if readback != value:
                mismatches.append({"setting": name, "requested": value, "read_back": readback})
        self.applied[role] = {**self.applied[role], **camera_settings}
        return mismatches

    def preflight(self) -> None:
        """Resolve and validate every role's settings (and bracket steps) before any shot."""
        for role in ROLES:
            settings, _ = self.base_settings(role)
            self.resolve(role, settings)


class Shooter:
    """Runs planned shots of a session on a rig (threads, writer, retries, journal)."""

    def __init__(self, rig: Rig, session: Session, progress: bool = True) -> None:
        self.rig = rig
        self.session = session
        self.journal = session.journal
        self.progress = progress
        self.report = RunReport()
        self._writes: queue.Queue[tuple[Fired, dict[str, Any]] | None] = queue.Queue()
        self._pending_roles: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self._write_error: BaseException | None = None

    # -- planning helpers ------------------------------------------------------------
    def role_plan(self, role: str, generic: dict[str, str], ev: float) -> dict[str, Any]:
        return {"ev": round(ev, 4), "generic": generic, "settings": self.rig.resolve(role, generic)}

    def plan_pairs(self, count: int) -> list[ShotPlan]:
        roles = {role: self.role_plan(role, *self.rig.base_settings(role)) for role in ROLES}
        return self.session.plan("pair", [roles] * count)

    def plan_bracket(self, roles: Iterable[str]) -> list[ShotPlan]:
        roles = list(roles)
        per_role = {role: self.rig.bracket_settings(role) for role in roles}
        others = {r: self.role_plan(r, *self.rig.base_settings(r)) for r in ROLES if r not in roles}
        shots = []
        for step in range(len(self.rig.config.bracket)):
            shot = {role: self.role_plan(role, *per_role[role][step]) for role in roles}
            shots.append({**shot, **others})
        return self.session.plan("bracket", shots)

    def plan_video(self, seconds: float) -> list[ShotPlan]:
        for camera in self.rig.cameras.values():
            if camera.backend == "gphoto2":  # fails early: "movie recording not supported by X"
                movie_control(camera.list_settings(), camera.info.model)
        roles = {role: self.role_plan(role, *self.rig.base_settings(role)) for role in ROLES}
        return self.session.plan("video", [roles], seconds=seconds)

    # -- running ---------------------------------------------------------------------
    def run(self, plans: list[ShotPlan]) -> RunReport:
        """Shoot ``plans`` (skipping what the journal says is already downloaded)."""
        writer = threading.Thread(target=self._writer, name="expokit-writer", daemon=True)
        writer.start()
        state = self.session.state()
        try:
            bar = show_progress(plans, desc="capture", unit="shot", enabled=self.progress)
            for plan in bar:
                todo = [r for r in plan.roles if (plan.index, r) not in state.downloaded]
                todo = [r for r in todo if not self._adopt_orphan(plan, r)]
                if not todo:
                    self.journal.append(ShotDone(index=plan.index, adopted=True))
                    self.report.shots_done += 1
                    continue
                with self._lock:
                    self._pending_roles[plan.index] = set(todo)
                partial = len(todo) < len(plan.roles)
                for role in todo:
                    mismatches = self.rig.apply(role, plan.roles[role]["settings"])
                    self.journal.append(
                        SettingsApplied(
                            index=plan.index,
                            role=role,
                            settings=plan.roles[role]["settings"],
                            mismatches=mismatches,
                            camera=self.rig.cameras[role].info.model or None,
                        )
                    )
                fired = self._fire(plan, todo, partial)
                for item in fired:
                    if item.error:
                        self.journal.append(
                            Error(index=plan.index, role=item.role, error=item.error)
                        )
                        if plan.index not in self.report.shots_failed:
                            self.report.shots_failed.append(plan.index)
                    else:
                        self._writes.put((item, plan.roles[item.role]))
                skews = [f.t_before for f in fired if not f.error and f.synchronized]
                if len(skews) > 1:
                    self.report.skews_s.append(max(skews) - min(skews))
                if self._write_error:
                    raise self._write_error
        finally:
            self._writes.put(None)
            writer.join()
        if self._write_error:
            raise self._write_error
        return self.report

    def _adopt_orphan(self, plan: ShotPlan, role: str) -> bool:
        orphan = self.session.orphan_for(plan, role)
        if orphan is None:
            return False
        data = orphan.read_bytes()
        self.journal.append(
            Downloaded(
                index=plan.index,
                role=role,
                file=orphan.name,
                size=len(data),
                sha256=sha256_bytes(data),
                recovered=True,
            )
        )
        self.report.files += 1
        return True

    def _fire(self, plan: ShotPlan, roles: list[str], partial: bool) -> list[Fired]:
        results = {role: Fired(role, plan, synchronized=not partial) for role in roles}
        barrier = (
            threading.Barrier(len(roles)) if self.rig.config.trigger_mode == "threaded" else None
        )
        work = self._shoot_video if plan.kind == "video" else self._shoot_still
        if barrier is None:
            for role in roles:
                work(results[role], None)
                results[role].synchronized = False
        else:
            threads = [
                threading.Thread(target=work, args=(results[r], barrier), name=f"cam-{r}")
                for r in roles
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return list(results.values())

    def _with_retries(self, fired: Fired, action: Callable[[Camera, bool], None]) -> None:
        """Run ``action(camera, first_attempt)`` with backoff and reconnection by serial."""
        policy = self.rig.config.retry
        delays = [*policy.delays(), None]
        for attempt, delay in enumerate(delays, start=1):
            fired.attempts = attempt
            try:
                action(self.rig.cameras[fired.role], attempt == 1)
                fired.error = None
                return
            except CameraDisconnected as exc:
                fired.error = str(exc)
                fired.synchronized = False
                self.journal.append(
                    Error(
                        index=fired.plan.index,
                        role=fired.role,
                        error=str(exc),
                        attempt=attempt,
                        kind="disconnected",
                    )
                )
                try:
                    self.rig.reconnect(fired.role, policy.reconnect_timeout_s)
                except CameraError as again:
                    fired.error = str(again)
                    return
                self.report.reconnects += 1
                self.journal.append(
                    Reconnected(role=fired.role, port=self.rig.cameras[fired.role].info.port)
                )
            except CameraError as exc:
                fired.error = str(exc)
                if not type(exc).retryable or delay is None:
                    return
                fired.synchronized = False
                self.report.retries += 1
                self.journal.append(
                    Retry(
                        index=fired.plan.index,
                        role=fired.role,
                        error=str(exc),
                        code=exc.code,
                        attempt=attempt,
                        pause_s=delay,
                    )
                )
                time.sleep(delay)

    def _release(
        self,
        fired: Fired,
        barrier: threading.Barrier | None,
        first: bool,
        start: Callable[[], None],
        **extra: Any,
    ) -> None:
        """Wait for the other cameras (first attempt only), then ``start()`` between two
        monotonic timestamps, and journal the trigger."""
        if barrier is not None and first:
            barrier.wait(timeout=self.rig.config.retry.trigger_timeout_s)
        fired.t_before = time.monotonic()
        wall = time.time()
        start()
        fired.t_after = time.monotonic()
        self.journal.append(Triggered(
            index=fired.plan.index, role=fired.role, t_before=fired.t_before,
            t_after=fired.t_after, wall_before=wall, attempt=fired.attempts, **extra,
        ))  # fmt: skip

    def _shoot_still(self, fired: Fired, barrier: threading.Barrier | None) -> None:
        timeout = self.rig.config.retry.trigger_timeout_s

        def action(camera: Camera, first: bool) -> None:
            fire = partial(self.rig.trigger.fire, fired.role, camera)
            self._release(fired, barrier, first, fire, trigger=self.rig.trigger.name)
            fired.camera_file = camera.wait_for_file(timeout)
            self.journal.append(FileAdded(
                index=fired.plan.index, role=fired.role, camera_file=fired.camera_file.path
            ))  # fmt: skip
            fired.data = camera.download(fired.camera_file)

        self._with_retries(fired, action)

    def _shoot_video(self, fired: Fired, barrier: threading.Barrier | None) -> None:
        seconds = float(fired.plan.seconds or 1.0)
        timeout = self.rig.config.retry.trigger_timeout_s

        def action(camera: Camera, first: bool) -> None:
            self._release(fired, barrier, first, camera.start_movie, movie="start")
            time.sleep(seconds)
            camera.stop_movie()
            self.journal.append(Triggered(
                index=fired.plan.index, role=fired.role, t_before=time.monotonic(),
                movie="stop",
            ))  # fmt: skip
            fired.camera_file = camera.wait_for_file(timeout)
            fired.data = camera.download(fired.camera_file)

        self._with_retries(fired, action)

    # -- writer ----------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            item = self._writes.get()
            if item is None:
                return
            if self._write_error is not None:
                continue
            try:
                self._write(*item)
            except BaseException as exc:  # surfaced by run(); the journal keeps what is done
                self._write_error = exc

    def _write(self, fired: Fired, role_plan: dict[str, Any]) -> None:
        assert fired.data is not None and fired.camera_file is not None
        plan = fired.plan
        ext = Path(fired.camera_file.name).suffix or ".bin"
        name = self.session.filename(plan, fired.role, ext)
        target = self.session.file_path(name)  # never outside files/, never through a link
        if target.exists():
            raise OutputError(f"{target} already exists; a session never overwrites a file")
        with atomic_path(target) as tmp:
            tmp.write_bytes(fired.data)
        digest = sha256_bytes(fired.data)
        self.journal.append(
            Downloaded(
                index=plan.index,
                role=fired.role,
                file=name,
                size=len(fired.data),
                sha256=digest,
                camera_file=fired.camera_file.path,
                attempts=fired.attempts,
                synchronized=fired.synchronized,
            )
        )
        self.report.files += 1
        if plan.kind != "video":
            check = check_exposure(
                fired.data, role_plan.get("generic", {}), self.rig.config.exif_tolerance_ev
            )
            self.journal.append(ExifCheck(index=plan.index, role=fired.role, file=name, **check))
            if check["ok"] is False:
                self.report.exif_mismatches += 1
        with self._lock:
            pending = self._pending_roles.get(plan.index, set())
            pending.discard(fired.role)
            if not pending:
                self.journal.append(ShotDone(index=plan.index))
                self.report.shots_done += 1
