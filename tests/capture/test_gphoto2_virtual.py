"""The gphoto2 backend against python-gphoto2's bundled virtual camera (a "Nikon DSC D750").

The virtual camera is chosen by ``VCAMERADIR`` at ``import gphoto2`` time, is one device per
process and stops after about 26 captures per process (``[-3] Out of memory``), so every
scenario runs in its own subprocess with at most a couple of captures. gphoto2 is never
imported into the pytest process itself: that would fix its I/O library (real USB or
virtual) for the whole session and change ``os.environ`` (``IOLIBS``, ``CAMLIBS``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("gphoto2") is None:
    pytest.skip("python-gphoto2 is not installed", allow_module_level=True)

cv2 = pytest.importorskip("cv2")
np = pytest.importorskip("numpy")

MODEL = "Nikon DSC D750"
PORT = "usb:001,001"
JPEG_SHAPE = (48, 64, 3)

#: Runs before each scenario; the scenario fills ``result`` (printed as JSON at the end).
PRELUDE = """
import json
import time

from expokit.capture import aliases, factory
from expokit.capture.backends import gphoto2_backend as g
from expokit.capture.backends.base import (
    CameraError, CameraFile, CameraIOError, CameraNotFound, NotSupported, SettingValueError,
)

result = {}


def expect(error_type, call, *args):
    try:
        call(*args)
    except error_type as exc:
        return {"type": type(exc).__name__, "message": str(exc), "code": exc.code}
    raise AssertionError(f"{call} did not raise {error_type.__name__}")

