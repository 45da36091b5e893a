"""Calibration stage: rig geometry and temporal sync of the two cameras (see README).

Geometry (``expokit calibrate geometry``; entry point :func:`geometry.calibrate_geometry`):

* :mod:`~expokit.calibration.boards` - ChArUco / chessboard specs and detection.
* :mod:`~expokit.calibration.mirror` - is the test image mirrored (flip detection).
* :mod:`~expokit.calibration.intrinsics` - per-camera intrinsics, distortion, stereo RMS.
* :mod:`~expokit.calibration.homography` - features, robust fit, sanity checks, ECC.
* :mod:`~expokit.calibration.geometry` - the estimation pipeline
  (:func:`~expokit.calibration.geometry.calibrate_geometry`).
* :mod:`~expokit.calibration.geometry_io` - image input (files, folders, globs; reading pairs).
* :mod:`~expokit.calibration.warp` - applying a calibration
  (:func:`~expokit.calibration.warp.warp_test_to_reference`, valid region).
* :mod:`~expokit.calibration.rig_calibration` - the ``rig_calibration.json`` format.
* :mod:`~expokit.calibration.geometry_qa` - QA images.
* :mod:`~expokit.calibration.parallax` - depth layers one homography cannot align (which
  way to move the test body).

Alignment (``expokit align check`` / ``align live``):

* :mod:`~expokit.calibration.alignment_check` - one pair of views: roll, scale, shift,
  keystone, EV, white balance, focus, coverage, parallax, verdict and advice.
* :mod:`~expokit.calibration.live` - the live loop (full checks and ECC tracking), its state.
* :mod:`~expokit.calibration.live_page` - the local page and its HTTP server.
* :mod:`~expokit.calibration.live_calibration` - the calibrate key: stills, geometry, journal.

Sync (``expokit calibrate sync`` / ``pair-stills``):

* :mod:`~expokit.calibration.sync` - offset and drift of two recordings (entry point).
* :mod:`~expokit.calibration.sync_audio` - audio cross-correlation, coarse to fine, drift.
* :mod:`~expokit.calibration.sync_brightness` - brightness events when there is no audio.
* :mod:`~expokit.calibration.sync_record` - the ``sync.json`` format.
* :mod:`~expokit.calibration.still_pairs` - stills paired by host trigger time.
* :mod:`~expokit.calibration.synthetic` - synthetic sync test signals.
"""
