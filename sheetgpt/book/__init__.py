"""Writing a workbook: the layout of its tabs, one module per tab, the writer and the xlsx backend."""
