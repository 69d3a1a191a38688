"""xlsxwriter's worksheet, extended for sheetgpt's compute tabs (shared formulas, fast final-form formulas)."""

from __future__ import annotations

from xlsxwriter.format import Format
from xlsxwriter.worksheet import CellArrayFormulaTuple, CellFormulaTuple, Worksheet, convert_cell_args
from xlsxwriter.worksheet import re_dynamic_function as _DYNAMIC

from ... import a1
from .shared import FormulaBlock


def style_index(cell_format: Format) -> int:
    """The xf index a cell with this format carries (``s="..."``), assigned on first use.

    xlsxwriter has no public way to ask for it: this is the one place that calls its private
    ``Format._get_xf_index``, for the cells the backend writes itself (shared formulas).
    """
    return cell_format._get_xf_index()


class FormulaSheet(Worksheet):
    """xlsxwriter's worksheet with two additions for sheetgpt's compute tabs.

    * ``shared``: a list of FormulaBlock the writer fills instead of writing per-cell
      formulas; ``assemble`` merges them into this sheet's XML as shared formulas.
    * ``write_formula`` (and ``write_array_formula`` for one cell) stores formulas that are
      already in final form (no dynamic-array function to prefix) directly, as xlsxwriter
      itself would after its ``_prepare_formula``, which otherwise runs 30 regex
      substitutions per formula.
    """

    def __init__(self):
        super().__init__()
        self.shared: list[FormulaBlock] = []

    @convert_cell_args
    def write_formula(self, row, col, formula, cell_format=None, value=0):
        if (
            type(row) is not int
            or type(col) is not int
            or not isinstance(formula, str)
            or formula[:1] == "{"
            or formula[-1:] == "}"
            or self.constant_memory
            or "INGLE(" in formula
            or _DYNAMIC.search(formula)
        ):
            return super().write_formula(row, col, formula, cell_format, value)
        if self._check_dimensions(row, col):
            return -1
        if formula[:1] == "=":
            formula = formula[1:]
        if not formula:
            return super().write_formula(row, col, "", cell_format, value)
        self.table[row][col] = CellFormulaTuple(formula, cell_format, value)
        return 0

    def _write_array_formula(
        self, first_row, first_col, last_row, last_col, formula, cell_format=None, value=0, atype="static"
    ):
        # a one-cell CSE formula in final form ({=...}, nothing to prefix): stored as
        # xlsxwriter stores it after _prepare_formula; anything else goes through it
        if (
            (first_row, first_col) != (last_row, last_col)
            or type(first_row) is not int
            or type(first_col) is not int
            or not isinstance(formula, str)
            or formula[:2] != "{="
            or formula[-1:] != "}"
            or self.constant_memory
            or "INGLE(" in formula
            or _DYNAMIC.search(formula)
        ):
            return super()._write_array_formula(
                first_row, first_col, last_row, last_col, formula, cell_format, value, atype
            )
        if self._check_dimensions(first_row, first_col):
            return -1
        cell = a1.cell(first_row, first_col)
        self.table[first_row][first_col] = CellArrayFormulaTuple(formula[2:-1], cell_format, value, cell, atype)
        return 0

    # xlsxwriter writes a formula's cached text as <v> ...</v>; LibreOffice drops the leading space
    # of ' quickly' there when it re-saves a book without recalculating, unless the text says
    # xml:space="preserve". And it writes an empty cached text untyped (<v></v>), which reads as no
    # value; Excel writes it t="str". This overrides xlsxwriter's writer of that element (a private method).
    def _xml_formula_element(self, formula, result, attributes=()) -> None:
        attributes = list(attributes or ())
        if result == "" and not any(key == "t" for key, _ in attributes):
            attributes.append(("t", "str"))
        if not (isinstance(result, str) and (result[:1].isspace() or result[-1:].isspace())):
            return super()._xml_formula_element(formula, result, attributes)
        attr = "".join(f' {key}="{self._escape_attributes(value)}"' for key, value in attributes)
        formula, result = self._escape_data(formula), self._escape_data(result)
        self.fh.write(f'<c{attr}><f>{formula}</f><v xml:space="preserve">{result}</v></c>')

    # xlsxwriter's _write_rows and _calculate_spans visit every (row, column) of the used
    # rectangle: 50257 rows x 770 columns on the Embeddings and Logit lens tabs, 20 s. These
    # visit the cells there are, in the same order, and write the same XML.
    def _rows_to_write(self) -> list[int]:
        if self.dim_rowmin is None:
            return []
        rows = set(self.row_info) | set(self.comments) | {r for r, cells in self.table.items() if cells}
        return sorted(r for r in rows if self.dim_rowmin <= r <= self.dim_rowmax)

    def _calculate_spans(self) -> None:
        spans: dict[int, list[int]] = {}
        for row_num in self._rows_to_write():
            cols = [c for c in self.table.get(row_num, ()) if self.dim_colmin <= c <= self.dim_colmax]
            cols += [c for c in self.comments.get(row_num, ()) if self.dim_colmin <= c <= self.dim_colmax]
            if cols:
                lo, hi = spans.setdefault(row_num // 16, [min(cols), max(cols)])
                spans[row_num // 16] = [min(lo, *cols), max(hi, *cols)]
        self.row_spans = {k: f"{lo + 1}:{hi + 1}" for k, (lo, hi) in spans.items()}

    def _write_rows(self) -> None:
        self._calculate_spans()
        for row_num in self._rows_to_write():
            span = self.row_spans.get(row_num // 16)
            cells = self.table.get(row_num)
            if cells:
                self._write_row(row_num, span, self.row_info.get(row_num))
                for col_num in sorted(cells):
                    if self.dim_colmin <= col_num <= self.dim_colmax:
                        self._write_cell(row_num, col_num, cells[col_num])
                self._xml_end_tag("row")
            else:
                self._write_empty_row(row_num, span, self.row_info.get(row_num))
