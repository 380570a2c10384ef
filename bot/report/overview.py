"""The batch overview figure (PNG, drawn with Pillow): a plate map when the files' wells are known,
else a strip of tiles, one per file, coloured by QC verdict and showing events, % cells and
% singlets. Pure: rows in, PNG bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from bot.report.wells import plate_shape

COLOURS = {"pass": (102, 187, 106), "warn": (255, 167, 38), "fail": (239, 83, 80)}
EMPTY = (236, 239, 241)
INK = (33, 33, 33)
MUTED = (96, 125, 139)
MAX_PLATES = 6
MAX_TILES = 240
TILES_PER_ROW = 8


@dataclass(frozen=True)
class Tile:
    analysis: str
    file: str
    well: str | None
    verdict: str
    events: int | None
    cells_pct: float | None
    singlets_pct: float | None

    @property
    def label(self) -> str:
        return self.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def count_text(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def plates(tiles: Sequence[Tile]) -> list[tuple[str, list[Tile]]] | None:
    """The plates to draw: one for the batch when every file has a well and no well repeats, one per
    analysis when wells repeat across analyses but not within one; None when wells are unknown."""
    if not tiles or any(t.well is None for t in tiles):
        return None
    wells = [t.well for t in tiles]
    if len(set(wells)) == len(wells):
        return [("", list(tiles))]
    groups: dict[str, list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.analysis, []).append(t)
    if any(len({t.well for t in g}) != len(g) for g in groups.values()):
        return None
    return list(groups.items())


def overview_png(tiles: Sequence[Tile], title: str) -> bytes:
    grouped = plates(tiles)
    image = _plates_image(grouped, title) if grouped else _strip_image(tiles, title)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _header(draw: ImageDraw.ImageDraw, title: str, tiles: Sequence[Tile], width: int) -> None:
    draw.text((16, 10), title, fill=INK, font=_font(18))
    counts = {v: sum(1 for t in tiles if t.verdict == v) for v in COLOURS}
    x = 16
    for verdict, colour in COLOURS.items():
        draw.rectangle((x, 40, x + 14, 54), fill=colour)
        text = f"{counts[verdict]} {verdict}"
        draw.text((x + 20, 39), text, fill=INK, font=_font(13))
        x += 34 + int(draw.textlength(text, font=_font(13)))
    draw.text((x + 10, 40), "each well: events · % cells · % singlets (of cells)", fill=MUTED, font=_font(12))


def _cell(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], tile: Tile | None, name: str) -> None:
    x0, y0, x1, _ = box
    fill = COLOURS.get(tile.verdict, EMPTY) if tile else EMPTY
    draw.rounded_rectangle(box, radius=5, fill=fill, outline=(255, 255, 255))
    if tile is None:
        return
    font = _font(11)
    lines = [name, "no data"] if tile.events is None else \
        [name, count_text(tile.events), f"{_pct(tile.cells_pct)} · {_pct(tile.singlets_pct)}"]
    for k, line in enumerate(lines):
        draw.text(((x0 + x1) / 2, y0 + 4 + 14 * k), line, fill=INK, font=_font(12) if k == 0 else font, anchor="ma")


def _plates_image(groups: list[tuple[str, list[Tile]]], title: str) -> Image.Image:
    shown = groups[:MAX_PLATES]
    all_tiles = [t for _, g in groups for t in g]
    rows, cols = plate_shape(t.well for t in all_tiles if t.well)
    cw, ch = (80, 50) if cols == 12 else (56, 46)
    plate_h = 22 + 18 + rows * ch + 10
    width = 16 + 24 + cols * cw + 16
    height = 66 + plate_h * len(shown) + (20 if len(groups) > MAX_PLATES else 0)
    image = Image.new("RGB", (max(width, 640), height), "white")
    draw = ImageDraw.Draw(image)
    _header(draw, title, all_tiles, width)
    y = 66
    for name, tiles in shown:
        by_well = {t.well: t for t in tiles}
        draw.text((16, y), f"plate {name}" if name else "plate", fill=MUTED, font=_font(13))
        top = y + 22
        for c in range(cols):
            draw.text((40 + c * cw + cw / 2, top), str(c + 1), fill=MUTED, font=_font(12), anchor="ma")
        for r in range(rows):
            letter = chr(ord("A") + r)
            ry = top + 18 + r * ch
            draw.text((28, ry + ch / 2), letter, fill=MUTED, font=_font(12), anchor="mm")
            for c in range(cols):
                well = f"{letter}{c + 1:02d}"
                x0 = 40 + c * cw
                _cell(draw, (x0 + 1, ry + 1, x0 + cw - 1, ry + ch - 1), by_well.get(well), well)
        y += plate_h
    if len(groups) > MAX_PLATES:
        draw.text((16, y), f"{len(groups) - MAX_PLATES} more plates are in the QC table", fill=MUTED, font=_font(12))
    return image


def _strip_image(tiles: Sequence[Tile], title: str) -> Image.Image:
    shown = list(tiles[:MAX_TILES])
    tw, th = 132, 52
    rows = max(1, -(-len(shown) // TILES_PER_ROW))
    width = 16 + TILES_PER_ROW * tw + 16
    height = 70 + rows * th + 10 + (20 if len(tiles) > MAX_TILES else 0)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    _header(draw, title, tiles, width)
    for k, tile in enumerate(shown):
        x0 = 16 + (k % TILES_PER_ROW) * tw
        y0 = 70 + (k // TILES_PER_ROW) * th
        name = tile.label if len(tile.label) <= 18 else tile.label[:17] + "…"
        _cell(draw, (x0 + 1, y0 + 1, x0 + tw - 2, y0 + th - 2), tile, name)
    if len(tiles) > MAX_TILES:
        draw.text((16, height - 22), f"{len(tiles) - MAX_TILES} more files are in the QC table", fill=MUTED,
                  font=_font(12))
    return image
