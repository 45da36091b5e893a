"""build: ``expokit curate build``, sources in, a dataset root out.

Modules
-------
config
    :class:`BuildConfig`: every build option typed, validated and hashed.
sources
    Sessions, renders, sequences and folders turned into scene specs (what pairs exist).
align, qa
    The per-pair primitives: alignment (rig homography, ECC, valid region, gain) and QA
    figures and flags.
pair
    The per-pair pipeline one pair walks through once: load, align, measure, write, row.
task
    One scene's task and working state (what a scene's pairs write through).
scene
    :func:`build_scene`, the idempotent per-scene step every executor runs.
record
    A scene's completion record: its key and whether it proves the scene built.
splits
    Scene splits (train/val/test), disjoint by scene.
upgrade
    ``curate upgrade``: a v1 root rewritten as v2 (its figures re-measured where v1 lacks them).
driver
    :func:`build_dataset`, the batch driver: discover, skip, run, merge, assemble, write.
"""
