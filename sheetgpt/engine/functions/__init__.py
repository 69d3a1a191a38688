"""Spreadsheet functions by Excel's categories; ``FUNCTIONS`` maps a name to its Function."""

from . import info, logic, lookup, math, stats, text
from .registry import FUNCTIONS, Function

__all__ = ["FUNCTIONS", "Function", "info", "logic", "lookup", "math", "stats", "text"]
