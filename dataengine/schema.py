"""The shard format: one module that the writer, the reader, the inspection tools and
the trainer all import.

A shard is a WebDataset ``.tar``. Each tar member is one *block*: up to
``BLOCK_RECORDS`` consecutive records (in game order, which compresses 3x better
than shuffled records) stored as columns. A member is named ``<key>.cols.zst``;
its bytes are one zstd frame whose payload is::

    uint32 little-endian header length H | H bytes of JSON header | column bytes

The JSON header holds the format and label-spec versions, the record count
``n``, the column table (name, dtype, per-record shape, byte offset) and the
block's table of distinct puzzle-theme strings. Each column is stored
*transposed* (feature-major: all records' plane 0, then all records' plane 1, ...)
so that the slowly changing sequences along a game sit next to each other, and
*byte-shuffled* (for each feature: all records' byte 0, then all byte 1, ...), which
puts the mostly-zero high bytes of sparse bitboards together: on the sample data
that takes ~21.6 B/record where unshuffled columns take ~24.4.
Everything is plain numbers and JSON: no pickle anywhere.

Records are in *canonical orientation* (LABELS.md section 1): the side to move is
White; positions with Black to move are stored mirrored. Every value that has a
point of view (result, teacher eval) is from the side to move's view.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numba
import numpy as np
import zstandard

from labelers.mates import MAX_MATE_MOVES
from labelers.stalemate import MAX_STALEMATE_MOVES

FORMAT_VERSION = 3  # 2: the stalemate_moves column; 3: mate_moves
LABEL_SPEC_VERSION = 1  # the version of labelers/LABELS.md the masks follow

MEMBER_EXT = "cols.zst"
BLOCK_RECORDS = 4096
ZSTD_LEVEL = 3  # 9 takes ~7% fewer bytes and builds ~25% slower (README, Benchmarks)

NO_MOVE = 0xFFFF  # the `move` / `teacher_move` value when no move is known
TEACHER_CP_LIMIT = 15_000  # centipawn evals are clamped to +-this

# `flags` bits
HAS_MOVE = 1 << 0
HAS_RESULT = 1 << 1
HAS_TEACHER_EVAL = 1 << 2
HAS_TEACHER_MOVE = 1 << 3
MIRRORED = 1 << 4  # the real side to move was Black: the stored position is board.mirror()

# `castling` bits, canonical: "us" is the side to move
CASTLE_US_KING = 1 << 0
CASTLE_US_QUEEN = 1 << 1
CASTLE_THEM_KING = 1 << 2
CASTLE_THEM_QUEEN = 1 << 3

SOURCES = ("pgn", "puzzle", "opening", "fen")
BUCKETS = ("openings", "king_safety", "endgames", "tactical", "positional")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # numpy dtype string, little-endian
    shape: tuple[int, ...]  # per-record shape; () for a scalar
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("planes", "<u8", (12,), "piece bitboards P N B R Q K (us), then p n b r q k (them)"),
    Column("labels", "<u8", (20,), "the 20 SSL masks in labelers.MASK_NAMES order"),
    Column("stalemate_moves", "<u2", (MAX_STALEMATE_MOVES,),
           "policy indices of the legal moves that stalemate the opponent, ascending, "
           "NO_MOVE after them (labelers.stalemate)"),
    Column("mate_moves", "<u2", (MAX_MATE_MOVES,),
           "policy indices of the legal moves that checkmate the opponent, ascending, "
           "NO_MOVE after them (labelers.mates)"),
    Column("castling", "u1", (), "CASTLE_* bits"),
    Column("ep_file", "i1", (), "file 0-7 of a legal en-passant capture square, -1 none"),
    Column("halfmove", "<u2", (), "halfmove clock"),
    Column("ply", "<u2", (), "ply of the position in its game/line (0 = first position)"),
    Column("move", "<u2", (), "target move as a policy index (dataengine.policy), NO_MOVE none"),
    Column("result", "i1", (), "game result for the side to move: 1 win, 0 draw, -1 loss"),
    Column("teacher_cp", "<i2", (), "engine eval, centipawns, side to move's view"),
    Column("teacher_mate", "<i2", (), "engine mate distance in moves, side to move's view, 0 none"),
    Column("teacher_move", "<u2", (), "engine best move as a policy index, NO_MOVE none"),
    Column("flags", "u1", (), "HAS_* presence bits"),
    Column("source", "u1", (), "index into SOURCES"),
    Column("file_id", "<u2", (), "index into the manifest's input files"),
    Column("game_id", "<u8", (), "64-bit hash of the game's identity (splits never cut a game)"),
    Column("bucket", "u1", (), "index into BUCKETS"),
    Column("rating", "<u2", (), "puzzle rating, 0 none"),
    Column("themes_id", "<u2", (), "index into the block header's `themes` table"),
)
COLUMN_BY_NAME = {c.name: c for c in COLUMNS}

Block = dict[str, np.ndarray]
"""A decoded block: column name -> array of shape (n, *column.shape), plus
``themes``: an object-free numpy array of str (dtype ``<U...``) of length n."""


class ShardFormatError(ValueError):
    """A block that cannot be decoded: corrupt, truncated, or of another version."""


def empty_columns(n: int) -> Block:
    """Zeroed columns for n records (sentinels where zero would mean something)."""
    block = {c.name: np.zeros((n, *c.shape), dtype=c.dtype) for c in COLUMNS}
    block["move"][:] = NO_MOVE
    block["teacher_move"][:] = NO_MOVE
    block["stalemate_moves"][:] = NO_MOVE
    block["mate_moves"][:] = NO_MOVE
    block["ep_file"][:] = -1
    return block


def check_columns(block: Block) -> int:
    """Validate a block's columns; return its record count."""
    n = None
    for c in COLUMNS:
        if c.name not in block:
            raise ValueError(f"block is missing column {c.name!r}")
        a = block[c.name]
        if a.dtype != np.dtype(c.dtype) or a.shape[1:] != c.shape:
            raise ValueError(
                f"column {c.name!r} must be {c.dtype} of shape (n, {c.shape}), "
                f"got {a.dtype} {a.shape}"
            )
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ValueError(f"column {c.name!r} has {a.shape[0]} records, expected {n}")
    themes = block.get("themes")
    if themes is None or len(themes) != n:
        raise ValueError("block needs `themes` with one string per record")
    return int(n)


