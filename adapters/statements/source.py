"""A file being imported: what it is (sniffed from its bytes), its text encoding, its rows.

Adapters never trust the file name's extension: :class:`Source` looks at the first bytes
(``PK`` zip = xlsx/ods, ``D0 CF 11 E0`` = legacy xls, otherwise text in UTF-8 with or
without BOM, or UTF-16 with or without BOM) and caches what every adapter's ``identify``
needs (the decoded head, the first rows of each sheet), so identifying a 200,000-row
workbook opens it once.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feepay.exceptions import ParseError

HEAD_BYTES = 256 * 1024
HEAD_ROWS = 80
MAX_FILE_BYTES = 2 * 1024**3

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
DELIMITERS = (",", ";", "\t", "|")

csv.field_size_limit(10 * 1024 * 1024)


@dataclass
class Table:
    """The first rows of one sheet (or of a CSV file). ``rows[i]`` is spreadsheet row i+1."""

    sheet: str | None
    rows: list[list[Any]]


class Source:
    """One input file. ``kind`` is ``empty``, ``xlsx``, ``xls``, ``text`` or ``binary``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        try:
            self.size = self.path.stat().st_size
            with self.path.open("rb") as fh:
                self.head = fh.read(HEAD_BYTES)
        except OSError as exc:
            raise ParseError(f"cannot read the file: {exc.strerror}", source=self.name) from None
        if self.size > MAX_FILE_BYTES:
            raise ParseError("the file is larger than 2 GB", source=self.name)
        self.encoding: str | None = None
        self.kind = self._sniff()
        self._workbook: Any = None
        self._sheets: dict[str, Any] = {}
        self._tables: list[Table] | None = None
        self._delimiter: str | None = None

    # what is it ---------------------------------------------------------------------------
    def _sniff(self) -> str:
        if self.size == 0 or not self.head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
            return "empty"
        if self.head.startswith(ZIP_MAGIC):
            return "xlsx"
        if self.head.startswith(OLE_MAGIC):
            return "xls"
        self.encoding = detect_encoding(self.head)
        return "text" if self.encoding else "binary"

    @property
    def is_spreadsheet(self) -> bool:
        return self.kind in ("xlsx", "xls")

    def require(self, *kinds: str, what: str) -> None:
        """Raise the right ParseError when the file is not of the kinds an adapter reads."""
        if self.kind in kinds:
            return
        reason = {
            "empty": "the file is empty",
            "binary": "the file is not text in UTF-8 or UTF-16 nor a spreadsheet "
                      "(binary or unknown content)",
            "xlsx": "the file is a spreadsheet, not " + what,
            "xls": "the file is a spreadsheet, not " + what,
            "text": "the file is text, not " + what,
        }[self.kind]
        raise ParseError(reason, source=self.name)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            for block in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(block)
        return digest.hexdigest()

    # text -------------------------------------------------------------------------------
    def head_text(self) -> str:
        """The decoded start of a text file ('' for other kinds)."""
        if self.kind != "text" or self.encoding is None:
            return ""
        return codecs.getincrementaldecoder(self.encoding)(errors="replace").decode(self.head)

    def open_text(self) -> io.TextIOWrapper:
        if self.encoding is None:
            self.require("text", what="a text file")
        return io.TextIOWrapper(self.path.open("rb"), encoding=self.encoding, newline="",
                                errors="strict")

    def delimiter(self) -> str:
        """The CSV delimiter: of , ; TAB |, the one that splits the head into most columns."""
        if self._delimiter is None:
            lines = self.head_text().splitlines()[:HEAD_ROWS]
            best, score = ",", (-1, -1)
            for delim in DELIMITERS:
                widths = [len(r) for r in csv.reader(lines, delimiter=delim)]
                wide = sorted(widths, reverse=True)[:5]
                this = (sum(1 for w in widths if w >= 3), min(wide) if wide else 0)
                if this > score:
                    best, score = delim, this
            self._delimiter = best
        return self._delimiter

    def iter_csv(self, delimiter: str | None = None) -> Iterator[list[str]]:
        """Every record of a CSV/TSV file (row i+1 is the i-th record)."""
        with self.open_text() as fh:
            try:
                yield from csv.reader(fh, delimiter=delimiter or self.delimiter())
            except UnicodeDecodeError as exc:
                raise ParseError(f"the file is not valid {self.encoding} text "
                                 f"(byte offset {exc.start} of a block)",
                                 source=self.name) from None
            except csv.Error as exc:
                raise ParseError(f"malformed CSV: {exc}", source=self.name) from None

    # spreadsheets ------------------------------------------------------------------------
    def workbook(self) -> Any:
        """The python-calamine workbook (opened once)."""
        if self._workbook is None:
            from python_calamine import CalamineWorkbook

            try:
                self._workbook = CalamineWorkbook.from_path(str(self.path))
            except Exception as exc:  # noqa: BLE001 - calamine raises several types
                raise ParseError(f"not a readable {self.kind} workbook (truncated or "
                                 f"corrupt: {type(exc).__name__}: {exc})",
                                 source=self.name) from None
        return self._workbook

    def sheet_names(self) -> list[str]:
        return list(self.workbook().sheet_names)

    def sheet(self, name: str) -> Any:
        """A python-calamine sheet, loaded once (identify and read share it)."""
        if name not in self._sheets:
            self._sheets[name] = self.workbook().get_sheet_by_name(name)
        return self._sheets[name]

    def iter_sheet(self, sheet: str) -> Iterator[list[Any]]:
        """Every row of a sheet from spreadsheet row 1 (row i+1 is the i-th item)."""
        try:
            yield from self.sheet(sheet).iter_rows()
        except ParseError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ParseError(f"sheet '{sheet}' cannot be read (truncated or corrupt: "
                             f"{type(exc).__name__}: {exc})", source=self.name) from None

    def tables(self) -> list[Table]:
        """The first rows of every sheet, or of the CSV file ([] for other kinds)."""
        if self._tables is None:
            if self.is_spreadsheet:
                self._tables = []
                for name in self.sheet_names():
                    rows = []
                    for row in self.iter_sheet(name):
                        rows.append(list(row))
                        if len(rows) >= HEAD_ROWS:
                            break
                    self._tables.append(Table(name, rows))
            elif self.kind == "text":
                text = self.head_text()
                if len(self.head) >= HEAD_BYTES:
                    text = text[:text.rfind("\n") + 1]  # the last line may be cut
                rows = []
                try:
                    for row in csv.reader(io.StringIO(text, newline=""),
                                          delimiter=self.delimiter()):
                        rows.append(row)
                        if len(rows) >= HEAD_ROWS:
                            break
                except csv.Error:
                    pass  # a quoted cell cut by the head limit: the rows so far suffice
                self._tables = [Table(None, rows)]
            else:
                self._tables = []
        return self._tables

    def close(self) -> None:
        if self._workbook is not None:
            with contextlib.suppress(Exception):  # closing twice is harmless
                self._workbook.close()
            self._workbook = None
        self._sheets.clear()


def detect_encoding(head: bytes) -> str | None:
    """UTF-8 (with or without BOM) or UTF-16 (with or without BOM), else None."""
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        sample = head[:4096]
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        half = max(len(sample) // 2, 1)
        if len(sample) >= 4 and odd > half * 0.3 and even < half * 0.05:
            encoding = "utf-16-le"
        elif len(sample) >= 4 and even > half * 0.3 and odd < half * 0.05:
            encoding = "utf-16-be"
        else:
            encoding = "utf-8"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text[:20000] if ord(ch) < 32 and ch not in "\t\r\n\f")
    if controls > max(2, len(text[:20000]) // 200) or "\x00" in text[:20000]:
        return None
    return encoding
