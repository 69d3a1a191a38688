"""Numbers as worksheet XML text: fixed-width cells built with array operations, each proved exact.

xlsxwriter spends about 10 µs of Python per cell; GPT-2 small has 124 M weights. Here a
weight tab's XML is built with array operations, about 80 ns a cell:

* Every cell has the same width, 28 bytes: ``<c><v>0188595336E-10</v></c>`` (a leading
  ``0`` or ``-``, the 9-digit mantissa, a 2-digit exponent). Fixed width means no per-cell
  Python and no compaction: the cells of a block are a ``[n, 7]`` uint32 matrix of which
  four columns are computed (digits by SWAR arithmetic) and three are constant.
* Each number's text is *proved* to read back as exactly the float64 given: the mantissa m
  and exponent k satisfy ``m / 10**k == |x|`` in IEEE arithmetic (an exact power of ten and
  one correctly rounded division, which is what a decimal parser computes). Values that are
  not the double of a 9-digit decimal, or are out of range, take Python's shortest
  round-trip ``repr`` instead; zero is ``0``.
* Every cell carries its ``r`` address (``<c r="AB12"><v>..</v></c>``), in every tab of every
  book (full-size wte included): the attribute is optional in ECMA-376 §18.3.1.4, but Gnumeric
  1.12.55 drops cells without it and IronCalc refuses the book ("Missing "r" XML attribute"). Rows whose numbers have
  the same digit count share one byte layout: a template row (column letters in place) is
  copied once per row, then the row number and the numbers are written into it at
  precomputed offsets, all with array operations (``rows_xml``).
"""

from __future__ import annotations

import functools

import numpy as np

CELL = b"<c><v>0000000000E-00</v></c>"  # the template; 28 bytes = 7 uint32 words
CELL_BYTES = len(CELL)
NUMBER_WIDTH = 14  # the text between <v> and </v>
_TEMPLATE = np.frombuffer(CELL, "<u4")
_P10 = 10.0 ** np.arange(0, 23)  # exact powers of ten
_MAGIC = np.float64(6755399441055744.0)  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_MAGIC_BITS = _MAGIC.view(np.int64)


def _word(b: bytes) -> np.uint32:
    return np.frombuffer(b, "<u4")[0]


_EXP = np.array([_word(b"E-" + f"{i:02d}".encode()) for i in range(23)], np.uint32)
_POS, _NEG = _word(b"v>00"), _word(b"v>-0")


def _digits8(v: np.ndarray) -> np.ndarray:
    """v < 10**8 (uint64) -> uint64 holding its 8 ASCII digits, most significant in the lowest byte."""
    hi = (v * 109951163) >> 40  # v // 10000 (exact for v < 10**8)
    x = hi | ((v - hi * 10000) << 32)  # two 4-digit lanes
    h = ((x * 5243) >> 19) & 0x0000007F0000007F  # lane // 100
    y = h | ((x - h * 100) << 16)  # four 2-digit lanes
    t = ((y * 103) >> 10) & 0x000F000F000F000F  # lane // 10
    return t | ((y - t * 10) << 8) | 0x3030303030303030


def mantissa_exponent(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, k, ok): |x| == m / 10**k exactly as a decimal parser reads "mE-k", 10**8 <= m < 10**9.

    ``ok`` is False where that does not hold (zero, |x| >= 1e9 or below about 1e-14, non-finite,
    or a double that is not the nearest to any 9-digit decimal).
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.floor(np.log10(a))
        k = np.where(np.isfinite(e), 8 - e, 0).astype(np.int64)
    np.clip(k, 0, 22, out=k)
    p = _P10[k]
    m = (a * p + _MAGIC).view(np.int64) - _MAGIC_BITS
    big = np.flatnonzero(m >= 1_000_000_000)  # log10 rounded down near a power of ten
    if big.size:
        k[big] = np.maximum(k[big] - 1, 0)
        p[big] = _P10[k[big]]
        m[big] = (a[big] * p[big] + _MAGIC).view(np.int64) - _MAGIC_BITS
    with np.errstate(invalid="ignore"):
        ok = (m / p == a) & (m >= 100_000_000) & (m < 1_000_000_000)
    return m, k, ok


def number_text(v: float) -> bytes:
    """Exact text of one number for the slow path: '0' or Python's shortest round-trip repr."""
    v = float(v)
    if v == 0:
        return b"0"
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"cannot write {v!r} as a worksheet number")
    text = repr(v)
    return (text[:-2] if text.endswith(".0") else text).encode()


def _padded(text: bytes) -> bytes | None:
    """text widened to NUMBER_WIDTH with leading zeros after the sign, or None if too long."""
    if len(text) > NUMBER_WIDTH:
        return None
    sign, digits = (b"-", text[1:]) if text.startswith(b"-") else (b"", text)
    return sign + b"0" * (NUMBER_WIDTH - len(text)) + digits


