"""``show``: one record as a board, its fields and its masks (real orientation)."""

from __future__ import annotations

from dataclasses import dataclass

import chess
import chess.svg
import numpy as np

from dataengine import schema, views
from dataengine.fileio import atomic_write
from dataengine.inspect.records import RESULT_TEXT, move_of, name_of, real_labels
from dataengine.inspect.shards import BlockRef, InspectError, Shards, iter_blocks
from labelers import MASK_NAMES

GRIDS_PER_ROW = 4

# One colour per mask (the order of MASK_NAMES); drawn half transparent.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
    "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8",
    "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#a9a9a9",
)
MASK_COLOUR = dict(zip(MASK_NAMES, PALETTE, strict=True))
FILL_ALPHA = "80"


@dataclass
class Found:
    ref: BlockRef
    block: schema.Block
    i: int  # record within the block

    @property
    def index(self) -> int:
        return self.ref.start + self.i


def find(
    shards: Shards, split: str, index: int, fen_contains: str | None, bucket: str | None
) -> Found:
    """The index-th record of the split, or the index-th one matching the filters."""
    if index < 0:
        raise InspectError(f"--index must be >= 0, got {index}")
    if bucket is not None and bucket not in schema.BUCKETS:
        raise InspectError(f"unknown bucket {bucket!r} (buckets: {', '.join(schema.BUCKETS)})")
    filtered = fen_contains is not None or bucket is not None
    if not filtered:
        total = shards.records(split)
        if index >= total:
            raise InspectError(f"--index {index} out of range: {split} has {total:,} records")
        for ref, block in iter_blocks(shards, split, skip_to=index):
            n = schema.block_len(block)
            if ref.start + n > index:
                return Found(ref, block, index - ref.start)
        raise InspectError(f"--index {index}: {split} ended early (run `verify`)")
    matches = 0
    for ref, block in iter_blocks(shards, split, progress="search"):
        candidates = np.arange(schema.block_len(block))
        if bucket is not None:
            candidates = candidates[block["bucket"] == schema.BUCKETS.index(bucket)]
        for i in candidates:
            if fen_contains is not None and fen_contains not in views.real_board(block, i).fen():
                continue
            if matches == index:
                return Found(ref, block, int(i))
            matches += 1
    conditions = []
    if bucket is not None:
        conditions.append(f"bucket {bucket!r}")
    if fen_contains is not None:
        conditions.append(f"a FEN containing {fen_contains!r}")
    raise InspectError(f"{matches} {split} records with {' and '.join(conditions)}; "
                       f"none at --index {index}")


def render(shards: Shards, found: Found, masks: list[str] | None) -> tuple[str, list[str]]:
    """The text of ``show`` and the masks it shows."""
    block, i = found.block, found.i
    board = views.real_board(block, i)
    mirrored = views.is_mirrored(block, i)
    real = real_labels(schema.take(block, slice(i, i + 1)))[0]
    if masks is None:
        masks = [name for name, m in zip(MASK_NAMES, real, strict=True) if m]

    move_text = "none"
    try:
        move = move_of(int(block["move"][i]), board)
    except ValueError as e:
        move, move_text = None, f"undecodable ({e})"
    if move is not None:
        san = board.san(move) if board.is_legal(move) else "ILLEGAL"
        move_text = f"{san} ({move.uci()})"
    ev = views.eval_white(block, i)
    eval_text = "none" if ev is None else (
        f"mate in {ev[1]} (White's view)" if ev[1] else f"{ev[0]:+d} cp (White's view)"
    )
    result = views.result_white(block, i)
    themes = str(block["themes"][i])
    source = name_of(schema.SOURCES, block["source"][i])
    bucket = name_of(schema.BUCKETS, block["bucket"][i])
    file_id = int(block["file_id"][i])

    lines = [
        f"{found.ref.split} record {found.index:,} "
        f"({found.ref.name}, record {i} of the block)",
        "",
        *_board_lines(board),
        "",
        f"FEN      {board.fen()}",
        f"to move  {'Black (stored mirrored)' if mirrored else 'White'}",
        f"move     {move_text}",
        f"result   {RESULT_TEXT.get(result, 'unknown')} (White's view)",
        f"eval     {eval_text}",
        f"bucket   {bucket}",
        f"source   {source}: {shards.input_path(file_id) or f'<file {file_id}>'}",
        f"game     {int(block['game_id'][i]):016x}, ply {int(block['ply'][i])}",
    ]
    if block["rating"][i] or themes:
        lines.append(f"puzzle   rating {int(block['rating'][i]) or '-'}; themes: {themes or '-'}")
    if not board.is_valid():
        lines.append(f"WARNING  not a valid position: {board.status()!r}")
    lines.append("")
    orientation = (
        "REAL orientation, White at the bottom: Black is to move, so the stored "
        "(canonical, mirrored) masks are flipped back; 'us' = Black"
        if mirrored else
        "REAL orientation, White at the bottom (= canonical: White is to move); 'us' = White"
    )
    if not masks:
        lines.append(f"masks: all {len(MASK_NAMES)} empty")
    else:
        lines.append(f"masks ({orientation}):")
        grids = [(name, int(real[MASK_NAMES.index(name)])) for name in masks]
        for k in range(0, len(grids), GRIDS_PER_ROW):
            lines.append("")
            lines += _side_by_side([_mask_lines(n, m) for n, m in grids[k : k + GRIDS_PER_ROW]])
    return "\n".join(lines), masks


