"""Labelled image grids: column headers from x values, row headers from y values, a title, placeholders.

Thumbnails are scaled down so that a grid never exceeds a pixel budget; text is sized from the thumbnails and
wrapped to fit, so a grid stays legible at any size.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
PLACEHOLDER = (225, 225, 225)
FAILED_INK = (170, 20, 20)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap; a word longer than the width is cut by characters."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) <= width or not line:
                line = candidate
                while draw.textlength(line, font=font) > width and len(line) > 1:
                    cut = len(line) - 1
                    while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                        cut -= 1
                    lines.append(line[:cut])
                    line = line[cut:]
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _text_block(draw, text, font, width, line_height) -> tuple[list[str], int]:
    lines = _wrap(draw, text, font, width) if text else []
    return lines, len(lines) * line_height


def labelled_grid(rows, col_labels, row_labels, title: str = "", max_pixels: int = 16_000_000,
                  gap: int | None = None) -> Image.Image:
    """rows[iy][ix] is a list of PIL images (shown side by side) and strings (placeholders with that text,
    for failed images), or one such string. Column and row labels may be empty strings (no x or y axis).
    """
    rows = [[[cell] if isinstance(cell, str) else list(cell) for cell in row] for row in rows]
    images = [im for row in rows for cell in row for im in cell if not isinstance(im, str)]
    per_cell = max(len(cell) for row in rows for cell in row)
    thumb_w = max((im.width for im in images), default=256)
    thumb_h = max((im.height for im in images), default=256)
    n_cols, n_rows = len(rows[0]), len(rows)
    cell_w, cell_h = thumb_w * per_cell, thumb_h

    # scale: labels take about a quarter cell on each side, so the budget fixes the thumbnail scale
    full = (n_cols * cell_w + cell_w // 2) * (n_rows * cell_h + cell_h // 2 + cell_h // 3)
    # small images (tiny models) are enlarged by whole factors up to about 128 px, so labels fit beside them
    grow = max(1, math.ceil(128 / max(1, min(thumb_w, thumb_h))))
    scale = min(float(grow), math.sqrt(max_pixels / full))
    tw, th = max(1, int(thumb_w * scale)), max(1, int(thumb_h * scale))
    cw, ch = tw * per_cell, th
    gap = max(2, tw // 64) if gap is None else gap
    font_size = max(12, min(48, round(min(tw, th) / 9)))
    font = _font(font_size)
    line_h = round(font_size * 1.25)
    pad = font_size // 2

    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    has_rows = any(row_labels)
    label_w = (max(cw // 2, round(font_size * 8)) if has_rows else 0)
    grid_w = label_w + n_cols * (cw + gap) + gap
    col_blocks = [_text_block(scratch, t, font, cw - 2 * pad, line_h) for t in col_labels]
    header_h = (max(h for _, h in col_blocks) + 2 * pad) if any(col_labels) else 0
    title_font = _font(round(font_size * 1.1))
    title_lines, title_h = _text_block(scratch, title, title_font, grid_w - 2 * pad, round(font_size * 1.4))
    title_h = title_h + 2 * pad if title else 0
    grid_h = title_h + header_h + n_rows * (ch + gap) + gap

    canvas = Image.new("RGB", (grid_w, grid_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for line in title_lines:
        draw.text((pad, y), line, fill=INK, font=title_font)
        y += round(font_size * 1.4)
    top = title_h + header_h
    for ix, (lines, h) in enumerate(col_blocks):
        x0 = label_w + gap + ix * (cw + gap)
        y = title_h + (header_h - h) // 2
        for line in lines:
            draw.text((x0 + (cw - draw.textlength(line, font=font)) / 2, y), line, fill=INK, font=font)
            y += line_h
    for iy, row in enumerate(rows):
        y0 = top + gap + iy * (ch + gap)
        if has_rows:
            lines, h = _text_block(draw, row_labels[iy], font, label_w - 2 * pad, line_h)
            y = y0 + (ch - h) // 2
            for line in lines:
                draw.text((label_w - pad - draw.textlength(line, font=font), y), line, fill=INK, font=font)
                y += line_h
        for ix, cell in enumerate(row):
            x0 = label_w + gap + ix * (cw + gap)
            for k, item in enumerate(cell):
                box = (x0 + k * tw, y0)
                if isinstance(item, str):
                    draw.rectangle((box[0], box[1], box[0] + tw - 1, box[1] + th - 1), fill=PLACEHOLDER)
                    small = _font(max(10, font_size * 3 // 4))
                    ty = box[1] + pad
                    for line in _wrap(draw, item, small, tw - 2 * pad)[: max(1, (th - pad) // line_h)]:
                        draw.text((box[0] + pad, ty), line, fill=FAILED_INK, font=small)
                        ty += line_h
                else:
                    resample = Image.NEAREST if tw >= item.width and tw % item.width == 0 else Image.LANCZOS
                    thumb = item if item.size == (tw, th) else item.resize((tw, th), resample)
                    canvas.paste(thumb, box)
    return canvas
