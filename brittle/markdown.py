"""Markdown for the report: numbers as short text, frames as GitHub tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def fmt(value, digits: int = 3) -> str:
    """A number as short text: '–' for missing or non-finite, integers without a point, else
    ``digits`` significant digits; booleans as yes/no; strings unchanged."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    value = float(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def markdown_table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """A GitHub markdown table of ``frame``'s ``columns`` (name -> header); absent columns as '–'."""
    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(row.get(c)) if c in row else "–" for c in columns) + " |")
    return "\n".join(lines)
