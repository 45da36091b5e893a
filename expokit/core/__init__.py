"""Shared infrastructure below every stage (imports no stage).

* :mod:`~expokit.core.errors` - the error classes every stage raises and the CLI prints.
* :mod:`~expokit.core.checks` - range checks of settings (one wording: setting, rule, value).
* :mod:`~expokit.core.atomic` - atomic writes (temp name, fsync, rename) and stale-temp cleanup.
* :mod:`~expokit.core.paths` - safe names and paths that must stay inside their root.
* :mod:`~expokit.core.roots` - marker files saying which kind of expokit root a folder is.
* :mod:`~expokit.core.lock` - one writer per root (``flock``, dropped in forked children).
* :mod:`~expokit.core.hashing` - SHA-256 of files.
* :mod:`~expokit.core.parallel` - the parallel map (processes, threads or Ray).
* :mod:`~expokit.core.progress` - progress of long commands (a bar on a terminal, lines in a log).
* :mod:`~expokit.core.runs` - run ids, completion records and run sidecars of batch stages.
* :mod:`~expokit.core.schema` - JSON Schemas from dataclasses, ``from_json`` / ``to_json``.
* :mod:`~expokit.core.images` - the one image reader (EXIF orientation, decoded-size limit).
* :mod:`~expokit.core.exif` - EXIF reading of JPEG/TIFF headers.
* :mod:`~expokit.core.ev` - EV values and their file-name tokens.
* :mod:`~expokit.core.transfer` - the sRGB transfer function.
* :mod:`~expokit.core.synthetic` - synthetic scenes, textures and DNGs with known answers.
* :mod:`~expokit.core.video_io` - audio and frame timing of videos through ffmpeg.
* :mod:`~expokit.core.toml` - the TOML parser on every supported Python (tomllib or tomli).
"""
