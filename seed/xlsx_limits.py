"""SEC-3: an XLSX is measured before it is parsed, so that a small file cannot cost a big import.

An XLSX is a zip of XML. Fifty kilobytes can unpack to a sheet of a million cells or to millions
of shared strings, which openpyxl parses (shared strings all at once, even in read-only mode)
before the importer sees its first row. So the archive is judged first, from what it declares
and from a streaming scan that stops at the limit, never holding more than one chunk:

- the members' declared uncompressed sizes (zipfile never unpacks past them), each large
  member's compression ratio, and the size of the parts openpyxl parses whole (styles, …);
- the first worksheet's declared dimension (its last row) and its number of cells;
- the shared-strings part's size and number of strings.

Limits follow the importer's own (rows, bytes), so ``flask import-registry`` for big files gets
proportionally larger ones.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from flask_babel import lazy_gettext as _l

CHUNK = 64 * 1024
MAX_MEMBERS = 1_000
MAX_RATIO = 100  # real workbooks deflate 5-20 times; bombs a thousand times
RATIO_FLOOR = 1024 * 1024  # small parts may compress as well as they like
UNPACKED_PER_BYTE = 16  # the unpacked workbook may be 16 times the file's size
CELLS_PER_ROW = 30  # the widest import has 14 columns; room for the user's own extra ones
STRING_BYTES_PER_CELL = 64  # shared-strings XML per cell, on average: names, IDs, addresses
SMALL_PART = 1024 * 1024  # workbook.xml and its relations are read whole, up to this size
MAX_PART = 4 * 1024 * 1024  # any other part openpyxl parses at once (styles.xml is rarely over 1 MB)

CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?c[\s/>]")
STRING = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?si[\s/>]")
DIMENSION = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?dimension\s+ref=\"[A-Z]{0,3}\d*:?[A-Z]{0,3}(\d+)\"")
OVERLAP = 64  # longest tag prefix a pattern may need across two chunks
RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


@dataclass(frozen=True)
class Limits:
    rows: int  # rows a sheet may have, blank ones included
    cells: int
    unpacked: int  # bytes, all members together
    strings_bytes: int

    @classmethod
    def of_import(cls, max_rows: int, max_bytes: int, scanned_rows: int) -> Limits:
        cells = (max_rows + 1) * CELLS_PER_ROW
        return cls(rows=scanned_rows, cells=cells, unpacked=max_bytes * UNPACKED_PER_BYTE,
                   strings_bytes=min(max_bytes * UNPACKED_PER_BYTE, cells * STRING_BYTES_PER_CELL))


class Refused(Exception):  # noqa: N818 - a verdict, not a failure of this module
    """The workbook is refused; ``message`` says why in the user's language."""

    def __init__(self, message: Any) -> None:
        super().__init__(str(message))
        self.message = message


def check_workbook(data: bytes, limits: Limits) -> None:
    """Raise ``Refused`` if parsing this XLSX would cost more than ``limits`` allow.

    A file that is not a zip at all is left to openpyxl, which reports it as unreadable."""
    try:
        book = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    with book:
        members = book.infolist()
        too_big = Refused(_l("The workbook unpacks to far more data than its size suggests (a compressed "
                             "“zip bomb”); it is refused without being read. Save it again from Excel or as CSV."))
        if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > limits.unpacked:
            raise too_big
        for m in members:
            if m.file_size > RATIO_FLOOR and m.file_size > MAX_RATIO * max(m.compress_size, 1):
                raise too_big
            if m.file_size > MAX_PART and not _streamed(m.filename):
                raise too_big  # styles, theme, workbook: parsed whole when the workbook is opened
        sheet = _first_sheet(book)
        if sheet is not None:
            _check_sheet(book, sheet, limits)
        for m in members:
            if posixpath.basename(m.filename).lower() == "sharedstrings.xml":
                _check_strings(book, m, limits)


