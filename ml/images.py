"""Pictures of what a GAN makes: an image grid, a 2-D scatter plot and a GIF of progress grids.

Pillow only (no torchvision, no matplotlib), so the worker and the API can draw without a
plotting stack. Every function returns PNG/GIF *bytes*; callers decide where they go.

* :func:`grid_png` tiles ``(n, C, H, W)`` images in ``[0, 1]`` into one picture, upscaling
  small images (8×8 digits) with nearest-neighbour so each cell is at least ~32 px wide.
* :func:`scatter_png` plots ``(n, 2)`` points, the real data drawn lightly underneath.
* :func:`samples_png` picks one of the two from the array's shape.
* :func:`progress_gif` animates the per-epoch grids written during training;
  :func:`pick_frames` thins a long run's grids to evenly spaced ones first.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw

MIN_CELL_PX = 32  # upscale small images until a grid cell is at least this wide
SCATTER_PX = 512
_SAMPLE_RGB = (214, 39, 40)  # samples: red
_REFERENCE_RGB = (170, 190, 225)  # real data: light blue
_FRAME_RGB = (200, 200, 200)
_PROGRESS_BAR_PX = 4

T = TypeVar("T")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def grid_scale(height: int, width: int) -> int:
    """The integer upscale factor that makes an ``height × width`` cell at least ~32 px."""
    return max(1, math.ceil(MIN_CELL_PX / max(1, max(height, width))))


def grid_png(
    images: np.ndarray,
    nrow: int = 8,
    padding: int = 2,
    scale: int | None = None,
    pad_value: float = 0.5,
) -> bytes:
    """Tile ``images`` ``(n, C, H, W)`` (values in ``[0, 1]``, C = 1 or 3) into a PNG.

    ``nrow`` images per row (as in torchvision's ``make_grid``), ``padding`` pixels of
    ``pad_value`` grey between and around cells. ``scale`` is the nearest-neighbour upscale
    factor (default: :func:`grid_scale`, so 8×8 digits become 32×32 cells). The PNG is
    ``padding + cols·(W·scale + padding)`` wide and ``padding + rows·(H·scale + padding)``
    high, with ``cols = min(n, nrow)`` and ``rows = ceil(n / nrow)``.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:  # (n, H, W): one channel
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected (n, 1|3, H, W) images, got shape {images.shape}")
    if nrow < 1 or padding < 0:
        raise ValueError("nrow must be >= 1 and padding >= 0")
    n, c, h, w = images.shape
    s = grid_scale(h, w) if scale is None else int(scale)
    if s < 1:
        raise ValueError("scale must be >= 1")
    pixels = np.clip(np.nan_to_num(images, nan=0.0), 0.0, 1.0)
    pixels = pixels.repeat(s, axis=2).repeat(s, axis=3)  # (n, C, H·s, W·s), nearest neighbour
    cols, rows = min(n, nrow), math.ceil(n / nrow)
    ch, cw = h * s, w * s
    canvas = np.full(
        (c, padding + rows * (ch + padding), padding + cols * (cw + padding)),
        pad_value,
        dtype=np.float32,
    )
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = padding + r * (ch + padding), padding + k * (cw + padding)
        canvas[:, top : top + ch, left : left + cw] = pixels[i]
    u8 = np.round(canvas * 255.0).astype(np.uint8)
    img = Image.fromarray(u8[0], mode="L") if c == 1 else Image.fromarray(u8.transpose(1, 2, 0))
    return _png(img)


def scatter_png(
    points: np.ndarray,
    reference: np.ndarray | None = None,
    size: int = SCATTER_PX,
    bounds: tuple[float, float, float, float] | None = None,
) -> bytes:
    """A ``size × size`` scatter plot of ``points`` ``(n, 2)``, red, over ``reference`` (real
    data, light blue) if given.

    ``bounds = (xmin, xmax, ymin, ymax)``; by default the box around both sets of points
    with a 5 % margin, so a collapsed generator is visible against the data it misses.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected (n, 2) points, got shape {pts.shape}")
    ref = None if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    if bounds is None:
        both = pts if ref is None else np.concatenate([pts, ref])
        both = both[np.isfinite(both).all(axis=1)]
        if len(both) == 0:
            both = np.zeros((1, 2))
        lo, hi = both.min(axis=0), both.max(axis=0)
        span = np.maximum(hi - lo, 1e-6)
        lo, hi = lo - 0.05 * span, hi + 0.05 * span
        bounds = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    xmin, xmax, ymin, ymax = bounds
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size - 1, size - 1), outline=_FRAME_RGB)

    def to_px(p: np.ndarray) -> np.ndarray:
        p = p[np.isfinite(p).all(axis=1)]
        px = (p[:, 0] - xmin) / max(xmax - xmin, 1e-12) * (size - 1)
        py = (ymax - p[:, 1]) / max(ymax - ymin, 1e-12) * (size - 1)  # y grows upwards
        return np.stack([px, py], axis=1)

    if ref is not None:
        for x, y in to_px(ref):
            draw.point((float(x), float(y)), fill=_REFERENCE_RGB)
    for x, y in to_px(pts):
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=_SAMPLE_RGB)
    return _png(img)


def samples_png(
    samples: np.ndarray,
    nrow: int = 8,
    reference: np.ndarray | None = None,
    padding: int = 2,
    scale: int | None = None,
) -> bytes:
    """A grid for images ``(n, C, H, W)`` / ``(n, H, W)``, a scatter for points ``(n, 2)``."""
    samples = np.asarray(samples)
    if samples.ndim in (3, 4):
        return grid_png(samples, nrow=nrow, padding=padding, scale=scale)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return scatter_png(samples, reference=reference)
    raise ValueError(f"cannot draw samples of shape {samples.shape}: need images or 2-D points")


def pick_frames(items: Sequence[T], max_frames: int) -> list[T]:
    """At most ``max_frames`` of ``items``, evenly spaced, always the first and the last.

    A 5,000-epoch GAN writes 5,000 progress grids; an animation of all of them would weigh
    about 150 MB (some 30 KB a digits frame) and take most of a minute to build.
    """
    n = len(items)
    if n <= max_frames:
        return list(items)
    if max_frames < 2:
        return list(items[-1:]) if max_frames == 1 else []
    return [items[round(k * (n - 1) / (max_frames - 1))] for k in range(max_frames)]


def progress_gif(
    png_paths: Sequence[Path | str], duration_ms: int = 250, comment: str | None = None
) -> bytes:
    """An animated, looping GIF with one frame per PNG in ``png_paths`` (in that order).

    A thin bar along the bottom edge fills up frame by frame: it shows how far training had
    got, and it keeps consecutive frames distinct (Pillow merges identical consecutive
    frames), so the GIF always has exactly ``len(png_paths)`` frames. ``comment`` goes in the
    GIF's header (``Image.open(...).info["comment"]``): the API keys its cached copy by it.
    """
    if not png_paths:
        raise ValueError("no progress images to animate")
    frames: list[Image.Image] = []
    size: tuple[int, int] | None = None
    for i, path in enumerate(png_paths):
        with Image.open(path) as im:
            frame = im.convert("RGB")
        if size is None:
            size = frame.size
        elif frame.size != size:
            frame = frame.resize(size, Image.Resampling.NEAREST)
        w, h = size
        canvas = Image.new("RGB", (w, h + _PROGRESS_BAR_PX), "white")
        canvas.paste(frame, (0, 0))
        filled = max(1, round(w * (i + 1) / len(png_paths)))
        ImageDraw.Draw(canvas).rectangle(
            (0, h, filled - 1, h + _PROGRESS_BAR_PX - 1), fill=(60, 60, 60)
        )
        frames.append(canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT))
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=duration_ms,
        loop=0,
        optimize=False,
        **({"comment": comment.encode()} if comment else {}),
    )
    return buf.getvalue()
