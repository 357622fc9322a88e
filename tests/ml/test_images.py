"""The grid, scatter and GIF writers of ml/images.py: valid files of the promised sizes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml.images import (
    grid_png,
    grid_scale,
    pick_frames,
    progress_gif,
    samples_png,
    scatter_png,
)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_grid_png_size_and_pixels() -> None:
    # 10 digits-like 8x8 images: 8 per row -> 2 rows; upscaled x4 to 32 px cells.
    images = np.zeros((10, 1, 8, 8), dtype=np.float32)
    images[0, 0, 0, 0] = 1.0  # top-left pixel of the first image is white
    data = grid_png(images, nrow=8, padding=2)
    img = _open(data)
    assert img.format == "PNG"
    assert img.mode == "L"
    assert grid_scale(8, 8) == 4
    assert img.size == (2 + 8 * (32 + 2), 2 + 2 * (32 + 2))
    px = np.asarray(img)
    assert px[2:6, 2:6].min() == 255  # the white pixel became a 4x4 block
    assert px[6, 6] == 0  # the rest of the first cell is black
    assert px[0, 0] == 128  # padding is mid-grey
    assert px[-3, -3] == 128  # empty cells of the last row are padding too


def test_grid_png_rgb_clips_and_keeps_large_images_unscaled() -> None:
    images = np.full((3, 3, 40, 40), 2.0, dtype=np.float32)  # out of range: clipped to 1
    img = _open(grid_png(images, nrow=8, padding=0))
    assert img.mode == "RGB"
    assert img.size == (3 * 40, 40)
    assert np.asarray(img).min() == 255


def test_grid_png_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        grid_png(np.zeros((4, 2, 8, 8)))
    with pytest.raises(ValueError):
        grid_png(np.zeros((0, 1, 8, 8)))


def test_scatter_png_draws_samples_over_reference() -> None:
    ref = np.array([[-1.0, -1.0], [1.0, 1.0]])
    pts = np.array([[0.0, 0.0]])
    img = _open(scatter_png(pts, reference=ref, size=101)).convert("RGB")
    assert img.size == (101, 101)
    px = np.asarray(img).astype(int)
    centre = px[50, 50]
    assert centre[0] > 150 and centre[1] < 100  # a red sample in the middle
    assert (px[px.shape[0] // 2, 1:5] == 255).all()  # white background inside the frame


def test_samples_png_picks_grid_or_scatter() -> None:
    grid = _open(samples_png(np.zeros((4, 1, 8, 8)), nrow=2))
    assert grid.size == (2 + 2 * 34, 2 + 2 * 34)
    scatter = _open(samples_png(np.zeros((5, 2))))
    assert scatter.size == (512, 512)
    with pytest.raises(ValueError):
        samples_png(np.zeros((5, 3)))


def test_progress_gif_one_frame_per_png_even_when_identical(tmp_path) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"epoch_{i + 1:04d}.png"
        # the first two frames are identical pictures: Pillow would merge them by itself
        value = 0.0 if i < 2 else 1.0
        path.write_bytes(grid_png(np.full((4, 1, 8, 8), value, dtype=np.float32), nrow=2))
        paths.append(path)
    gif = _open(progress_gif(paths))
    assert gif.format == "GIF"
    assert gif.n_frames == 3
    assert gif.is_animated
    with pytest.raises(ValueError):
        progress_gif([])


def test_pick_frames_spaces_them_evenly_keeping_first_and_last() -> None:
    assert pick_frames(range(5), 10) == [0, 1, 2, 3, 4]  # few enough: all of them
    assert pick_frames(range(10), 4) == [0, 3, 6, 9]
    assert pick_frames(range(101), 5) == [0, 25, 50, 75, 100]
    many = pick_frames(range(5000), 60)
    assert len(many) == len(set(many)) == 60 and (many[0], many[-1]) == (0, 4999)
    assert pick_frames(range(3), 1) == [2] and pick_frames(range(3), 0) == []
