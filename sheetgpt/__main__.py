"""python -m sheetgpt: the same as the sheetgpt command."""

from .cli import main

main(prog_name="sheetgpt")