def _streamed(name: str) -> bool:
    """Parts judged by their own counts (sheets, shared strings) or never parsed (pictures)."""
    lower = name.lower()
    return "worksheets/" in lower or "/media/" in lower or posixpath.basename(lower) == "sharedstrings.xml"


def _check_sheet(book: zipfile.ZipFile, member: zipfile.ZipInfo, limits: Limits) -> None:
    too_many_rows = Refused(_l("The worksheet has more than %(n)d rows; split it into several files.",
                               n=limits.rows))
    too_many_cells = Refused(_l("The worksheet has more than %(n)d cells; keep only the columns to import "
                                "and split it into several files.", n=limits.cells))
    first = True
    cells = 0
    for part in _scan(book, member, CELL, limits.unpacked, too_many_cells):
        if first:  # the dimension comes before the cells, in the first chunk
            declared = DIMENSION.search(part.chunk)
            if declared is not None and int(declared.group(1)) > limits.rows:
                raise too_many_rows
            first = False
        cells += part.found
        if cells > limits.cells:
            raise too_many_cells


def _check_strings(book: zipfile.ZipFile, member: zipfile.ZipInfo, limits: Limits) -> None:
    refused = Refused(_l("The workbook's text table (shared strings) is larger than %(mb)d MB or holds more "
                         "than %(n)d texts; split the file into several files.",
                         mb=max(limits.strings_bytes // (1024 * 1024), 1), n=limits.cells))
    if member.file_size > limits.strings_bytes:
        raise refused
    strings = 0
    for part in _scan(book, member, STRING, limits.strings_bytes, refused):
        strings += part.found
        if strings > limits.cells:
            raise refused


@dataclass
class _Part:
    chunk: bytes
    found: int


def _scan(book: zipfile.ZipFile, member: zipfile.ZipInfo, pattern: re.Pattern[bytes], max_bytes: int,
          refused: Refused) -> Iterator[_Part]:
    """Stream one member in chunks, counting ``pattern`` once per match across chunk borders."""
    seen = 0
    tail = b""
    with book.open(member) as stream:
        while chunk := stream.read(CHUNK):
            seen += len(chunk)
            if seen > max_bytes:
                raise refused
            window = tail + chunk
            border = max(len(window) - OVERLAP, 0)
            found = sum(1 for m in pattern.finditer(window) if m.start() < border)
            tail = window[border:]
            yield _Part(window, found)
    yield _Part(b"", sum(1 for _ in pattern.finditer(tail)))


def _first_sheet(book: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The worksheet openpyxl reads as ``worksheets[0]``: the workbook's first ``<sheet>``."""
    try:
        workbook = _small_xml(book, "xl/workbook.xml")
        rels = _small_xml(book, "xl/_rels/workbook.xml.rels")
    except (KeyError, ElementTree.ParseError, ValueError):
        return _largest_sheet(book)
    first = next(workbook.iter("{http://schemas.openxmlformats.org/spreadsheetml/2006/main}sheet"), None)
    target = None
    if first is not None:
        for rel in rels.iter(f"{RELS_NS}Relationship"):
            if rel.get("Id") == first.get(R_ID):
                target = rel.get("Target")
    if not target:
        return _largest_sheet(book)
    path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
    try:
        return book.getinfo(path)
    except KeyError:
        return _largest_sheet(book)


def _largest_sheet(book: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """When the workbook's structure is unusual, judge the largest worksheet: the worst case."""
    sheets = [m for m in book.infolist() if "worksheets/" in m.filename.lower() and m.filename.endswith(".xml")]
    return max(sheets, key=lambda m: m.file_size, default=None)


def _small_xml(book: zipfile.ZipFile, name: str) -> ElementTree.Element:
    info = book.getinfo(name)
    if info.file_size > SMALL_PART:
        raise ValueError(name)
    with book.open(info) as stream:
        return ElementTree.fromstring(stream.read(SMALL_PART + 1))


__all__ = ["Limits", "Refused", "check_workbook"]
