"""PUCT search over a network's policy and value, a minibatch of leaves per network call.

:class:`Search` keeps one game's tree. ``set_position(board)`` takes the game as a
python-chess board with its move stack (the history decides repetitions) and keeps
the subtree of the new root when the board extends the previous one by a few moves;
``run(...)`` searches until a node budget, a deadline or a stop event, reporting
progress through a callback, and returns a :class:`SearchResult`.

The search itself (:mod:`train.engine.tree`, numba) works on canonical positions
(:mod:`train.engine.movegen`): python-chess is used only to read the root and its
history and to turn the result's moves back into ``chess.Move``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import chess
import numpy as np

from train.engine import movegen, tree
from train.engine.net import Evaluator

__all__ = ["SearchConfig", "SearchInfo", "SearchResult", "Search", "search_many", "value_to_cp"]


@dataclass(kw_only=True)
class SearchConfig:
    """The search's tunables (each is a UCI option of the engine)."""

    cpuct: float = 1.5
    """Exploration constant of PUCT: ``U = cpuct * P * sqrt(N_parent) / (1 + N)``."""

    fpu_reduction: float = 0.0
    """First-play urgency: an unvisited move's Q is its parent's Q minus this times the
    square root of the policy mass of the moves already visited (lc0's reduction). 0 by
    default: on the held-out puzzles (first 150, the default 10,000-step network) 0.3
    solved 56% of the full lines at 100 nodes against 61% with 0 (cpuct 1.5, batch 32;
    ``bench/bench_search_quality.py``, docs/engine.md)."""

    batch_size: int = 32
    """Leaves gathered (with virtual loss) per network call."""

    virtual_loss: float = 1.0
    """Visits, each counted as a loss, that a leaf waiting in the batch adds to its path."""

    def __post_init__(self) -> None:
        if not (self.cpuct > 0 and math.isfinite(self.cpuct)):
            raise ValueError(f"cpuct must be a positive number, got {self.cpuct!r}")
        if not (0 <= self.fpu_reduction < 10):
            raise ValueError(f"fpu_reduction must be in [0, 10), got {self.fpu_reduction!r}")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 4096):
            raise ValueError(f"batch_size must be an int in 1..4096, got {self.batch_size!r}")
        if not (0 <= self.virtual_loss <= 100):
            raise ValueError(f"virtual_loss must be in [0, 100], got {self.virtual_loss!r}")


@dataclass
class SearchInfo:
    """The search's state, as a UCI ``info`` line reports it."""

    nodes: int
    """Visits of the root since this search started (tree reuse not counted)."""
    depth: int
    """Average depth of the leaves visited, rounded up."""
    seldepth: int
    """Deepest leaf visited."""
    elapsed: float
    """Seconds since the search started."""
    value: float
    """The root's value for the side to move, in [-1, 1]."""
    pv: list[chess.Move]
    """Most visited line from the root."""
    wdl: tuple[int, int, int] | None = None
    """Win/draw/loss per mille for the side to move (from the network's W/D/L head
    averaged over the tree, where the model has one)."""
    multipv: list[tuple[chess.Move, int, float]] = field(default_factory=list)
    """Root moves, most visited first: (move, visits, value for the side to move)."""

    @property
    def nps(self) -> int:
        return int(self.nodes / self.elapsed) if self.elapsed > 0 else 0

    @property
    def cp(self) -> int:
        return value_to_cp(self.value)


@dataclass
class SearchResult(SearchInfo):
    """The final :class:`SearchInfo` and the move to play."""

    move: chess.Move | None = None
    """The most visited root move (None only when the root has no legal move)."""
    ponder: chess.Move | None = None
    """The expected reply (the PV's second move), if any."""


def value_to_cp(value: float) -> int:
    """Centipawns of a value in [-1, 1]: ``round(90 * tan(1.5637541897 * value))``, the
    mapping lc0 used (0.5 -> 89 cp, 0.8 -> 272, 0.9 -> 546, 1 -> 12780), clamped to
    +-12800: a certain result reads as a large score, never as a mate.

    >>> value_to_cp(0.0), value_to_cp(0.5), value_to_cp(-0.5)
    (0, 89, -89)
    """
    cp = 90.0 * math.tan(1.5637541897 * max(-1.0, min(1.0, value)))
    return int(round(max(-12800.0, min(12800.0, cp))))


