"""The trained network as a chess engine: a batched PUCT search over its policy and value.

* :mod:`train.engine.movegen`: numba bitboard positions in canonical orientation (legal
  moves, making a move, repetition keys, draws by material), tested move for move
  against python-chess;
* :mod:`train.engine.tree`: the search tree in flat arrays and its numba kernels
  (select a minibatch of leaves with virtual loss, expand them with the network's
  priors, back their values up);
* :mod:`train.engine.net`: a checkpoint's network as a batched evaluator;
* :mod:`train.engine.search`: :class:`~train.engine.search.Search`, the Python driver
  that the UCI engine (``python -m train.uci``), the puzzle benchmark and the gauntlet use.
"""
