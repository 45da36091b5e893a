"""curation: multi-EV renders from RAW, paired manifests, QA and exports.

Modules
-------
transfer
    sRGB transfer function and exposure lookup tables (functional core, numpy).
ev
    EV ladders and the file-name tokens peers' code parses (``N1.5 N1 0 P1 P1.5``).
rendering
    RAW rendering, the stage behind ``expokit render`` (a sub-package):
    ``rendering.raw_decode`` (one LibRaw pass to linear 16-bit RGB, white balance, metadata,
    sanity checks), ``rendering.config`` (:class:`RenderConfig`, the typed, validated, hashable
    render parameters) and ``rendering.render`` (the per-RAW function and the batch driver).
layout
    Output names and folders (``sequence`` and ``msec`` layouts).
manifest
    The parquet manifest: columns, atomic writes, reading back.
synthetic
    Synthetic DNGs with known radiance (tests and the demo data).
metrics
    PSNR and SSIM, one implementation (conventions in ``docs/metrics.md``).
dataset, upgrade
    Dataset format v1 (``meta/info.json`` + ``manifest.parquet``) and format converters.
build_config, sources, align, qa, splits, build
    ``expokit curate build``: sources, per-pair alignment and QA, scene splits.
report, export, card, validate
    HTML QA report, exports to peers' layouts (MSEC, DIME, sequences), dataset card, checks.
"""
