"""The search tree in flat arrays, and the numba kernels that grow it.

A node is an index into the arrays of :class:`Tree`. A node's children (one per
legal move) are allocated together when it is expanded, so they are the range
``first_child .. first_child + n_children``. Per node:

* ``move``, ``prior``: the packed canonical move that leads to it (in its parent's
  orientation) and the parent's policy probability of that move;
* ``visits`` ``N`` and ``wsum`` ``W``: the values backed up through it, from the view
  of the side that played ``move`` (so a parent maximises ``W / N`` over its children);
  ``dsum``: the draw probabilities backed up (W/D/L networks), a view-free sum;
* ``vloss``: visits in flight, each counted as a loss by :func:`gather` (virtual loss);
* ``status``: NEW (not yet reached), PENDING (waiting for the network in this batch),
  EXPANDED, TERMINAL (``tvalue`` for its side to move: -1 mated, 0 a draw);
* ``key``, ``ep``: its position key and its en-passant square once reached
  (:mod:`train.engine.movegen`), for the repetition test of the nodes below it.

:func:`gather` walks from the root ``want`` times with PUCT, applying each move to a
position it carries down, and stops each walk at a node not yet reached. A
finished game there (mate, stalemate, the 50-move rule, insufficient material or a
repetition of a position since the last capture or pawn move, in the game or on the
path; draws are not applied at the root, whose game goes on) is backed up at once;
any other leaf gets virtual loss along its path and waits in the leaf buffers for
the network. :func:`expand` then gives each leaf its children with the softmax of the
policy logits over its legal moves, and backs its value up.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from labelers.kernels import tzcnt
from train.engine.movegen import (
    MAX_MOVES,
    in_check,
    insufficient_material,
    legal_moves,
    make_move,
    position_key,
)

__all__ = ["NEW", "PENDING", "EXPANDED", "TERMINAL", "Tree", "LeafBuffers", "encode",
           "gather", "expand"]

_JIT = {"cache": True, "nogil": True}

NEW, PENDING, EXPANDED, TERMINAL = 0, 1, 2, 3
#: Longest walk from the root (a safety bound; a game ends by the 50-move rule first).
MAX_DEPTH = 512
N_INPUT_PLANES = 19
_HALFMOVE_SCALE = np.float32(100.0)


class Tree:
    """The node arrays, grown by doubling (the kernels never allocate)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.count = np.zeros(1, dtype=np.int64)
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.parent = np.full(capacity, -1, dtype=np.int32)
        self.first_child = np.full(capacity, -1, dtype=np.int32)
        self.n_children = np.zeros(capacity, dtype=np.int32)
        self.move = np.zeros(capacity, dtype=np.int32)
        self.prior = np.zeros(capacity, dtype=np.float32)
        self.visits = np.zeros(capacity, dtype=np.int32)
        self.wsum = np.zeros(capacity, dtype=np.float64)
        self.dsum = np.zeros(capacity, dtype=np.float64)
        self.vloss = np.zeros(capacity, dtype=np.int32)
        self.status = np.zeros(capacity, dtype=np.int8)
        self.tvalue = np.zeros(capacity, dtype=np.float32)
        self.key = np.zeros(capacity, dtype=np.uint64)
        self.ep = np.full(capacity, -1, dtype=np.int8)

    @property
    def capacity(self) -> int:
        return len(self.parent)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more nodes (doubling, so growth is amortised)."""
        need = int(self.count[0]) + extra
        if need <= self.capacity:
            return
        capacity = self.capacity
        while capacity < need:
            capacity *= 2
        old = self.arrays()
        self._allocate(capacity)
        for name, array in zip(self._NAMES, old, strict=True):
            getattr(self, name)[: len(array)] = array

    def clear(self) -> int:
        """Forget every node; returns the new root (0), NEW."""
        n = int(self.count[0])
        for name in self._NAMES:
            array = getattr(self, name)
            array[:n] = -1 if name in ("parent", "first_child", "ep") else 0
        self.count[0] = 1
        return 0

    _NAMES = ("parent", "first_child", "n_children", "move", "prior", "visits", "wsum",
              "dsum", "vloss", "status", "tvalue", "key", "ep")

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in self._NAMES)

    def children(self, node: int) -> range:
        first = int(self.first_child[node])
        return range(first, first + int(self.n_children[node])) if first >= 0 else range(0)


class LeafBuffers:
    """Where :func:`gather` leaves the positions waiting for the network."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.node = np.zeros(size, dtype=np.int32)
        self.bb = np.zeros((size, 12), dtype=np.uint64)
        self.meta = np.zeros((size, 3), dtype=np.int32)  # castling, ep, halfmove
        self.moves = np.zeros((size, MAX_MOVES), dtype=np.int32)
        self.indices = np.zeros((size, MAX_MOVES), dtype=np.int32)
        self.n_moves = np.zeros(size, dtype=np.int32)
        # descents, collisions, depth sum, max depth, terminal backups
        self.stats = np.zeros(5, dtype=np.int64)


