"""Where a file sat on a plate: its $WELLID, or a well name such as A01 or H12 in its file name. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A row letter and a column number standing on their own in the name (sample_A01.fcs, B7-stain.fcs),
# not inside a word or a longer number (CD4, E2000).
_IN_NAME = re.compile(r"(?<![A-Za-z0-9])([A-Pa-p])[-_ ]?(0?[1-9]|1[0-9]|2[0-4])(?![0-9])")
_EXACT = re.compile(r"^\s*([A-Pa-p])\s*0*([1-9]|1[0-9]|2[0-4])\s*$")


def normalise(text: str | None) -> str | None:
    """'c7' -> 'C07'; None when the text is not a well of a 96- or 384-well plate."""
    match = _EXACT.match(text or "")
    if not match:
        return None
    return f"{match.group(1).upper()}{int(match.group(2)):02d}"


def from_file_name(name: str) -> str | None:
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    found = list(_IN_NAME.finditer(stem))
    if not found:
        return None
    last = found[-1]
    return f"{last.group(1).upper()}{int(last.group(2)):02d}"


def well_of(file: str, wellid: str | None) -> str | None:
    return normalise(wellid) or from_file_name(file)


def plate_shape(wells: Iterable[str]) -> tuple[int, int]:
    """(rows, columns): 8 x 12 when every well fits a 96-well plate, else 16 x 24."""
    fits = all(w[0] <= "H" and int(w[1:]) <= 12 for w in wells)
    return (8, 12) if fits else (16, 24)
