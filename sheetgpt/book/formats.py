"""The cell formats of a book, created once per workbook."""

from __future__ import annotations

import xlsxwriter


class Formats:
    """The few cell formats a book uses (number formats are made on first use)."""

    def __init__(self, wb: xlsxwriter.Workbook):
        self.wb = wb
        self.cache: dict[str, object] = {}
        self.title = wb.add_format({"bold": True, "font_size": 12, "font_color": "#1F3864"})
        self.big = wb.add_format({"bold": True, "font_size": 16, "font_color": "#1F3864"})
        self.note = wb.add_format({"italic": True, "font_color": "#595959"})
        self.header = wb.add_format({"bold": True, "font_color": "#595959", "align": "center", "bottom": 1})
        self.label = wb.add_format({"font_color": "#595959"})
        self.token = wb.add_format({"bold": True})
        self.edit = wb.add_format({"bg_color": "#FFF2CC", "border": 1, "bold": True})
        # editable text: the Text number format ("@") keeps what is typed as text (3/4 stays 3/4, not a date)
        self.edit_text = wb.add_format({"bg_color": "#FFF2CC", "border": 1, "bold": True, "num_format": "@"})
        self.link = wb.add_format({"font_color": "blue", "underline": 1})
        self.text = wb.add_format({})
        self.symbol = wb.add_format({"border": 1, "align": "center", "bold": True, "bg_color": "#DDEBF7"})

    def number(self, num_format: str):
        if num_format not in self.cache:
            self.cache[num_format] = self.wb.add_format({"num_format": num_format})
        return self.cache[num_format]

    def exercise(self, num_format: str):
        """An exercise's empty cell: the input colour of the Prompt's editable cells, with the stage's number format."""
        key = "exercise " + num_format
        if key not in self.cache:
            self.cache[key] = self.wb.add_format(
                {"bg_color": "#FFF2CC", "border": 1, "border_color": "#BF9000", "num_format": num_format}
            )
        return self.cache[key]

    def header_number(self, num_format: str):
        """A header that is a number shown through ``num_format`` (3 as "rank 3")."""
        key = "header " + num_format
        if key not in self.cache:
            self.cache[key] = self.wb.add_format(
                {"bold": True, "font_color": "#595959", "align": "center", "bottom": 1, "num_format": num_format}
            )
        return self.cache[key]