@njit(**_JIT)
def _backup(parent, visits, wsum, dsum, vloss, root, node, value, draw, vl):
    """Back ``value`` (for the side to move at ``node``) up to the root, taking back
    ``vl`` virtual losses on the way."""
    x = node
    v = value
    while True:
        visits[x] += 1
        wsum[x] -= v  # W is from the view of the side that moved into x
        dsum[x] += draw
        vloss[x] -= vl
        if x == root:
            return
        v = -v
        x = parent[x]


@njit(**_JIT)
def _select(first_child, n_children, prior, visits, wsum, vloss, node, cpuct, fpu_reduction):
    """The child of ``node`` with the highest PUCT score (virtual losses counted)."""
    first = first_child[node]
    n = n_children[node]
    parent_n = visits[node] + vloss[node]
    sqrt_n = math.sqrt(max(parent_n, 1))
    visited_mass = 0.0
    for c in range(first, first + n):
        if visits[c] + vloss[c] > 0:
            visited_mass += prior[c]
    # the node's own value, for its side to move (W is stored from the other side's view)
    q_node = -wsum[node] / visits[node] if visits[node] > 0 else 0.0
    fpu = q_node - fpu_reduction * math.sqrt(visited_mass)
    best = first
    best_score = -1e30
    for c in range(first, first + n):
        nc = visits[c] + vloss[c]
        q = (wsum[c] - vloss[c]) / nc if nc > 0 else fpu
        score = q + cpuct * prior[c] * sqrt_n / (1.0 + nc)
        if score > best_score:
            best_score = score
            best = c
    return best


