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
"""
