"""export: ``curate export``, a dataset in the layouts peers' code reads.

Modules
-------
driver
    :func:`export_dataset`: lock, plan, write the layout, record, clean earlier files.
layouts
    The layouts themselves (MSEC, DIME, sequences, paired folders).
peers
    The peers' own naming and split rules, checked the way their loaders read them.
record
    ``export.json``: its one typed record (:class:`ExportRecord`), reader and writer.
validate
    ``curate validate`` on an export folder: the record, hashes and the peers' rules.
hf
    :func:`to_hf_dataset`: any dataset as a Hugging Face ``DatasetDict`` (``datasets`` lazily).
"""
