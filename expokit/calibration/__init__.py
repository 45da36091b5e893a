"""Calibration stage: rig geometry and temporal sync of the two cameras (see README).

Geometry (``expokit calibrate geometry``; entry point :func:`geometry.calibrate_geometry`):

* :mod:`~expokit.calibration.boards` - ChArUco / chessboard specs and detection.
* :mod:`~expokit.calibration.mirror` - is the test image mirrored (flip detection).
* :mod:`~expokit.calibration.intrinsics` - per-camera intrinsics, distortion, stereo RMS.
* :mod:`~expokit.calibration.homography` - features, robust fit, sanity checks, ECC.
* :mod:`~expokit.calibration.geometry` - the pipeline, ``rig_calibration.json`` and
  :func:`~expokit.calibration.geometry.warp_test_to_reference`.
"""
