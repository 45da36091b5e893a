"""curation: multi-EV renders from RAW, paired datasets, QA, splits and exports.

Modules
-------
rendering
    RAW rendering, the stage behind ``expokit render`` (a sub-package):
    ``rendering.raw_decode`` (one LibRaw pass to linear 16-bit RGB, white balance, metadata,
    sanity checks), ``rendering.config`` (:class:`RenderConfig`, the typed, validated, hashable
    render parameters) and ``rendering.render`` (the per-RAW function and the batch driver).
layout
    Output names and folders of renders (``sequence`` and ``msec`` layouts).
manifest
    The parquet manifest: columns, atomic writes, reading back.
metrics
    PSNR and SSIM, one implementation (conventions in ``docs/metrics.md``).
dataset, upgrade
    Dataset format v2 (``meta/info.json`` + ``manifest.parquet``; v1 read in memory) and
    ``curate upgrade``.
build_config, sources, align, qa, splits, build
    ``expokit curate build``: typed options, sources (sessions, renders, sequences, folders),
    per-pair alignment and QA flags, scene splits, the batch driver.
selection
    Which pairs a command uses (``--exclude-flags`` / ``--passed-only``).
report, card, validate
    HTML QA report, dataset card, dataset and export checks.
export, export_layouts, export_peers, export_record
    ``curate export``: the driver, the layouts peers' code reads (MSEC, DIME, sequences),
    the peers' own naming and split rules, and ``export.json`` (its one typed record,
    reader and writer).
truth
    Every stage checked against a simulated session's ``truth.json``.
"""
