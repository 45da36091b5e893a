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
"""
