"""Comparing two checkpoints (or a checkpoint and a baseline player).

The entry point is ``python -m train.enhanced_eval`` (``train/enhanced_eval.py``),
which only wires these modules:

* :mod:`train.evaluation.inputs`: python-chess boards -> compact batches -> network
  inputs, exactly as the shards would have stored them;
* :mod:`train.evaluation.players`: loading checkpoints, and the move choosers
  (a network's best legal move or a batched PUCT search, ``random``, ``material``,
  ``stockfish``);
* :mod:`train.evaluation.search`: the batched PUCT search;
* :mod:`train.evaluation.heldout`: held-out metrics on the validation split,
  per position, with a paired bootstrap of A - B;
* :mod:`train.evaluation.match`: games between two players, Elo, PGN;
* :mod:`train.evaluation.report`: the terminal table.
"""
