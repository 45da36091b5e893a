"""capture: tethered control of two cameras behind a beam splitter, crash-safe sessions.

Modules
-------
backends.base
    The small camera interface (:class:`~expokit.capture.backends.base.Camera`) and errors.
backends.gphoto2_backend, backends.fake
    python-gphoto2 (real bodies and the wheel's virtual camera) and a pure-Python fake with
    latency, jitter and fault injection. Created by :func:`~expokit.capture.factory.open_camera`.
aliases
    Vendor differences: generic setting names -> the names each body uses.
rig_config
    :class:`~expokit.capture.rig_config.RigConfig`: roles bound to serial numbers, settings,
    EV offset, bracket ladder, trigger mode, retry budgets, output root, file-name template.
journal, session
    The append-only ``journal.jsonl`` and the session folder (plan, resume).
runner
    Synchronized pairs, brackets and video with barrier-released threads, downloads decoupled
    from triggering, EXIF checks, retries and reconnection by serial number.
exposure, exif_check
    Exposure arithmetic on setting strings (and the shutter vocabulary ``SHUTTER_CHOICES``),
    EXIF checks of downloaded files.
footage, defects
    Scenes for the rig simulator and the known QA defects it injects.
simulator.physics, simulator.encode, simulator.truth_file
    The rig simulator below the session: physics
    (:class:`~expokit.capture.simulator.physics.RigSimulation`, served by the fake backend,
    its config validated by the rig config), PNG/WAV/MP4 encoding, and ``truth.json``
    (:class:`~expokit.capture.simulator.truth_file.TruthFile`, its writer and reader).
simulate
    The session writer of ``expokit simulate`` (above the session and rig config).
commands
    The ``expokit capture`` commands (shoot, resume) over the runner and session.
"""