#: Moves of a game, past the previous root, within which the tree is kept.
_MAX_REUSE_PLIES = 8
#: Nodes kept before a new position starts a fresh tree instead (memory bound).
_MAX_KEPT_NODES = 4_000_000


class Search:
    """One game's PUCT search tree; see the module doc."""

    def __init__(self, evaluator: Evaluator, config: SearchConfig | None = None) -> None:
        self.evaluator = evaluator
        self.config = config or SearchConfig()
        self.tree = tree.Tree()
        self.leaves = tree.LeafBuffers(self.config.batch_size)
        self._inputs = np.zeros((self.config.batch_size, tree.N_INPUT_PLANES, 8, 8), np.float32)
        self.root = self.tree.clear()
        self.board: chess.Board | None = None
        self._state: tuple[np.ndarray, int, int, int] | None = None
        self._history = np.zeros(0, dtype=np.uint64)

    def configure(self, config: SearchConfig) -> None:
        """New tunables; the tree is kept."""
        self.config = config
        if config.batch_size > self.leaves.size:
            self.leaves = tree.LeafBuffers(config.batch_size)
            self._inputs = np.zeros((config.batch_size, tree.N_INPUT_PLANES, 8, 8), np.float32)

    def new_game(self) -> None:
        """Forget the tree and the game."""
        self.root = self.tree.clear()
        self.board = None

    # ------------------------------------------------------------------ position

    def set_position(self, board: chess.Board) -> None:
        """Search ``board`` next (a copy is kept; its move stack is the game's history).
        The subtree of the new root is kept when ``board`` is the previous position
        with up to 8 more moves played."""
        node = self._reused_root(board)
        if node is None:
            self.root = self.tree.clear()
        else:
            self.root = node
        self.board = board.copy()
        bb, castling, ep, halfmove = movegen.state_of_board(board)
        self._state = (bb, castling, ep, halfmove)
        self._history = _history_keys(board)
        if self.tree.status[self.root] == tree.NEW:
            self.tree.key[self.root] = movegen.position_key(bb, castling, ep)
            self.tree.ep[self.root] = ep

    def _reused_root(self, board: chess.Board) -> int | None:
        old = self.board
        if old is None or int(self.tree.count[0]) > _MAX_KEPT_NODES:
            return None
        n_old, n_new = len(old.move_stack), len(board.move_stack)
        if not 0 <= n_new - n_old <= _MAX_REUSE_PLIES or board.root() != old.root():
            return None
        if board.move_stack[:n_old] != old.move_stack:
            return None
        node, turn, t = self.root, old.turn, self.tree
        for played in board.move_stack[n_old:]:
            if t.status[node] != tree.EXPANDED:
                return None
            packed = movegen.move_of_chess(played, turn)
            for child in t.children(node):
                if t.move[child] == packed:
                    node = child
                    break
            else:
                return None
            turn = not turn
        if t.status[node] not in (tree.NEW, tree.EXPANDED):
            return None  # a finished or pending node is no root to search from
        return node

    # ------------------------------------------------------------------ search

    def legal_root_moves(self) -> int:
        if self.board is None:
            raise RuntimeError("set_position() first")
        return self.board.legal_moves.count()

    def gather(self, want: int) -> int:
        """Walk ``want`` times from the root; returns the leaves waiting in the buffers."""
        if self._state is None:
            raise RuntimeError("set_position() first")
        self.tree.reserve(want * movegen.MAX_MOVES + 1)
        bb, castling, ep, halfmove = self._state
        t, leaves, c = self.tree, self.leaves, self.config
        return tree.gather(
            t.parent, t.first_child, t.n_children, t.move, t.prior, t.visits, t.wsum, t.dsum,
            t.vloss, t.status, t.tvalue, t.key, t.ep, self.root, bb, castling, ep, halfmove,
            self._history, want, c.cpuct, c.fpu_reduction, int(c.virtual_loss),
            leaves.node, leaves.bb, leaves.meta, leaves.moves, leaves.indices, leaves.n_moves,
            leaves.stats)

    def encoded(self, n: int) -> np.ndarray:
        """The network inputs of the ``n`` waiting leaves (a view of a reused buffer)."""
        tree.encode(self.leaves.bb, self.leaves.meta, n, self._inputs)
        return self._inputs[:n]

    def expand(self, n: int, logits: np.ndarray, values: np.ndarray,
               draws: np.ndarray | None) -> None:
        """Expand the ``n`` waiting leaves with the network's outputs for them."""
        t, leaves = self.tree, self.leaves
        if draws is None:
            draws = np.zeros(n, dtype=np.float32)
        tree.expand(t.parent, t.first_child, t.n_children, t.move, t.prior, t.visits, t.wsum,
                    t.dsum, t.vloss, t.status, t.count, self.root, n, leaves.node,
                    leaves.moves, leaves.indices, leaves.n_moves,
                    np.ascontiguousarray(logits, dtype=np.float32),
                    np.ascontiguousarray(values, dtype=np.float32),
                    np.ascontiguousarray(draws, dtype=np.float32), int(self.config.virtual_loss))

    def step(self, want: int) -> None:
        """One minibatch: gather, evaluate, expand."""
        n = self.gather(want)
        if n:
            logits, values, draws = self.evaluator.raw(self.encoded(n))
            self.expand(n, logits, values, draws)

    def run(self, *, nodes: int | None = None, deadline: float | None = None,
            stop: threading.Event | None = None, depth: int | None = None,
            on_info: Callable[[SearchInfo], None] | None = None,
            info_every: float = 1.0) -> SearchResult:
        """Search until ``nodes`` visits, the ``deadline`` (``time.monotonic()``), the
        ``stop`` event or an average depth of ``depth``, whichever comes first (none
        given: one minibatch). At least one minibatch is always searched."""
        if self.board is None:
            raise RuntimeError("set_position() first")
        started = time.monotonic()
        t = self.tree
        self.leaves.stats[:] = 0
        first_visits = int(t.visits[self.root])
        if not any(True for _ in self.board.legal_moves):
            return SearchResult(nodes=0, depth=0, seldepth=0, elapsed=0.0,
                                value=self._terminal_value(), pv=[], move=None)
        last_info = started
        batch = self.config.batch_size
        while True:
            done = int(t.visits[self.root]) - first_visits
            want = batch if nodes is None else max(1, min(batch, nodes - done))
            if t.status[self.root] != tree.EXPANDED:
                want = 1  # the root alone first: its children exist only after
            self.step(want)
            done = int(t.visits[self.root]) - first_visits
            now = time.monotonic()
            if nodes is not None and done >= nodes:
                break
            if stop is not None and stop.is_set():
                break
            if deadline is not None and now >= deadline:
                break
            if depth is not None and self._depths()[0] >= depth:
                break
            if nodes is None and deadline is None and stop is None and depth is None:
                break
            if on_info is not None and now - last_info >= info_every:
                on_info(self.info(first_visits, started))
                last_info = now
        return self.result(first_visits, started)

    # ------------------------------------------------------------------ reports

    def _terminal_value(self) -> float:
        return -1.0 if self.board is not None and self.board.is_check() else 0.0

    def _depths(self) -> tuple[int, int]:
        stats = self.leaves.stats
        average = math.ceil(stats[2] / stats[0]) if stats[0] else 0
        return int(average), int(stats[3])

    def root_children(self) -> list[tuple[int, int, float, float]]:
        """(child node, visits, value for the side to move, prior), most visited first
        (ties: higher prior)."""
        t = self.tree
        rows = []
        for c in t.children(self.root):
            n = int(t.visits[c])
            q = float(t.wsum[c] / n) if n else float("nan")
            rows.append((c, n, q, float(t.prior[c])))
        rows.sort(key=lambda r: (r[1], r[3]), reverse=True)
        return rows

    def _pv(self, first: int) -> list[chess.Move]:
        t, turn = self.tree, self.board.turn
        line, node = [], first
        while True:
            line.append(movegen.move_to_chess(int(t.move[node]), turn))
            turn = not turn
            kids = [c for c in t.children(node) if t.visits[c] > 0]
            if not kids or len(line) >= 64:
                return line
            node = max(kids, key=lambda c: (int(t.visits[c]), float(t.prior[c])))

    def info(self, first_visits: int = 0, started: float | None = None) -> SearchInfo:
        t = self.tree
        rows = self.root_children()
        depth, seldepth = self._depths()
        elapsed = time.monotonic() - started if started is not None else 0.0
        nodes = int(t.visits[self.root]) - first_visits
        turn = self.board.turn
        if rows and rows[0][1] > 0:
            best, n, q, _ = rows[0]
            pv = self._pv(best)
            draw = float(t.dsum[best] / n)
        else:
            q = -float(t.wsum[self.root] / max(1, t.visits[self.root]))
            pv = [movegen.move_to_chess(int(t.move[rows[0][0]]), turn)] if rows else []
            draw = float(t.dsum[self.root] / max(1, t.visits[self.root]))
        wdl = None
        if self.evaluator.has_wdl:
            w = max(0.0, (1.0 - draw + q) / 2.0)
            loss = max(0.0, (1.0 - draw - q) / 2.0)
            wdl = _per_mille(w, draw, loss)
        multipv = [(movegen.move_to_chess(int(t.move[c]), turn), n, value)
                   for c, n, value, _ in rows]
        return SearchInfo(nodes=nodes, depth=depth, seldepth=seldepth, elapsed=elapsed,
                          value=float(q), pv=pv, wdl=wdl, multipv=multipv)

    def result(self, first_visits: int = 0, started: float | None = None) -> SearchResult:
        info = self.info(first_visits, started)
        move = info.pv[0] if info.pv else None
        ponder = info.pv[1] if len(info.pv) > 1 else None
        return SearchResult(**vars(info), move=move, ponder=ponder)


