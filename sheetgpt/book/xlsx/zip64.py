"""A zip written front to back: members copied raw or streamed as deflate pieces, zip64 records where needed."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from .deflate import Piece, crc32_combine

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_LOC = struct.Struct("<4sIQI")
_U32 = 0xFFFFFFFF


@dataclass
class _Entry:
    name: bytes
    method: int
    dostime: int
    dosdate: int
    crc: int
    csize: int
    usize: int
    offset: int
    zip64_local: bool


class ZipOut:
    """A zip written front to back; members either copied raw or streamed as deflate pieces."""

    def __init__(self, fp):
        self.fp = fp
        self.entries: list[_Entry] = []

    def _local(self, e: _Entry) -> None:
        extra = b""
        csize, usize = e.csize, e.usize
        if e.zip64_local:
            extra = struct.pack("<HHQQ", 1, 16, e.usize, e.csize)
            csize = usize = _U32
        version = 45 if e.zip64_local else 20
        self.fp.write(
            _LOCAL.pack(
                b"PK\x03\x04", version, 0, e.method, e.dostime, e.dosdate, e.crc, csize, usize, len(e.name), len(extra)
            )
            + e.name
            + extra
        )

    def copy(self, src: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        """Copy a member of src as it is stored (no recompression)."""
        src.fp.seek(info.header_offset)
        head = src.fp.read(30)
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        src.fp.seek(info.header_offset + 30 + name_len + extra_len)
        dostime, dosdate = _dos(info.date_time)
        e = _Entry(
            info.filename.encode(),
            info.compress_type,
            dostime,
            dosdate,
            info.CRC,
            info.compress_size,
            info.file_size,
            self.fp.tell(),
            False,
        )
        e.zip64_local = max(e.csize, e.usize) >= _U32
        self._local(e)
        left = info.compress_size
        while left:
            block = src.fp.read(min(left, 1 << 24))
            if not block:
                raise zipfile.BadZipFile(f"{info.filename}: truncated")
            self.fp.write(block)
            left -= len(block)
        self.entries.append(e)

    def stream(self, name: str, pieces: Iterable[Piece], date_time, size_hint: int) -> None:
        """Write a deflated member from pieces (raw deflate, the last one finishing the stream)."""
        dostime, dosdate = _dos(date_time)
        e = _Entry(
            name.encode(), zipfile.ZIP_DEFLATED, dostime, dosdate, 0, 0, 0, self.fp.tell(), size_hint >= _U32 // 2
        )
        self._local(e)
        for p in pieces:
            self.fp.write(p.data)
            e.crc = crc32_combine(e.crc, p.crc, p.size)
            e.csize += len(p.data)
            e.usize += p.size
        if max(e.csize, e.usize) >= _U32 and not e.zip64_local:
            raise ValueError(f"{name}: {e.usize} bytes, more than the size hint allowed for")
        end = self.fp.tell()
        self.fp.seek(e.offset)
        self._local(e)  # now with the CRC and sizes
        self.fp.seek(end)
        self.entries.append(e)

    def close(self) -> None:
        start = self.fp.tell()
        for e in self.entries:
            extra_vals = []
            usize, csize, offset = e.usize, e.csize, e.offset
            if usize >= _U32:
                extra_vals.append(usize)
                usize = _U32
            if csize >= _U32:
                extra_vals.append(csize)
                csize = _U32
            if offset >= _U32:
                extra_vals.append(offset)
                offset = _U32
            extra = struct.pack(f"<HH{len(extra_vals)}Q", 1, 8 * len(extra_vals), *extra_vals) if extra_vals else b""
            version = 45 if extra_vals or e.zip64_local else 20
            self.fp.write(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    version,
                    version,
                    0,
                    e.method,
                    e.dostime,
                    e.dosdate,
                    e.crc,
                    csize,
                    usize,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + e.name
                + extra
            )
        end = self.fp.tell()
        size, n = end - start, len(self.entries)
        if start >= _U32 or size >= _U32 or n >= 0xFFFF:
            self.fp.write(_ZIP64_EOCD.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, start))
            self.fp.write(_ZIP64_LOC.pack(b"PK\x06\x07", 0, end, 1))
        self.fp.write(
            _EOCD.pack(b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(size, _U32), min(start, _U32), 0)
        )


def _dos(date_time) -> tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((max(y, 1980) - 1980) << 9) | (mo << 5) | d
