"""Look inside a shards directory: ``python -m dataengine.inspect COMMAND DIR``.

=========  ===============================================================
summary    versions, counts from the manifest, label base rates (decoded)
show       one record: board, fields, masks as 8x8 grids; ``--svg``
dump       every record as a JSON line (``--jsonl``), for jq and pandas
verify     sha256/size, every block and record, labels recomputed
stats      ``--plot out.png``: buckets, ply, eval, per-square mask heatmaps
=========  ===============================================================

The entry point is :mod:`dataengine.inspect.__main__`; one module per command.
Reading shards lives in :mod:`.shards`, per-record views in :mod:`.records`.
"""
