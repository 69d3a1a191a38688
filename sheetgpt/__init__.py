"""sheetgpt: GPT-2 as a real spreadsheet, proven correct against a float64 reference."""

__version__ = "0.1.0"
