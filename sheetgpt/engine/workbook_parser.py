"""The workbook part and its relationships: which sheets there are, in order, where each is stored,
the defined names and the shared strings; then every wanted sheet read (``read_workbook``)."""

from __future__ import annotations

import posixpath
import re

from ..errors import WorkbookError
from . import pool
from .book import Book
from .markup import RELATIONSHIPS, SPREADSHEETML, Namespaces, unescape, xml_attrs, xml_start
from .shared_strings import read_shared_strings
from .sheet_parser import read_sheet
from .zip_limits import open_zip, read_small

_SHEET_TAG_RE = re.compile(rb"<([\w.-]+:)?sheet\b([^>]*)/?>")
_DEFNAME_RE = re.compile(rb"<(?:\w+:)?definedName\b([^>]*)>(.*?)</(?:\w+:)?definedName>", re.S)
_REL_RE = re.compile(rb"<(?:\w+:)?Relationship\b([^>]*)/?>")


def resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


def read_workbook(path, sheets=None, progress=None) -> Book:
    """Read ``path`` (an .xlsx). ``sheets``: names to read (default all); others are
    listed in ``sheet_names`` but absent from ``sheets``. Big books are read by worker
    processes, a sheet at a time. ``progress(done, total)`` counts decompressed bytes."""
    zf = open_zip(path)
    with zf:
        names = set(zf.namelist())
        wb_part = "xl/workbook.xml"
        if "[Content_Types].xml" in names:
            ct = read_small(zf, "[Content_Types].xml", 16 << 20)
            m = re.search(
                rb'PartName="/?([^"]+)"\s+ContentType="application/vnd\.(?:ms-excel\.sheet\.macroEnabled\.main\+xml|openxmlformats-officedocument\.spreadsheetml\.sheet\.main\+xml)"',
                ct,
            )
            if m:
                wb_part = m.group(1).decode()
        if wb_part not in names:
            raise WorkbookError(f"{path}: not an .xlsx workbook (no {wb_part})")
        wb = read_small(zf, wb_part, 64 << 20)
        base = posixpath.dirname(wb_part)
        rels_part = posixpath.join(base, "_rels", posixpath.basename(wb_part) + ".rels")
        rels: dict[bytes, tuple[bytes, bytes]] = {}
        if rels_part in names:
            for attrs in _REL_RE.findall(read_small(zf, rels_part, 16 << 20)):
                a = xml_attrs(attrs)
                rels[a.get(b"Id", b"")] = (a.get(b"Target", b""), a.get(b"Type", b""))
        sst_part = None
        for target, typ in rels.values():
            if typ.endswith(b"/sharedStrings"):
                sst_part = resolve(base, unescape(target))
        ns = Namespaces(wb, xml_start(wb, f"{path}: {wb_part}"), f"{path}: {wb_part}")
        ns.require_spreadsheetml(f"{path}: {wb_part}")
        main = ns.bound_to(SPREADSHEETML)
        rel_ids = [p + b":id" for p in ns.bound_to(RELATIONSHIPS)]
        order: list[tuple[str, str]] = []
        named: set[str] = set()  # lower-case, as Excel compares sheet names
        parts: set[str] = set()
        listed: list[str] = []  # every sheet, in order: a sheet-scoped name's localSheetId indexes it
        for prefix, attrs in _SHEET_TAG_RE.findall(wb):
            if prefix and prefix[:-1] not in main:
                continue  # an element of another namespace
            a = xml_attrs(attrs)
            nm = unescape(a.get(b"name", b""))
            listed.append(nm)
            rid = next((a[k] for k in rel_ids if k in a), None)
            if rid not in rels:
                raise WorkbookError(f"{path}: sheet {nm!r} has no relationship {rid!r}")
            if nm.lower() in named:
                raise WorkbookError(f"{path}: two sheets are named {nm!r}; refusing an ambiguous book")
            named.add(nm.lower())
            target, typ = rels[rid]
            if not typ.endswith(b"/worksheet"):
                continue  # chart sheets, dialog sheets: no cells
            part = resolve(base, unescape(target))
            if part in parts:
                raise WorkbookError(f"{path}: two sheets are stored in one part, {part}; refusing an ambiguous book")
            parts.add(part)
            order.append((nm, part))
        if not order:
            raise WorkbookError(f"{path}: workbook has no worksheets")
        defined = {}
        for attrs, text in _DEFNAME_RE.findall(wb):
            a = xml_attrs(attrs)
            local = a.get(b"localSheetId", b"")
            scope = listed[int(local)] + "!" if local.isdigit() and int(local) < len(listed) else ""
            defined[scope + unescape(a.get(b"name", b""))] = unescape(text)  # sheet-scoped: 'Sheet!name'
        want = None if sheets is None else set(sheets)
        if want is not None:
            missing = want - {n for n, _ in order}
            if missing:
                raise WorkbookError(f"{path}: no sheet named {sorted(missing)[0]!r}")
        sst = read_shared_strings(zf, sst_part) if any(want is None or n in want for n, _ in order) else []
        todo = []
        for nm, part in order:
            if want is not None and nm not in want:
                continue
            if part not in names:
                raise WorkbookError(f"{path}: sheet {nm!r}: missing part {part}")
            todo.append((nm, part))
        size = sum(zf.getinfo(part).file_size for _, part in todo)
        workers = min(pool.WORKERS, len(todo))
        if workers > 1 and size >= pool.PARALLEL_BYTES and pool.can_fork():
            out = pool.read_parallel(path, todo, sst, workers, progress)
        else:
            out = {}
            for nm, part in todo:
                out[nm] = read_sheet(zf, part, nm, sst)
                if progress:
                    progress(zf.getinfo(part).file_size, size)
        out = {nm: out[nm] for nm, _ in todo}
        return Book(sheet_names=[n for n, _ in order], sheets=out, defined_names=defined)