def number_cells(values: np.ndarray) -> bytes | None:
    """The <c><v>..</v></c> XML of values (row-major), CELL_BYTES per cell; None if a value needs more."""
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    m, k, ok = mantissa_exponent(x)
    out = np.empty((x.size, 7), np.uint32)
    out[:] = _TEMPLATE
    mu = m.view(np.uint64)
    d0 = (mu * 1441151881) >> 57  # m // 10**8 (exact for m < 2**30)
    digits = _digits8(mu - d0 * 100_000_000).view(np.uint32).reshape(-1, 2)
    out[:, 1] = np.where(x < 0, _NEG, _POS) | ((d0.astype(np.uint32) + 48) << 24)
    out[:, 2:4] = digits
    out[:, 4] = _EXP[k]
    buf = out.view(np.uint8).reshape(-1, CELL_BYTES)
    for i in np.flatnonzero(~ok):  # rare: zero, huge, tiny, or not a 9-digit decimal's double
        text = _padded(number_text(x[i]))
        if text is None:
            return None
        buf[i, 6:20] = np.frombuffer(text, np.uint8)
    return buf.tobytes()


def _pad4(head: bytes, at: int) -> bytes:
    """head with spaces inserted at byte ``at`` (where XML allows them) up to a multiple of 4 bytes."""
    return head[:at] + b" " * (-len(head) % 4) + head[at:]


@functools.lru_cache(maxsize=64)
def _row_layout(cols: int, nd: int):
    """The word layout of a row of ``cols`` cells from column A whose row number has ``nd`` digits.

    A cell is ``<c   r="AB12" ><v>##############</v></c>``: a head ``<c r="`` + letters +
    digits (spaces after ``<c`` make it whole 4-byte words) and the 7 words of ``CELL`` with
    ``<c><`` replaced by ``" ><``. The row is ``<row  r="12">`` (likewise padded), its cells,
    ``</row  >``. Returns (template words, row tag words' digit mask, groups): each group is the
    columns with as many letters, (first column, end column, word offset, head words, letter
    words [n, head words], digit mask [head words] as bytes positions)."""
    from ... import a1

    tag = _pad4(b'<row r="' + b"0" * nd + b'">', 4)
    words = [np.frombuffer(tag, "<u4")]
    groups, size, c = [], len(tag) // 4, 0
    tail = np.frombuffer(b'" ><' + CELL[4:], "<u4")
    while c < cols:
        n_letters = len(a1.col_name(c))
        end = min(cols, {1: 26, 2: 702, 3: 18278}[n_letters])
        heads = [_pad4(b'<c r="' + a1.col_name(k).encode() + b"\0" * nd, 2) for k in range(c, end)]
        hw = len(heads[0]) // 4
        letters = np.frombuffer(b"".join(heads), "<u4").reshape(end - c, hw)
        groups.append((c, end, size, hw, letters, len(heads[0]) - nd))
        cell_words = np.concatenate([letters, np.broadcast_to(tail, (end - c, 7))], axis=1)
        words.append(cell_words.ravel())
        size += (end - c) * (hw + 7)
        c = end
    words.append(np.frombuffer(b"</row  >", "<u4"))
    return np.concatenate(words), len(tag) - 2 - nd, groups


def _row_digits(first: int, n: int, nd: int) -> np.ndarray:
    """[n, nd] ASCII digits of the row numbers first .. first + n - 1 (all of nd digits)."""
    rows = np.arange(first, first + n, dtype=np.int64)[:, None]
    return (rows // 10 ** np.arange(nd - 1, -1, -1) % 10 + 48).astype(np.uint8)


ADDRESS_BYTES = 16  # at most, per cell: <c r=" + 3 letters + 7 digits, padded to whole words


def rows_xml(values: np.ndarray, row0: int) -> bytes:
    """<row r=..>..</row> for a [rows, cols] block whose first row is sheet row row0 (0-based),
    every cell with its address (IronCalc refuses a cell without one; Gnumeric 1.12.55 drops it)."""
    from ... import a1

    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    cells = number_cells(values)
    if cells is None:  # a value whose shortest text is longer than NUMBER_WIDTH: variable width
        letters = [a1.col_name(c) for c in range(cols)]
        return b"".join(
            b'<row r="%d">' % (row0 + i + 1)
            + b"".join(
                b'<c r="%s%d"><v>%s</v></c>' % (letters[c].encode(), row0 + i + 1, number_text(v))
                for c, v in enumerate(values[i].tolist())
            )
            + b"</row>"
            for i in range(rows)
        )
    words = np.frombuffer(cells, "<u4").reshape(rows, cols, 7)
    parts = []
    i = 0
    while i < rows:  # runs of rows whose numbers have the same digit count share one layout
        first = row0 + i + 1
        nd = len(str(first))
        n = min(rows - i, 10**nd - first)
        template, tag_at, groups = _row_layout(cols, nd)
        out = np.empty((n, template.size), "<u4")
        out[:] = template
        digits = _row_digits(first, n, nd)
        out.view(np.uint8)[:, tag_at : tag_at + nd] = digits
        for c0, c1, at, hw, letters, digit_at in groups:
            head = np.zeros((n, hw * 4), np.uint8)
            head[:, digit_at : digit_at + nd] = digits
            seg = out[:, at : at + (c1 - c0) * (hw + 7)].reshape(n, c1 - c0, hw + 7)
            seg[:, :, :hw] = letters[None, :, :] | head.view("<u4")[:, None, :]
            seg[:, :, hw + 1 : hw + 5] = words[i : i + n, c0:c1, 1:5]
        parts.append(out)  # joined as buffers: one copy, not two
        i += n
    return b"".join(parts)
