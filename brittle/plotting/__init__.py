"""Figures, drawn from the CSVs the steps write (never from live models). One module per area."""
