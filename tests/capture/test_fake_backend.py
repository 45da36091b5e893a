from __future__ import annotations

import time

import pytest

from expokit.capture.aliases import movie_control, resolve_setting
from expokit.capture.backends.base import (
    CameraBusy,
    CameraDisconnected,
    CameraIOError,
    CameraNotFound,
    NotSupported,
    SettingValueError,
    UsbClaimError,
)
from expokit.capture.backends.fake import FakeCameraSpec, FakeFaults, configure_bus
from expokit.capture.exif_check import read_exposure
from expokit.capture.factory import list_cameras, open_camera


def _bus(**faults: object) -> None:
    configure_bus(
        [
            FakeCameraSpec("A", model="Fake Nikon", vendor="nikon", faults=FakeFaults(**faults)),  # type: ignore[arg-type]
            FakeCameraSpec("B", model="Fake Canon", vendor="canon"),
        ]
    )


def test_list_and_open_by_serial() -> None:
    _bus()
    assert {c.serial for c in list_cameras("fake")} == {"A", "B"}
    with open_camera("fake", serial="B") as camera:
        assert camera.info.model == "Fake Canon" and camera.info.serial == "B"
    with pytest.raises(CameraNotFound, match="connected: A, B"):
        open_camera("fake", serial="Z").connect()


def test_vendor_aliases() -> None:
    _bus()
    with open_camera("fake", serial="A") as nikon, open_camera("fake", serial="B") as canon:
        assert resolve_setting("aperture", nikon.list_settings(), "n") == "f-number"
        assert resolve_setting("aperture", canon.list_settings(), "c") == "aperture"
        assert resolve_setting("image_format", nikon.list_settings(), "n") == "imagequality"
        assert resolve_setting("image_format", canon.list_settings(), "c") == "imageformat"
        assert movie_control(nikon.list_settings(), "n").setting == "movie"
        assert movie_control(canon.list_settings(), "c").start_value == "Card"
        with pytest.raises(NotSupported, match="white_balance not supported by Fake Nikon"):
            resolve_setting("white_balance", nikon.list_settings(), "Fake Nikon")


def test_bad_value_lists_allowed() -> None:
    _bus()
    with open_camera("fake", serial="A") as camera:
        with pytest.raises(SettingValueError, match=r"allowed: 100, 200, 400"):
            camera.set_setting("iso", "123")
        with pytest.raises(NotSupported):
            camera.set_setting("serialnumber", "x")


def test_capture_download_and_exif_follow_settings() -> None:
    _bus()
    with open_camera("fake", serial="A") as camera:
        camera.set_setting("imagequality", "JPEG Fine")
        camera.set_setting("shutterspeed", "1/500")
        camera.set_setting("iso", "400")
        data = camera.download(camera.capture(timeout_s=2))
        exif = read_exposure(data)
        assert exif["exposure_time_s"] == pytest.approx(1 / 500) and exif["iso"] == 400


def test_raw_mode_writes_dng_with_exif() -> None:
    _bus()
    with open_camera("fake", serial="A") as camera:
        camera.set_setting("shutterspeed", "1/60")
        file = camera.capture(timeout_s=2)
        assert file.name.endswith(".DNG")
        assert read_exposure(camera.download(file))["exposure_time_s"] == pytest.approx(1 / 60)


def test_busy_and_io_faults_count_down() -> None:
    _bus(busy=1, io_error=1)
    with open_camera("fake", serial="A") as camera:
        with pytest.raises(CameraBusy) as busy:
            camera.trigger()
        assert busy.value.code == -110 and type(busy.value).retryable
        with pytest.raises(CameraIOError):
            camera.trigger()
        camera.trigger()  # faults used up


def test_disconnect_and_replug_on_new_port() -> None:
    _bus(disconnect_after_triggers=1, replug_after_s=0.05)
    camera = open_camera("fake", serial="A")
    camera.connect()
    old_port = camera.info.port
    camera.trigger()
    with pytest.raises(CameraDisconnected):
        camera.trigger()
    assert "A" not in {c.serial for c in list_cameras("fake")}
    time.sleep(0.06)
    again = {c.serial: c for c in list_cameras("fake")}["A"]
    assert again.port != old_port
    with pytest.raises(CameraDisconnected):
        camera.trigger()  # the old handle stays stale
    fresh = open_camera("fake", serial="A")
    fresh.connect()
    fresh.trigger()


def test_claim_failure_gives_hint() -> None:
    _bus(claim_failure=True)
    with pytest.raises(UsbClaimError, match="gvfs"):
        open_camera("fake", serial="A").connect()


def test_ignored_setting_reads_back_but_exif_tells() -> None:
    _bus(ignore_settings=("shutterspeed",))
    with open_camera("fake", serial="A") as camera:
        camera.set_setting("imagequality", "JPEG Fine")
        camera.set_setting("shutterspeed", "1/1000")
        assert camera.get_setting("shutterspeed") == "1/1000"
        exif = read_exposure(camera.download(camera.capture(timeout_s=2)))
        assert exif["exposure_time_s"] == pytest.approx(1 / 125)  # what the body really used


def test_fed_from_a_folder_of_real_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2
    import numpy as np

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"img{i}.jpg"), np.full((8, 8, 3), 60 * i, np.uint8))
    configure_bus([FakeCameraSpec("S", source_dir=str(folder))])
    with open_camera("fake", serial="S") as camera:
        got = [camera.download(camera.capture(timeout_s=1)) for _ in range(3)]
    sources = [(folder / f"img{i}.jpg").read_bytes() for i in range(2)]
    assert got == [sources[0], sources[1], sources[0]]  # served in order, cycling
