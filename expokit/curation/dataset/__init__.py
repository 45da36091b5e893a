"""dataset: the on-disk dataset (format v2) and what reads a whole one.

Nothing here imports :mod:`expokit.curation.build`: a dataset is read without the builder.

Modules
-------
format
    ``meta/info.json`` + ``manifest.parquet``: :class:`DatasetInfo`, :class:`Dataset`,
    :func:`load_dataset`, :func:`write_dataset` (v1 read in memory).
pair_row
    :class:`PairRow`: one manifest row, typed (the columns of ``MANIFEST_COLUMNS``).
flags
    The QA flags vocabulary of the ``qa_flags`` column (:data:`QA_FLAGS`, :func:`flag_list`).
validate
    Every problem of a dataset root, each naming its row and file (``curate validate``).
selection
    Which pairs a command uses (``--exclude-flags`` / ``--passed-only``).
report, card
    The HTML QA report (``templates/``) and the generated dataset card (README.md).
merge
    Several datasets into one new root (``curate merge``): ids kept unique, splits by scene.
"""
