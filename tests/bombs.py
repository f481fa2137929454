"""Decompression bombs for the importer (SEC-3), built on the fly with zipfile; no binaries shipped.

Each builder returns the bytes of a minimal, valid XLSX: small on disk, huge once unpacked or
once parsed. Used by tests/test_import_bombs.py and bench/import_bomb.py."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from openpyxl.utils import get_column_letter

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


def _parts(with_strings: bool) -> dict[str, str]:
    strings_override = (f'<Override PartName="/xl/sharedStrings.xml" ContentType="{STRINGS_TYPE}"/>'
                        if with_strings else "")
    strings_rel = (f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
                   if with_strings else "")
    return {
        "[Content_Types].xml":
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{SHEET_TYPE}"/>'
            f"{strings_override}</Types>",
        "_rels/.rels":
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml":
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}">'
            '<sheets><sheet name="房屋" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels":
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f"{strings_rel}</Relationships>",
    }


def build(sheet: Iterator[bytes], strings: Iterator[bytes] | None = None,
          compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An XLSX whose first sheet (and shared strings) are streamed from ``sheet`` (``strings``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression, compresslevel=9) as book:
        for name, text in _parts(strings is not None).items():
            book.writestr(name, text)
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part:
            for chunk in sheet:
                part.write(chunk)
        if strings is not None:
            with book.open("xl/sharedStrings.xml", "w", force_zip64=True) as part:
                for chunk in strings:
                    part.write(chunk)
    return out.getvalue()


def sheet_xml(rows: int, columns: int, dimension: str | None = None, cell: str = "<v>1</v>",
              cell_type: str = "n", header: tuple[str, ...] = ()) -> Iterator[bytes]:
    """A worksheet of ``rows`` x ``columns`` cells (after an optional inline-string header row)."""
    ref = dimension or f"A1:{get_column_letter(max(columns, 1))}{rows + 1}"
    yield (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}">'
           f'<dimension ref="{ref}"/><sheetData>').encode()
    if header:
        yield ('<row r="1">' + "".join(f'<c r="{get_column_letter(i)}1" t="inlineStr"><is><t>{h}</t></is></c>'
                                       for i, h in enumerate(header, start=1)) + "</row>").encode()
    # Cell and row references are optional in SpreadsheetML; without them every row is the same
    # bytes, which is what lets a million cells deflate to a few dozen kilobytes.
    row = ("<row>" + f'<c t="{cell_type}">{cell}</c>' * columns + "</row>").encode()
    for _ in range(rows):
        yield row
    yield b"</sheetData></worksheet>"


def strings_xml(count: int, text: str = "a") -> Iterator[bytes]:
    yield f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}" count="{count}" uniqueCount="{count}">'.encode()
    item = f"<si><t>{text}</t></si>".encode()
    block = item * 10_000
    for _ in range(count // 10_000):
        yield block
    yield item * (count % 10_000)
    yield b"</sst>"


UNITS_HEADER = ("小区编码", "楼栋", "房号", "楼层", "建筑面积", "用途")


def cell_bomb(cells: int = 1_000_000, columns: int = 1_000) -> bytes:
    """About 50 KB on disk; a million cells once parsed (the issue's 28 s / 940 MB dry run)."""
    return build(sheet_xml(cells // columns, columns, header=UNITS_HEADER))


def shared_strings_bomb(count: int = 5_000_000) -> bytes:
    """About 80 KB on disk; millions of shared strings that openpyxl loads before any row is read."""
    return build(sheet_xml(1, 1, cell="<v>0</v>", cell_type="s", header=UNITS_HEADER), strings_xml(count))