def encode_block(block: Block, level: int = ZSTD_LEVEL, omit: tuple[str, ...] = ()) -> bytes:
    """Columns -> the bytes of one tar member (deterministic). `omit`: columns left out
    (the build's temporary parts leave out the labels, computed again from the planes);
    such a block decodes only with the same `omit`."""
    n = check_columns(block)
    themes = np.asarray(block["themes"], dtype=str)
    if n and (themes == themes[0]).all():  # one theme string (games: all ""): no sort
        table, themes_id = themes[:1], np.zeros(n, dtype=np.int64)
    else:
        table, themes_id = np.unique(themes, return_inverse=True)
    if len(table) > 0xFFFF:
        raise ValueError(f"a block may hold at most 65535 distinct theme strings, got {len(table)}")
    arrays, columns, offset = [], [], 0
    for c in COLUMNS:
        if c.name in omit:
            continue
        a = themes_id.astype(c.dtype) if c.name == "themes_id" else block[c.name]
        a = np.ascontiguousarray(a).reshape(n, int(np.prod(c.shape, dtype=np.int64)))
        columns.append([c.name, c.dtype, list(c.shape), offset, a.nbytes])
        arrays.append(a)
        offset += a.nbytes
    header = {
        "format_version": FORMAT_VERSION,
        "label_spec_version": LABEL_SPEC_VERSION,
        "n": n,
        "columns": columns,
        "themes": [str(t) for t in table],
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    # the payload in one buffer, each column shuffled into its place (no copy of the
    # columns joined, and numpy's large buffers get transparent huge pages where the
    # kernel offers them: fewer page faults than fresh bytes objects)
    body = 4 + len(head)
    payload = np.empty(body + offset, dtype=np.uint8)
    payload[:body] = np.frombuffer(struct.pack("<I", len(head)) + head, dtype=np.uint8)
    for a, (_, _, _, at, size) in zip(arrays, columns, strict=True):
        _shuffle_into(a, payload[body + at : body + at + size])
    return zstandard.ZstdCompressor(
        level=level, write_content_size=True, write_checksum=True
    ).compress(payload)


_U64 = np.uint64
_BYTE = _U64(0xFF)


@numba.njit(cache=True, nogil=True)
def _transpose8_kernel(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) uint8 matrix, row-major, with both multiples of 8 -> its transpose,
    row-major: 8 x 8 tiles, each read as eight uint64 words of its rows and written as
    eight words of its columns."""
    dst = np.empty(rows * cols, dtype=np.uint8)
    s, d = src.view(np.uint64), dst.view(np.uint64)
    cw, rw = cols // 8, rows // 8
    for rb in range(rw):
        i = rb * 8 * cw
        for cb in range(cw):
            x0, x1, x2, x3 = s[i + cb], s[i + cw + cb], s[i + 2 * cw + cb], s[i + 3 * cw + cb]
            x4, x5, x6, x7 = (s[i + 4 * cw + cb], s[i + 5 * cw + cb], s[i + 6 * cw + cb],
                              s[i + 7 * cw + cb])
            for b in range(8):
                sh = _U64(8 * b)
                d[(cb * 8 + b) * rw + rb] = (
                    (x0 >> sh) & _BYTE | ((x1 >> sh) & _BYTE) << _U64(8)
                    | ((x2 >> sh) & _BYTE) << _U64(16) | ((x3 >> sh) & _BYTE) << _U64(24)
                    | ((x4 >> sh) & _BYTE) << _U64(32) | ((x5 >> sh) & _BYTE) << _U64(40)
                    | ((x6 >> sh) & _BYTE) << _U64(48) | ((x7 >> sh) & _BYTE) << _U64(56))
    return dst


@numba.njit(cache=True, nogil=True)
def _transpose_rows8_kernel(src: np.ndarray, rows: int, cols: int, dst: np.ndarray) -> None:
    """A (rows, cols) uint8 matrix, row-major -> its transpose, row-major, into `dst`
    (any length of rows): eight rows at a time, each column's eight bytes of them
    written together, then the last rows % 8 rows one byte at a time."""
    whole = rows - rows % 8
    for r in range(0, whole, 8):
        for c in range(cols):
            d, s = c * rows + r, r * cols + c
            dst[d] = src[s]
            dst[d + 1] = src[s + cols]
            dst[d + 2] = src[s + 2 * cols]
            dst[d + 3] = src[s + 3 * cols]
            dst[d + 4] = src[s + 4 * cols]
            dst[d + 5] = src[s + 5 * cols]
            dst[d + 6] = src[s + 6 * cols]
            dst[d + 7] = src[s + 7 * cols]
    for r in range(whole, rows):
        for c in range(cols):
            dst[c * rows + r] = src[r * cols + c]


def _transpose_into(src: np.ndarray, rows: int, cols: int, dst: np.ndarray) -> None:
    """The transpose of a (rows, cols) uint8 matrix given row-major, row-major, into the
    1-D `dst`. The 8 x 8 tile kernel where both sides are multiples of 8 (a block's
    4,096 records); else the eight-row kernel, except for a many-row matrix of narrow
    rows, which numpy's strided copy transposes faster (measured on a piece's 175,295
    records: planes, 96 bytes a row, 19.5 -> 9.1 ms with the eight-row kernel; 16-byte
    rows 0.78 ms with numpy against 1.23)."""
    if rows % 8 == 0 and cols % 8 == 0 and rows and cols:
        dst[:] = _transpose8_kernel(src, rows, cols)
    elif cols <= 16 < rows:
        np.copyto(dst.reshape(cols, rows), src.reshape(rows, cols).T)
    else:
        _transpose_rows8_kernel(src, rows, cols, dst)


def _transpose_bytes(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The transpose of a (rows, cols) uint8 matrix given row-major, row-major (1-D): a
    new, writable array (`src` may be a read-only buffer's)."""
    if rows % 8 == 0 and cols % 8 == 0 and rows and cols:
        return _transpose8_kernel(src, rows, cols)
    dst = np.empty(rows * cols, dtype=np.uint8)
    _transpose_into(src, rows, cols, dst)
    return dst


