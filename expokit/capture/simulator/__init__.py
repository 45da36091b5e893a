"""The rig simulator, below the capture session: physics, encoders and ``truth.json``.

Modules
-------
physics
    :class:`~expokit.capture.simulator.physics.SimulationConfig`, the simulated bodies and
    :class:`~expokit.capture.simulator.physics.RigSimulation` (the only implementation of
    the physics; one call per shot).
encode
    16-bit PNG stills, WAV and H.264 + AAC movies of what the sensors record.
truth_file
    ``truth.json``: :class:`~expokit.capture.simulator.truth_file.TruthFile`, its one writer
    and its one reader.

The fake backend (:mod:`expokit.capture.backends.fake`) and the rig config
(:mod:`expokit.capture.rig_config`) import this package; the session writer ``expokit
simulate`` (:mod:`expokit.capture.simulate`) sits above the session and imports it too.
Nothing here imports the session, the rig config or a backend.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expokit.capture.simulator.encode import (
        Image,
        encode_movie,
        png16_bytes,
        to_uint,
        write_png16,
        write_wav,
    )
    from expokit.capture.simulator.physics import (
        BOARD,
        GENERATED_SECONDS,
        GENERATED_SIZE,
        MAX_DRIFT_PPM,
        MAX_EV_OFFSET,
        MAX_SEED,
        MAX_SENSOR_SIDE,
        MAX_SIMULATION_BYTES,
        MIN_RECORDING_S,
        MIN_SENSOR_SIDE,
        SIMULATION_KEYS,
        Body,
        RigSimulation,
        SensorModel,
        SimulationConfig,
        SimulationError,
        expose,
        misregistration,
        record_audio,
        render_board,
    )
    from expokit.capture.simulator.truth_file import (
        SIMULATION_FORMAT_VERSION,
        TRUTH_FILE,
        TRUTH_KIND,
        TruthFile,
        read_truth,
        write_truth,
    )

#: The submodule of each name below; the names are imported when first used, so a reader
#: of ``truth.json`` (``expokit.curation.truth``) loads ``truth_file`` without the physics.
_SUBMODULE: dict[str, str] = {
    **dict.fromkeys(
        ("Image", "encode_movie", "png16_bytes", "to_uint", "write_png16", "write_wav"),
        "encode",
    ),
    **dict.fromkeys(
        (
            "SIMULATION_FORMAT_VERSION",
            "TRUTH_FILE",
            "TRUTH_KIND",
            "TruthFile",
            "read_truth",
            "write_truth",
        ),
        "truth_file",
    ),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULE:
        module = _SUBMODULE[name]
    elif name in __all__:
        module = "physics"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    "BOARD",
    "GENERATED_SECONDS",
    "GENERATED_SIZE",
    "MAX_DRIFT_PPM",
    "MAX_EV_OFFSET",
    "MAX_SEED",
    "MAX_SENSOR_SIDE",
    "MAX_SIMULATION_BYTES",
    "MIN_RECORDING_S",
    "MIN_SENSOR_SIDE",
    "SIMULATION_FORMAT_VERSION",
    "SIMULATION_KEYS",
    "TRUTH_FILE",
    "TRUTH_KIND",
    "Body",
    "Image",
    "RigSimulation",
    "SensorModel",
    "SimulationConfig",
    "SimulationError",
    "TruthFile",
    "encode_movie",
    "expose",
    "misregistration",
    "png16_bytes",
    "read_truth",
    "record_audio",
    "render_board",
    "to_uint",
    "write_png16",
    "write_truth",
    "write_wav",
]
