"""curation: multi-EV renders from RAW, paired datasets, QA, splits and exports.

One sub-package per room, each owning its file kinds; the stage imports one way inside
too: dataset <- export, and rendering, dataset <- build (checked by ``tests/test_layering.py``).

Modules
-------
rendering
    RAW to multi-EV renders, ``expokit render``: ``raw_decode``, ``config``
    (:class:`RenderConfig`), ``render`` (per-RAW function and batch driver),
    ``render_layout`` (render output names) and ``render_manifest`` (the render's parquet).
build
    ``expokit curate build``: ``config`` (:class:`BuildConfig`), ``sources``, the per-pair
    pipeline (``pair``, using ``align`` and ``qa``), ``task`` and ``scene`` (one scene),
    ``record`` (its completion record), ``splits``, ``upgrade`` (``curate upgrade``) and
    ``driver`` (the batch driver).
dataset
    The dataset root: ``format`` (info.json + manifest.parquet, v2; v1 read in memory),
    ``pair_row`` (one manifest row, typed), ``flags`` (the QA flags vocabulary),
    ``validate``, ``selection``, ``report`` (HTML QA report), ``card`` and ``merge``
    (``curate merge``: several datasets into a new root).
export
    ``curate export``: ``driver``, ``layouts`` (what peers' code reads: MSEC, DIME,
    sequences, paired folders), ``peers`` (their naming and split rules), ``record``
    (``export.json``), ``validate`` (an export folder's checks) and ``hf`` (any dataset as a
    Hugging Face ``DatasetDict``).
metrics
    PSNR and SSIM, one implementation (conventions in ``docs/metrics.md``).
truth
    Every stage checked against a simulated session's ``truth.json``.
"""
