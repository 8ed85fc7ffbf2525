"""Overlay pictures: a quick look at a prediction and its support set, for the ``segment`` command and the app.

Each label value has its own palette colour (``colour_of``), tinted over the image and outlined (``tint``), so
that the command's overlays and the app's pictures show a label in the same colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from universeg_jax import preprocess as pp

# Colours of label 1, 2, ... of a picture (then repeating).
PALETTE = np.array(
    [(255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 80, 255), (0, 220, 200), (255, 128, 0)], np.uint8
)
BACKGROUND = np.array((24, 24, 24), np.uint8)
TEXT_COLOUR = (235, 235, 235)
GAP = 4
TITLE_HEIGHT = 20


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask, two pixels wide."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=2, border_value=0)
    return mask & ~inner


def colour_of(label_values: Sequence[int]) -> dict[int, np.ndarray]:
    """One palette colour per label value, in the order of ``label_values``."""
    return {int(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(label_values)}


def tint(rgb: np.ndarray, mask: np.ndarray, colour, fill: float) -> None:
    """Blends ``colour`` into the float RGB picture ``rgb`` where ``mask`` is set, with weight ``fill``."""
    rgb[mask] = (1 - fill) * rgb[mask] + fill * np.asarray(colour, np.float64)


def _panel(image: np.ndarray, label_map, size: tuple[int, int], colours: dict, fill: float = 0.35) -> np.ndarray:
    """An RGB picture of a 2D image at ``size`` (h, w), each label value tinted and outlined in its colour."""
    h, w = image.shape
    method = "area" if h > size[0] else "bilinear"
    gray = pp.resize_image(pp.normalize_intensity(image), size, method)
    rgb = np.repeat((gray * 255).round()[..., None], 3, axis=-1)
    if label_map is not None:
        for value in [v for v in np.unique(label_map) if v != 0]:
            mask = pp.resize_label(label_map == value, size, "nearest").astype(bool)
            colour = colours.get(int(value), PALETTE[0])
            tint(rgb, mask, colour, fill)
            rgb[_outline(mask)] = colour
    return rgb.round().clip(0, 255).astype(np.uint8)


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def label_name(value: int, label_values: Sequence[int]) -> str:
    """What a label value is called in pictures and in the app: "foreground" when it is the only one (a binary
    mask, whether stored as 1 or 255), else "label <value>"."""
    return "foreground" if len(label_values) == 1 else f"label {int(value)}"


def _fit(draw, text: str, font, room: int) -> str:
    """``text``, shortened with an ellipsis until it is at most ``room`` pixels wide."""
    if draw.textlength(text, font=font) <= room:
        return text
    while text and draw.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…" if text else ""


def _text_strip(
    width: int, items: Sequence[tuple[int, str]], height: int = TITLE_HEIGHT, swatches: dict | None = None
) -> np.ndarray:
    """A dark strip with ``(x, text)`` titles, each cut short where the next one starts (or the strip ends); with
    ``swatches`` ({x: colour}) a colour square before each text."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), tuple(int(c) for c in BACKGROUND))
    draw = ImageDraw.Draw(strip)
    font = _font()
    titled = [(x, text) for x, text in items if text]
    for (x, text), end in zip(titled, [x for x, _ in titled[1:]] + [width]):
        offset = 0
        if swatches and x in swatches:
            draw.rectangle([x + 2, 4, x + height - 6, height - 5], fill=tuple(int(c) for c in swatches[x]))
            offset = height
        draw.text((x + 3 + offset, 2), _fit(draw, text, font, end - x - 3 - offset - GAP), fill=TEXT_COLOUR, font=font)
    return np.asarray(strip)


def _row(panels: Sequence[tuple[np.ndarray, object, str]], width: int, colours: dict) -> np.ndarray:
    """Panels (image, label map or None, title) side by side at one height so that the row is ``width`` wide."""
    aspects = [p[0].shape[1] / p[0].shape[0] for p in panels]
    usable = width - GAP * (len(panels) - 1)
    height = max(8, int(usable / sum(aspects)))
    widths = [max(1, int(height * a)) for a in aspects]
    widths[-1] += usable - sum(widths)  # rounding: the last panel absorbs it, so the row is exactly `width`
    pictures, titles, x = [], [], 0
    for (image, labels, title), w in zip(panels, widths):
        pictures.append(_panel(image, labels, (height, w), colours))
        titles.append((x, title))
        x += w + GAP
    row = np.full((height, width, 3), BACKGROUND, np.uint8)
    x = 0
    for picture in pictures:
        row[:, x : x + picture.shape[1]] = picture
        x += picture.shape[1] + GAP
    return np.concatenate([_text_strip(width, titles), row])


def overlay(
    query,
    label_map,
    label_values: Sequence[int],
    support_images: Sequence[np.ndarray] = (),
    support_labels: Sequence[np.ndarray] = (),
    *,
    width: int = 768,
    max_support: int = 8,
    titles: Sequence[str] | None = None,
) -> np.ndarray:
    """An RGB uint8 picture with titled rows and no blank area.

    Top: each query (one 2D image, or a list of slices) and its prediction, each label value tinted and outlined
    in its own colour; middle: up to ``max_support`` support examples with their labels in the same colours
    (``support_labels`` are label maps of those values); bottom: a legend of the label values. Every row is
    ``width`` pixels wide.
    """
    several = isinstance(query, (list, tuple))
    queries = list(query) if several else [query]
    maps = list(label_map) if several else [label_map]
    if len(maps) != len(queries):
        raise ValueError(f"overlay: {len(queries)} queries but {len(maps)} label maps")
    titles = list(titles) if titles is not None else ["query"] * len(queries)
    colours = colour_of(label_values)
    top = []
    for image, labels, title in zip(queries, maps, titles):
        gray = pp.to_grayscale(image, name="query")
        top += [(gray, None, title), (gray, np.asarray(labels).reshape(gray.shape), "prediction")]
    rows = [_row(top, width, colours)]
    pairs = list(zip(support_images, support_labels))
    if pairs:
        shown = pairs[:max_support]
        title = f"support ({len(shown)} of {len(pairs)})" if len(pairs) > len(shown) else "support"
        panels = [
            (pp.to_grayscale(img), pp.label_to_2d(lab), title if k == 0 else "") for k, (img, lab) in enumerate(shown)
        ]
        rows.append(_row(panels, width, colours))
    legend, swatches, x = [], {}, 0
    for value in label_values:
        legend.append((x, label_name(value, label_values)))
        swatches[x] = colours[int(value)]
        x += 110
    rows.append(_text_strip(width, legend, swatches=swatches))
    separator = np.full((GAP, width, 3), BACKGROUND, np.uint8)
    out = []
    for row in rows:
        out += [row, separator]
    return np.concatenate(out[:-1])