"""


@pytest.fixture(scope="module")
def virtual_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a subprocess with the virtual camera serving a small cv2 JPEG."""
    root = tmp_path_factory.mktemp("vcamera")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=JPEG_SHAPE, dtype=np.uint8)
    assert cv2.imwrite(str(folder / "frame.jpg"), image)
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("IOLIBS", "CAMLIBS")}
    # libgphoto2 persists some settings (capturetarget) under ~/.config/gphoto: keep the
    # tests away from the developer's real file.
    env.update(VCAMERADIR=str(folder), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    check = subprocess.run(
        [sys.executable, "-c", "import gphoto2"], env=env, capture_output=True, timeout=60
    )
    if check.returncode != 0:
        pytest.skip(f"gphoto2 does not import: {check.stderr.decode(errors='replace')[-300:]}")
    return env


def run_virtual(env: dict[str, str], body: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``body`` (after :data:`PRELUDE`) in a fresh interpreter; return its ``result``."""
    script = PRELUDE + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(result))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"scenario failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result line in:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def test_list_cameras_reports_the_virtual_d750(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        from dataclasses import asdict
        result["direct"] = [asdict(info) for info in g.list_cameras()]
        result["factory"] = [asdict(info) for info in factory.list_cameras("gphoto2")]
        """,
    )
    assert result["direct"] == result["factory"]
    [camera] = result["direct"]
    assert camera["model"] == MODEL
    assert camera["port"] == PORT
    assert camera["backend"] == "gphoto2"
    assert isinstance(camera["serial"], str) and camera["serial"].strip()


def test_connect_context_manager_disconnect_twice_and_reconnect(
    virtual_env: dict[str, str],
) -> None:
    result = run_virtual(
        virtual_env,
        """
        cam = factory.open_camera("gphoto2")
        result["before"] = cam.is_connected
        result["unconnected_read"] = expect(CameraError, cam.get_setting, "f-number")
        with cam as entered:
            result["same_object"] = entered is cam
            result["inside"] = cam.is_connected
            result["info"] = [cam.info.model, cam.info.port, cam.info.serial, cam.info.backend]
            first_handle = cam._camera
        result["after_with"] = cam.is_connected
        cam.disconnect()
        cam.disconnect()
        result["after_twice"] = cam.is_connected
        # Reconnecting must open a new gp.Camera: re-init of a closed one crashed the process.
        cam.connect()
        result["new_handle"] = cam._camera is not first_handle
        result["reconnected_value"] = cam.get_setting("f-number")
        cam.disconnect()
        """,
    )
    assert result["before"] is False
    assert "not connected" in result["unconnected_read"]["message"]
    assert result["same_object"] is True
    assert result["inside"] is True
    assert result["info"][:2] == [MODEL, PORT]
    assert result["info"][3] == "gphoto2"
    assert result["after_with"] is False
    assert result["after_twice"] is False
    assert result["new_handle"] is True
    assert result["reconnected_value"].startswith("f/")


def test_settings_set_get_and_aliases(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        from dataclasses import asdict
        with g.make_camera() as cam:
            settings = cam.list_settings()
            result["names"] = sorted(settings)
            result["fnumber"] = asdict(settings["f-number"])
            result["datetime_kind"] = settings["datetime"].kind
            cam.set_setting("f-number", "f/8")
            result["after_set"] = cam.get_setting("f-number")
            aperture = aliases.resolve_setting("aperture", settings, cam.info.model)
            result["aperture_name"] = aperture
            cam.set_setting(aperture, "f/11")
            result["after_alias"] = cam.get_setting(aperture)
            result["listed_after_alias"] = cam.list_settings()["f-number"].value
            ev = aliases.resolve_setting("exposure_compensation", settings, cam.info.model)
            cam.set_setting(ev, "-1")
            result["ev"] = [ev, cam.get_setting(ev)]
        """,
    )
    for name in ("shutterspeed", "f-number", "exposurecompensation", "capturetarget"):
        assert name in result["names"]
    fnumber = result["fnumber"]
    assert fnumber["kind"] == "radio"
    assert fnumber["readonly"] is False
    assert {"f/2.8", "f/8", "f/11", "f/22"} <= set(fnumber["choices"])
    assert result["datetime_kind"] == "date"
    assert result["after_set"] == "f/8"
    assert result["aperture_name"] == "f-number"
    assert result["after_alias"] == "f/11"
    assert result["listed_after_alias"] == "f/11"
    assert result["ev"] == ["exposurecompensation", "-1"]


def test_bad_values_unknown_and_read_only_settings(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        with g.make_camera() as cam:
            before = cam.get_setting("f-number")
            result["bad"] = expect(SettingValueError, cam.set_setting, "f-number", "f/1.0")
            result["unchanged"] = cam.get_setting("f-number") == before
            result["get_iso"] = expect(NotSupported, cam.get_setting, "iso")
            result["set_iso"] = expect(NotSupported, cam.set_setting, "iso", "100")
            result["alias_iso"] = expect(
                NotSupported, aliases.resolve_setting, "iso", cam.list_settings(), cam.info.model
            )
            result["read_only"] = expect(NotSupported, cam.set_setting, "serialnumber", "x")
            result["movie"] = expect(NotSupported, cam.start_movie)
            result["stop_movie"] = expect(NotSupported, cam.stop_movie)
        """,
    )
    bad = result["bad"]["message"]
    assert "f/1.0" in bad
    assert "f/2.8" in bad and "f/22" in bad  # the allowed values are listed
    assert result["unchanged"] is True
    for key in ("get_iso", "set_iso", "alias_iso"):
        assert "iso not supported by Nikon DSC D750" in result[key]["message"], key
    assert "read-only" in result["read_only"]["message"]
    assert result["movie"]["message"] == "movie recording not supported by Nikon DSC D750"
    assert result["stop_movie"]["message"] == result["movie"]["message"]


def test_capture_and_download_a_valid_jpeg(virtual_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "downloaded.jpg"
    result = run_virtual(
        virtual_env,
        f"""
        with g.make_camera() as cam:
            file = cam.capture(timeout_s=10)
            result["is_camera_file"] = isinstance(file, CameraFile)
            result["path"] = file.path
            data = cam.download(file)
            result["type"] = type(data).__name__
            open({str(out)!r}, "wb").write(data)
            result["stats"] = [cam.stats.captures, cam.stats.downloads]
            missing = CameraFile("/store_00010001/DCIM/999NONE", "NONE.JPG")
            result["missing"] = expect(CameraError, cam.download, missing)
        """,
    )
    assert result["is_camera_file"] is True
    assert result["path"].upper().endswith(".JPG")
    assert result["type"] == "bytes"
    assert result["stats"] == [1, 1]
    assert result["missing"]["code"] is not None  # the libgphoto2 code is kept
    data = out.read_bytes()
    source = Path(virtual_env["VCAMERADIR"], "frame.jpg").read_bytes()
    assert data == source  # the virtual camera serves a copy of the file in VCAMERADIR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == JPEG_SHAPE


def test_trigger_and_wait_for_file_do_not_hang(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        with g.make_camera() as cam:
            start = time.monotonic()
            result["idle_event"] = cam.wait_for_event(0.3).kind
            result["idle_s"] = time.monotonic() - start
            cam.trigger()
            start = time.monotonic()
            file = cam.wait_for_file(5.0)
            result["file_s"] = time.monotonic() - start
            result["file"] = file.path
            result["size"] = len(cam.download(file))
            # Afterwards the virtual camera sends endless unrelated events: the wait must end
            # at its deadline, not count events.
            start = time.monotonic()
            result["no_file"] = expect(CameraIOError, cam.wait_for_file, 0.5)
            result["no_file_s"] = time.monotonic() - start
            result["triggers"] = cam.stats.triggers
        """,
    )
    # Right after connect the virtual camera has nothing to report (a few seconds later it
    # starts sending "PTP Property ... changed" events); a timeout must take its full time.
    assert result["idle_event"] in ("timeout", "other")
    if result["idle_event"] == "timeout":
        assert result["idle_s"] >= 0.25
    assert result["idle_s"] < 2.0
    assert result["file"].upper().endswith(".JPG")
    assert result["file_s"] < 5.0
    assert result["size"] > 0
    assert "no new file within 0.5 s" in result["no_file"]["message"]
    assert 0.4 <= result["no_file_s"] < 2.0
    assert result["triggers"] == 1


def test_bind_by_serial_and_unknown_serial_or_port(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        [info] = g.list_cameras()
        result["serial"] = info.serial
        with factory.open_camera("gphoto2", serial=info.serial) as cam:
            result["bound"] = [cam.info.serial, cam.info.port]
        with g.make_camera(port=info.port) as cam:
            result["by_port"] = cam.info.serial
        result["nope"] = expect(CameraNotFound, g.make_camera(serial="nope").connect)
        result["bad_port"] = expect(CameraNotFound, g.make_camera(port="usb:009,009").connect)
        """,
    )
    serial = result["serial"]
    assert result["bound"] == [serial, PORT]
    assert result["by_port"] == serial
    message = result["nope"]["message"]
    assert "'nope'" in message
    assert serial in message and MODEL in message  # lists the cameras that are connected
    assert "usb:009,009" in result["bad_port"]["message"]
    assert PORT in result["bad_port"]["message"]


def test_camera_time_is_utc_aware(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        import datetime as dt
        with g.make_camera() as cam:
            clock = cam.camera_time()
        result["tz"] = str(clock.tzinfo)
        result["offset_s"] = (clock - dt.datetime.now(dt.timezone.utc)).total_seconds()
        """,
    )
    assert result["tz"] == "UTC"
    # The virtual camera's clock is the host clock, so it agrees to within a few seconds.
    assert abs(result["offset_s"]) < 60


def test_gphoto2_error_codes_map_to_camera_errors(virtual_env: dict[str, str]) -> None:
    result = run_virtual(
        virtual_env,
        """
        import gphoto2 as gp
        from expokit.capture.backends.base import UsbClaimError
        names = [
            "GP_ERROR_CAMERA_BUSY", "GP_ERROR_IO", "GP_ERROR_IO_READ", "GP_ERROR_IO_WRITE",
            "GP_ERROR_TIMEOUT", "GP_ERROR_IO_USB_CLAIM", "GP_ERROR_NOT_SUPPORTED",
            "GP_ERROR_IO_USB_FIND", "GP_ERROR_MODEL_NOT_FOUND", "GP_ERROR", "GP_ERROR_NO_MEMORY",
        ]
        for name in names:
            code = getattr(gp, name)
            running = g.translate_error(gp.GPhoto2Error(code), "cam: capture")
            opening = g.translate_error(gp.GPhoto2Error(code), "cam: open", connecting=True)
            result[name] = [type(running).__name__, type(opening).__name__, running.code]
        claim = g.translate_error(gp.GPhoto2Error(gp.GP_ERROR_IO_USB_CLAIM), "cam: open")
        result["claim_hint"] = UsbClaimError.HINT in str(claim)
        result["busy_retryable"] = g.translate_error(gp.GPhoto2Error(-110), "x").retryable
        """,
    )
    expected = {
        "GP_ERROR_CAMERA_BUSY": ("CameraBusy", "CameraBusy", -110),
        "GP_ERROR_IO": ("CameraIOError", "CameraIOError", -7),
        "GP_ERROR_IO_READ": ("CameraIOError", "CameraIOError", -34),
        "GP_ERROR_IO_WRITE": ("CameraIOError", "CameraIOError", -35),
        "GP_ERROR_TIMEOUT": ("CameraIOError", "CameraIOError", -10),
        "GP_ERROR_IO_USB_CLAIM": ("UsbClaimError", "UsbClaimError", -53),
        "GP_ERROR_NOT_SUPPORTED": ("NotSupported", "NotSupported", -6),
        "GP_ERROR_IO_USB_FIND": ("CameraDisconnected", "CameraNotFound", -52),
        "GP_ERROR_MODEL_NOT_FOUND": ("CameraDisconnected", "CameraNotFound", -105),
        "GP_ERROR": ("CameraError", "CameraError", -1),
        "GP_ERROR_NO_MEMORY": ("CameraError", "CameraError", -3),
    }
    for name, (running, opening, code) in expected.items():
        assert tuple(result[name]) == (running, opening, code), name
    assert result["claim_hint"] is True
    assert result["busy_retryable"] is True


def test_capture_preview_is_not_supported_by_the_virtual_camera(
    virtual_env: dict[str, str],
) -> None:
    """The wheel's virtual camera answers ``capture_preview`` with -6 (measured with
    python-gphoto2 2.6 / libgphoto2 2.5.3x): the backend must say so clearly, keep the code,
    leave the camera usable and count no preview. A body that does serve live view returns
    the JPEG bytes of ``get_data_and_size()``; where the virtual camera ever starts serving
    previews, this test checks that instead."""
    result = run_virtual(
        virtual_env,
        """
        import cv2
        import numpy as np
        with g.make_camera() as cam:
            result["has_viewfinder"] = "viewfinder" in cam.list_settings()
            try:
                data = cam.capture_preview()
            except NotSupported as exc:
                result["error"] = {"message": str(exc), "code": exc.code}
            else:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                result["shape"] = None if image is None else list(image.shape)
            result["previews"] = cam.stats.extra.get("previews", 0)
            result["still_usable"] = cam.get_setting("f-number").startswith("f/")
            unconnected = g.make_camera()
            result["unconnected"] = expect(CameraError, unconnected.capture_preview)["message"]
        """,
    )
    assert result["has_viewfinder"] is False  # a Nikon: no Canon viewfinder toggle
    assert result["still_usable"] is True
    assert "not connected" in result["unconnected"]
    if "error" in result:
        message = result["error"]["message"]
        assert result["error"]["code"] == -6
        assert f"{MODEL} does not serve live view frames" in message
        assert "live view frame" in message  # the operation is named
        assert result["previews"] == 0
    else:
        assert result["shape"] is not None and result["shape"][2] == 3
        assert result["previews"] == 1