def _shuffle_into(a: np.ndarray, dst: np.ndarray) -> None:
    """(n, width) -> its bytes ordered (feature, byte, record), into the uint8 `dst`."""
    n, width = a.shape
    src = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
    _transpose_into(src, n, width * a.dtype.itemsize, dst)


def _unshuffle(buf, dtype: np.dtype, n: int, width: int) -> np.ndarray:
    src = np.frombuffer(buf, dtype=np.uint8)
    return _transpose_bytes(src, width * dtype.itemsize, n).view(dtype).reshape(n, width)


def _columns(header: dict, body: memoryview, name: str) -> Block:
    n = header["n"]
    block: Block = {}
    for cname, dtype, shape, off, size in header["columns"]:
        width = int(np.prod(shape)) if shape else 1
        if off + size > len(body) or size != n * width * np.dtype(dtype).itemsize:
            raise ShardFormatError(f"{name}: column {cname!r} is truncated")
        block[cname] = _unshuffle(body[off : off + size], np.dtype(dtype), n, width).reshape(
            n, *shape
        )
    return block


def decode_block(data: bytes, name: str = "<block>", omit: tuple[str, ...] = ()) -> Block:
    """The bytes of one tar member -> columns (all but `omit`, which `encode_block` was
    told to leave out). Raises ShardFormatError naming `name`."""
    try:
        payload = zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as e:
        raise ShardFormatError(f"{name}: not a valid zstd block ({e})") from None
    if len(payload) < 4:
        raise ShardFormatError(f"{name}: block too short")
    (hlen,) = struct.unpack_from("<I", payload)
    try:
        header = json.loads(payload[4 : 4 + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardFormatError(f"{name}: bad block header ({e})") from None
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ShardFormatError(
            f"{name}: format version {version!r}, this reader reads version {FORMAT_VERSION}"
        )
    if header.get("label_spec_version") != LABEL_SPEC_VERSION:
        raise ShardFormatError(
            f"{name}: label spec version {header.get('label_spec_version')!r}, "
            f"expected {LABEL_SPEC_VERSION}"
        )
    try:
        block = _columns(header, memoryview(payload)[4 + hlen :], name)
    except (KeyError, TypeError, ValueError) as e:  # a header that parses but is wrong
        if isinstance(e, ShardFormatError):
            raise
        raise ShardFormatError(f"{name}: bad block header ({e!r})") from None
    missing = [c.name for c in COLUMNS if c.name not in block and c.name not in omit]
    if missing:
        raise ShardFormatError(f"{name}: missing columns {missing}")
    table = np.asarray(header.get("themes") or [""], dtype=str)
    if len(block["themes_id"]) and int(block["themes_id"].max()) >= len(table):
        raise ShardFormatError(f"{name}: themes_id out of range")
    block["themes"] = table[block["themes_id"]]
    return block


def decode_sample(sample: dict) -> Block:
    """WebDataset sample (dict with ``__key__``, ``__url__``, ``cols.zst``) -> Block.

    Use with stock webdataset: ``wds.WebDataset(urls).map(decode_sample)``.
    """
    where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    if MEMBER_EXT not in sample:
        raise ShardFormatError(f"{where}: no {MEMBER_EXT!r} member (found {sorted(sample)})")
    return decode_block(sample[MEMBER_EXT], where)


def concat_blocks(blocks: list[Block]) -> Block:
    """Concatenate blocks record-wise (columns and themes)."""
    names = [c.name for c in COLUMNS] + ["themes"]
    return {k: np.concatenate([b[k] for b in blocks]) for k in names}


def take(block: Block, index: np.ndarray | slice) -> Block:
    """Select records from a block."""
    return {k: v[index] for k, v in block.items()}


def block_len(block: Block) -> int:
    return len(block["planes"])