def _board_lines(board: chess.Board) -> list[str]:
    rows = []
    for rank in range(7, -1, -1):
        cells = []
        for file in range(8):
            piece = board.piece_at(chess.square(file, rank))
            cells.append(piece.unicode_symbol() if piece else "·")
        rows.append(f"{rank + 1} {' '.join(cells)}")
    return [*rows, "  a b c d e f g h"]


def mask_grid(mask: int) -> list[str]:
    """8 lines ``"8 . x . . . . . ."`` (rank 8 first) of a mask's squares."""
    return [
        f"{rank + 1} " + " ".join(
            "x" if mask >> chess.square(file, rank) & 1 else "." for file in range(8)
        )
        for rank in range(7, -1, -1)
    ]


def _mask_lines(name: str, mask: int) -> list[str]:
    return [f"{name} ({chess.popcount(mask)})", *mask_grid(mask), "  a b c d e f g h"]


def _side_by_side(columns: list[list[str]]) -> list[str]:
    width = max(len(line) for col in columns for line in col) + 3
    return [
        "".join(col[r].ljust(width) for col in columns).rstrip() for r in range(len(columns[0]))
    ]


def write_svg(path: str, found: Found, masks: list[str]) -> None:
    """The real board with each mask's squares filled in its colour (first listed wins)."""
    block, i = found.block, found.i
    board = views.real_board(block, i)
    real = real_labels(schema.take(block, slice(i, i + 1)))[0]
    fill: dict[int, str] = {}
    for name in reversed(masks):  # so that the first listed mask wins a shared square
        for sq in chess.scan_forward(int(real[MASK_NAMES.index(name)])):
            fill[sq] = MASK_COLOUR[name] + FILL_ALPHA
    arrows = []
    try:
        move = move_of(int(block["move"][i]), board)
    except ValueError:
        move = None
    if move is not None:
        arrows.append(chess.svg.Arrow(move.from_square, move.to_square))
    size, line = 400, 22
    inner = chess.svg.board(board, fill=fill, arrows=arrows, size=size)
    legend = [
        f'<text x="{size + 16}" y="24" font-family="sans-serif" font-size="14">'
        f"{found.ref.split} record {found.index} (real orientation)</text>"
    ]
    for k, name in enumerate(masks):
        y = 40 + k * line
        legend.append(
            f'<rect x="{size + 16}" y="{y}" width="16" height="16" fill="{MASK_COLOUR[name]}" '
            f'opacity="0.5" stroke="#000" stroke-width="0.5"/>'
            f'<text x="{size + 40}" y="{y + 13}" font-family="sans-serif" font-size="13">'
            f"{name}</text>"
        )
    height = max(size, 48 + len(masks) * line)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 260}" height="{height}" '
        f'viewBox="0 0 {size + 260} {height}">{inner}{"".join(legend)}</svg>\n'
    )
    atomic_write(path, svg.encode())
