"""A small PUCT search (AlphaZero's), batched over many games.

Each simulation descends one path in every game's tree at once and gathers the
new leaves of all games; the network evaluates them in one batch, then each
path is backed up. The tree holds, per node, its legal moves, their priors (the
softmax of the policy logits over the legal moves) and per child the visit count
``N`` and value sum ``W`` (from the view of the side that chose the move).

Selection maximises ``Q + c_puct * P * sqrt(max(1, sum N)) / (1 + N)`` with
``Q = W / N`` and ``Q = 0`` for an unvisited child. A leaf's value is the value
head's (side to move's view), or for a finished position -1 (checkmated) or 0
(stalemate, insufficient material, threefold repetition, 50-move rule). There is
no exploration noise: the same position gets the same move. The move played is
the root's most visited, ties to the higher prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import chess
import numpy as np

from dataengine import policy

__all__ = ["Evaluate", "puct_search"]

#: boards -> (policy logits (B, 4672), values (B,) from each board's side to move)
Evaluate = Callable[[list[chess.Board]], tuple[np.ndarray, np.ndarray]]


class _Node:
    __slots__ = ("moves", "priors", "visits", "value_sums", "children", "terminal")

    def __init__(self, terminal: float | None = None) -> None:
        self.terminal = terminal
        self.moves: list[chess.Move] = []
        self.priors = self.visits = self.value_sums = np.zeros(0)
        self.children: list[_Node | None] = []

    def expand(self, board: chess.Board, logits: np.ndarray) -> None:
        self.moves = list(board.legal_moves)
        turn = board.turn
        index = np.fromiter((policy.move_to_index(m, turn) for m in self.moves), dtype=np.int64,
                            count=len(self.moves))
        z = logits[index].astype(np.float64)
        p = np.exp(z - z.max())
        self.priors = p / p.sum()
        self.visits = np.zeros(len(self.moves))
        self.value_sums = np.zeros(len(self.moves))
        self.children = [None] * len(self.moves)

    def select(self, cpuct: float) -> int:
        q = self.value_sums / np.maximum(self.visits, 1.0)
        u = cpuct * self.priors * math.sqrt(max(1.0, self.visits.sum())) / (1.0 + self.visits)
        return int(np.argmax(q + u))


def _terminal_value(board: chess.Board) -> float | None:
    """Value of a finished position for its side to move, None while the game goes on."""
    outcome = board.outcome(claim_draw=False)
    if outcome is not None:
        return 0.0 if outcome.winner is None else -1.0
    if board.halfmove_clock >= 100 or board.is_repetition(3):
        return 0.0
    return None


def puct_search(boards: list[chess.Board], evaluate: Evaluate, *, sims: int,
                cpuct: float = 1.5) -> list[chess.Move]:
    """The chosen move of each board (each must have a legal move) after ``sims``
    simulations per board; ``evaluate`` is called once per simulation, with the new
    leaves of all boards. The boards are returned unchanged (moves are pushed and
    popped)."""
    roots = [_Node() for _ in boards]
    logits, _ = evaluate(boards)
    for root, board, row in zip(roots, boards, logits, strict=True):
        root.expand(board, row)
    for _ in range(sims):
        leaves: list[tuple[list, _Node, chess.Board]] = []
        backups: list[tuple[list, float]] = []
        for root, board in zip(roots, boards, strict=True):
            node, path = root, []
            while True:
                a = node.select(cpuct)
                path.append((node, a))
                board.push(node.moves[a])
                child = node.children[a]
                if child is None:
                    child = node.children[a] = _Node(_terminal_value(board))
                    if child.terminal is None:
                        leaves.append((path, child, board.copy(stack=False)))
                        break
                if child.terminal is not None:
                    backups.append((path, child.terminal))
                    break
                node = child
            for _ in path:
                board.pop()
        if leaves:
            logits, values = evaluate([leaf for _, _, leaf in leaves])
            for (path, child, leaf), row, value in zip(leaves, logits, values, strict=True):
                child.expand(leaf, row)
                backups.append((path, float(value)))
        for path, value in backups:
            for node, a in reversed(path):
                value = -value  # the child's side to move is the opponent of the node's
                node.visits[a] += 1.0
                node.value_sums[a] += value
    # most visits; a prior (< 1) only breaks ties between equal integer counts
    return [root.moves[int(np.argmax(root.visits + 0.5 * root.priors))] for root in roots]