@njit(**_JIT)
def gather(parent, first_child, n_children, move, prior, visits, wsum, dsum, vloss, status,
           tvalue, key, ep_of, root, root_bb, root_castling, root_ep, root_halfmove, history,
           want, cpuct, fpu_reduction, vl, leaf_node, leaf_bb, leaf_meta, leaf_moves,
           leaf_indices, leaf_n_moves, stats):
    """Up to ``want`` walks from the root; returns how many leaves wait in the buffers.
    ``history``: keys of the game's positions before the root, oldest first (only the
    ones since the last capture or pawn move matter)."""
    n_history = len(history)
    keys = np.zeros(n_history + MAX_DEPTH + 1, dtype=np.uint64)
    keys[:n_history] = history
    cur = np.zeros(12, dtype=np.uint64)
    nxt = np.zeros(12, dtype=np.uint64)
    n_leaves = 0
    for _ in range(want):
        node = root
        cur[:] = root_bb
        castling, ep, halfmove = root_castling, root_ep, root_halfmove
        t = n_history
        keys[t] = key[root]
        depth = 0
        stats[0] += 1
        while True:
            s = status[node]
            if s == EXPANDED and depth < MAX_DEPTH:
                child = _select(first_child, n_children, prior, visits, wsum, vloss, node,
                                cpuct, fpu_reduction)
                castling, ep, halfmove = make_move(cur, castling, ep, halfmove, move[child], nxt)
                cur[:] = nxt
                node = child
                depth += 1
                t += 1
                if status[node] != NEW:
                    ep = ep_of[node]
                    keys[t] = key[node]
                continue
            if s == PENDING:
                stats[1] += 1
                break
            if s == TERMINAL or depth >= MAX_DEPTH:
                value = tvalue[node] if s == TERMINAL else 0.0
                _backup(parent, visits, wsum, dsum, vloss, root, node, value,
                        1.0 if value == 0.0 else 0.0, 0)
                stats[4] += 1
                break
            # NEW: the first visit of this node
            row = leaf_moves[n_leaves]
            n, ep_legal = legal_moves(cur, castling, ep, row, leaf_indices[n_leaves])
            if not ep_legal:
                ep = -1
            k = position_key(cur, castling, ep)
            key[node] = k
            ep_of[node] = ep
            keys[t] = k
            terminal = False
            value = 0.0
            if n == 0:
                terminal = True
                value = -1.0 if in_check(cur) else 0.0
            elif node != root:
                if halfmove >= 100 or insufficient_material(cur):
                    terminal = True
                else:
                    j = t - 2
                    while j >= 0 and j >= t - halfmove:
                        if keys[j] == k:
                            terminal = True
                            break
                        j -= 2
            if terminal:
                status[node] = TERMINAL
                tvalue[node] = value
                _backup(parent, visits, wsum, dsum, vloss, root, node, value,
                        1.0 if value == 0.0 else 0.0, 0)
                stats[4] += 1
                break
            status[node] = PENDING
            leaf_node[n_leaves] = node
            leaf_bb[n_leaves] = cur
            leaf_meta[n_leaves, 0] = castling
            leaf_meta[n_leaves, 1] = ep
            leaf_meta[n_leaves, 2] = halfmove
            leaf_n_moves[n_leaves] = n
            n_leaves += 1
            x = node
            while True:
                vloss[x] += vl
                if x == root:
                    break
                x = parent[x]
            break
        stats[2] += depth
        if depth > stats[3]:
            stats[3] = depth
    return n_leaves


@njit(**_JIT)
def expand(parent, first_child, n_children, move, prior, visits, wsum, dsum, vloss, status,
           count, root, n_leaves, leaf_node, leaf_moves, leaf_indices, leaf_n_moves, logits,
           values, draws, vl):
    """Give each waiting leaf its children (priors: the softmax of its logits over its legal
    moves) and back its value (and draw probability) up, taking back its virtual loss."""
    for i in range(n_leaves):
        node = leaf_node[i]
        n = leaf_n_moves[i]
        start = count[0]
        count[0] += n
        top = -1e30
        for j in range(n):
            z = logits[i, leaf_indices[i, j]]
            if z > top:
                top = z
        total = 0.0
        for j in range(n):
            p = math.exp(logits[i, leaf_indices[i, j]] - top)
            prior[start + j] = p
            total += p
        for j in range(n):
            c = start + j
            prior[c] = prior[c] / total
            parent[c] = node
            move[c] = leaf_moves[i, j]
            first_child[c] = -1
            n_children[c] = 0
            visits[c] = 0
            wsum[c] = 0.0
            dsum[c] = 0.0
            vloss[c] = 0
            status[c] = NEW
        first_child[node] = start
        n_children[node] = n
        status[node] = EXPANDED
        _backup(parent, visits, wsum, dsum, vloss, root, node, values[i], draws[i], vl)


@njit(**_JIT)
def encode(leaf_bb, leaf_meta, n, out):
    """The network inputs (``train.expand.expand_inputs``' 19 planes) of the first ``n``
    waiting positions into ``out`` (>= n, 19, 8, 8) float32."""
    for i in range(n):
        out[i] = 0.0
        for p in range(12):
            x = leaf_bb[i, p]
            while x:
                sq = tzcnt(x)
                out[i, p, sq >> 3, sq & 7] = 1.0
                x &= x - np.uint64(1)
        castling = leaf_meta[i, 0]
        for b in range(4):
            if castling >> b & 1:
                out[i, 12 + b] = 1.0
        ep = leaf_meta[i, 1]
        if ep >= 0:
            out[i, 16, ep >> 3, ep & 7] = 1.0
        clock = min(leaf_meta[i, 2], 100)
        out[i, 17] = min(np.float32(clock) / _HALFMOVE_SCALE, np.float32(1.0))
        out[i, 18] = 1.0
