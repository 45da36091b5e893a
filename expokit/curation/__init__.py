"""curation: multi-EV renders from RAW, paired manifests, QA and exports.

Modules
-------
transfer
    sRGB transfer function and exposure lookup tables (functional core, numpy).
ev
    EV ladders and the file-name tokens peers' code parses (``N1.5 N1 0 P1 P1.5``).
raw_decode
    One LibRaw pass to linear 16-bit RGB with every parameter explicit; white balance,
    metadata and sanity checks.
render_config
    :class:`RenderConfig`, the typed, validated, hashable set of render parameters.
layout
    Output names and folders (``sequence`` and ``msec`` layouts).
render
    The per-RAW render function and the batch driver behind ``expokit render``.
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