def _per_mille(w: float, d: float, loss: float) -> tuple[int, int, int]:
    total = w + d + loss
    if total <= 0:
        return (0, 1000, 0)
    wi, di = round(1000 * w / total), round(1000 * d / total)
    return (wi, di, 1000 - wi - di)


def _history_keys(board: chess.Board) -> np.ndarray:
    """Keys of the positions before ``board`` since its last capture or pawn move (at
    most its halfmove clock of them), oldest first."""
    n = min(board.halfmove_clock, len(board.move_stack))
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    past = board.copy()
    keys = []
    for _ in range(n):
        past.pop()
        bb, castling, ep, _ = movegen.state_of_board(past)
        keys.append(movegen.position_key(bb, castling, ep))
    return np.array(keys[::-1], dtype=np.uint64)


def search_many(evaluator: Evaluator, boards: Sequence[chess.Board], nodes: int,
                config: SearchConfig | None = None) -> list[SearchResult]:
    """Independent searches of ``nodes`` visits from each board, run in lockstep so that
    each network call takes the leaves of all of them (the puzzle benchmark's way)."""
    searches = []
    for board in boards:
        s = Search(evaluator, config)
        s.set_position(board)
        searches.append(s)
    active = [s for s in searches if s.legal_root_moves()]
    firsts = {id(s): int(s.tree.visits[s.root]) for s in active}
    started = time.monotonic()
    while active:
        counts = []
        for s in active:
            done = int(s.tree.visits[s.root]) - firsts[id(s)]
            want = 1 if s.tree.status[s.root] != tree.EXPANDED else min(
                s.config.batch_size, nodes - done)
            counts.append(s.gather(max(1, want)))
        total = sum(counts)
        if total:
            x = np.concatenate([s.encoded(n) for s, n in zip(active, counts, strict=True) if n])
            logits, values, draws = evaluator.raw(x)
            at = 0
            for s, n in zip(active, counts, strict=True):
                if n:
                    s.expand(n, logits[at:at + n], values[at:at + n],
                             None if draws is None else draws[at:at + n])
                    at += n
        active = [s for s in active
                  if int(s.tree.visits[s.root]) - firsts[id(s)] < nodes]
    results = []
    for s in searches:
        if s.legal_root_moves():
            results.append(s.result(firsts.get(id(s), 0), started))
        else:
            results.append(SearchResult(nodes=0, depth=0, seldepth=0, elapsed=0.0,
                                        value=s._terminal_value(), pv=[], move=None))
    return results
