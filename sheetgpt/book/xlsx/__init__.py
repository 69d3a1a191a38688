"""The xlsx backend: xlsxwriter for the frames, numpy and shared formulas for the bulk, a zip64 writer."""
