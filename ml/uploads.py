"""Uploaded datasets: parse and validate CSV, NPZ, ZIP-of-PNG-folders and IDX files.

What a user sends is untrusted, so everything here reads from bytes in memory, never extracts
to disk, never unpickles, and bounds every size before allocating it. Each rejection is a
:class:`~ml.errors.DatasetError` whose message names what is wrong and where (line and
column, file inside the archive, array name), so the person can fix the file and retry.

Formats (chosen by the file name's extension in :func:`parse_upload`):

* **CSV** (``.csv``) — a header row, numeric feature columns and one label column (``label``,
  ``y``, ``target`` or ``class``, any case, unless the caller names it). Labels may be
  integers or strings; either way the distinct values, sorted (numerically for integers),
  become class ids ``0..K-1`` and their text the class names.
* **NPZ** (``.npz``) — ``x``: ``(N, D)`` tabular, ``(N, H, W)`` or ``(N, C, H, W)`` images
  (C = 1 or 3; integers 0-255 or floats in [0, 1]); optional ``y``: ``(N,)`` integer or
  string labels, mapped like the CSV's. Loaded with ``allow_pickle=False`` always.
* **ZIP** (``.zip``) — PNG images in one folder per class (``cat/001.png``), optionally all
  inside one top-level folder (``pets/cat/001.png``). Every image must have the same size.
  If every image is grayscale the data has one channel, otherwise all are converted to RGB
  (alpha is dropped). Operating-system clutter (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``,
  ``desktop.ini``, ``._*`` files) is skipped; **any other non-PNG file is rejected**, naming
  it — silently dropping a JPEG would silently drop training data.
* **IDX** (:func:`read_idx`, :func:`load_idx_pair`) — the MNIST layout, plain or gzipped; the
  built-in ``mnist``/``fashion_mnist`` datasets read their files with it.

Sizes: the upload itself may be at most ``max_bytes`` (else :class:`UploadTooLarge`, which the
API answers with 413). What it expands to — archive members, decoded pixels, the float32
array — may be at most :data:`MAX_EXPANSION` times that, checked from the archive's directory
and the image headers *before* anything is decompressed or decoded (zip and PNG bombs).

Images come out as float32 ``(N, C, H, W)`` in [0, 1]; everything else as float32 ``(N, D)``
(``DataKind.points`` when D = 2, so a GAN's samples are drawn as a scatter plot).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import re
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ml.datasets import DataKind, split
from ml.errors import DatasetError

MAX_EXPANSION = 8  # decompressed/decoded data may be this many times the upload limit
DEFAULT_MAX_CLASSES = 100
LABEL_COLUMNS = ("label", "y", "target", "class")  # looked for in this order, any case
SUPPORTED = (".csv", ".npz", ".zip")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the same rule as DatasetRef.id


class UploadTooLarge(DatasetError):
    """The upload, or what it expands to, is over the size limit (the API answers 413)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class ParsedUpload:
    """A validated upload, in the form :func:`ml.datasets.load_dataset` trains on."""

    x: np.ndarray  # float32: (N, C, H, W) in [0, 1] for images, (N, D) otherwise
    y: np.ndarray | None  # int64 class ids 0..K-1, or None when unlabelled
    kind: DataKind
    class_names: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # JSON: format, rows, shape, ...


# --- entry points -----------------------------------------------------------------------------


def parse_upload(
    filename: str,
    data: bytes,
    *,
    max_bytes: int,
    label_column: str | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> ParsedUpload:
    """Parse and validate one uploaded file; the format comes from ``filename``'s extension.

    Raises :class:`UploadTooLarge` when ``data`` (or what it expands to) is over the limit,
    and :class:`~ml.errors.DatasetError` for anything else wrong with it. The result is also
    checked to survive the train/validation split, so a stored upload always trains.
    """
    check_size(len(data), max_bytes, what=f"the upload {filename!r}")
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix == ".csv":
        parsed = parse_csv(data, label_column=label_column, max_classes=max_classes)
    elif suffix == ".npz":
        parsed = parse_npz(data, max_bytes=max_bytes, max_classes=max_classes)
    elif suffix == ".zip":
        parsed = parse_zip(data, max_bytes=max_bytes, max_classes=max_classes)
    else:
        got = f"{suffix!r}" if suffix else "no extension"
        raise DatasetError(
            f"unsupported file type ({got}) for {filename!r}: upload a .csv (numeric columns and "
            "a label column), an .npz (x, optional y) or a .zip of PNG images in class folders"
        )
    split(PurePosixPath(filename).stem or "upload", parsed.kind, parsed.x, parsed.y)
    return parsed


def store_upload(parsed: ParsedUpload, uploads_dir: Path | str, dataset_id: str, name: str) -> Path:
    """Write ``parsed`` as ``<uploads_dir>/<dataset_id>.npz`` (what ``load_dataset`` reads).

    The file holds ``x``, ``y`` when labelled, and ``meta``: a JSON string with ``name``,
    ``kind``, ``class_names`` and the upload's ``summary``. Written to a temporary file and
    renamed into place, so a reader never sees half of it.
    """
    if not _ID_PATTERN.match(dataset_id):
        raise DatasetError(
            f"dataset id {dataset_id!r} may only hold letters, digits, '_' and '-' (1-64 chars)"
        )
    folder = Path(uploads_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": name,
        "kind": parsed.kind.value,
        "class_names": list(parsed.class_names),
        "summary": parsed.summary,
    }
    arrays: dict[str, np.ndarray] = {
        "x": np.ascontiguousarray(parsed.x, dtype=np.float32),
        "meta": np.array(json.dumps(meta)),  # a 0-d unicode array: loads without pickle
    }
    if parsed.y is not None:
        arrays["y"] = np.ascontiguousarray(parsed.y, dtype=np.int64)
    path = folder / f"{dataset_id}.npz"
    tmp = folder / f".{dataset_id}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_size(size: int, max_bytes: int, *, what: str) -> None:
    """Raise :class:`UploadTooLarge` if ``size`` is over ``max_bytes``."""
    if size > max_bytes:
        raise UploadTooLarge(
            f"{what} is {_bytes(size)}, over the {_bytes(max_bytes)} limit",
            size=size,
            limit=max_bytes,
        )


def _check_expanded(size: int, max_bytes: int, *, what: str) -> None:
    limit = MAX_EXPANSION * max_bytes
    if size > limit:
        raise UploadTooLarge(
            f"{what} expands to {_bytes(size)}, over the {_bytes(limit)} limit "
            f"({MAX_EXPANSION} x the {_bytes(max_bytes)} upload limit)",
            size=size,
            limit=limit,
        )


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


# --- labels -----------------------------------------------------------------------------------


def encode_labels(
    values: list[str] | np.ndarray, *, max_classes: int, source: str
) -> tuple[np.ndarray, list[str]]:
    """Map labels to class ids ``0..K-1`` by sorted distinct value; returns ``(y, names)``.

    Integer labels (``3``, ``"3"``, ``"3.0"``) sort numerically, anything else as text, so
    ``[2, 0, 1]`` keeps its ids and ``["dog", "cat"]`` becomes ``cat=0, dog=1``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biu":
        ints: np.ndarray | None = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        integral = np.isfinite(arr) & (arr == np.round(arr))
        if not integral.all():
            raise DatasetError(
                f"{source} holds {arr[~integral][0]!r}, not a class: labels must be integers "
                "or class names"
            )
        ints = arr.astype(np.int64)
    else:
        texts = [str(v).strip() for v in arr.tolist()]
        ints = _as_ints(texts)
        if ints is None and all(_is_number(t) for t in texts):
            bad = next(t for t in texts if not float(t).is_integer())
            raise DatasetError(
                f"{source} holds {bad!r}, not a class: labels must be integers or class "
                "names (this looks like a regression target)"
            )
    if ints is not None:
        classes, y = np.unique(ints, return_inverse=True)
        names = [str(int(c)) for c in classes]
    else:
        text = np.array([str(v).strip() for v in arr.tolist()], dtype=str)
        classes, y = np.unique(text, return_inverse=True)
        names = [str(c) for c in classes]
    if len(names) > max_classes:
        shown = ", ".join(names[:5])
        raise DatasetError(
            f"{source} has {len(names)} distinct values ({shown}, ...); at most {max_classes} "
            "classes are allowed — is it really a class label?"
        )
    return y.astype(np.int64).reshape(-1), names


def _as_ints(texts: list[str]) -> np.ndarray | None:
    """The labels as integers if every one is an integer ("3" or "3.0"), else None."""
    out = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        try:
            out[i] = int(t)
            continue
        except ValueError:
            pass
        try:
            f = float(t)
        except ValueError:
            return None
        if not math.isfinite(f) or f != round(f):
            return None
        out[i] = int(f)
    return out


def _summary(
    fmt: str, x: np.ndarray, y: np.ndarray | None, kind: DataKind, names: list[str], **extra: Any
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "format": fmt,
        "rows": int(len(x)),
        "shape": [int(s) for s in x.shape[1:]],
        "kind": kind.value,
        "num_classes": len(names),
    }
    if y is not None:
        counts = np.bincount(y, minlength=len(names))
        summary["class_counts"] = {n: int(c) for n, c in zip(names, counts, strict=True)}
    summary.update(extra)
    return summary


def _tabular_kind(x: np.ndarray) -> DataKind:
    return DataKind.points if x.shape[1] == 2 else DataKind.tabular


# --- CSV --------------------------------------------------------------------------------------


def parse_csv(
    data: bytes, *, label_column: str | None = None, max_classes: int = DEFAULT_MAX_CLASSES
) -> ParsedUpload:
    """A CSV with a header row: numeric feature columns plus one label column.

    Line numbers in messages count the header as line 1, as a text editor does.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"the CSV file is not UTF-8 text (undecodable byte at offset {exc.start})"
        ) from None
    if not text.strip():
        raise DatasetError("the CSV file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise DatasetError(f"unreadable CSV at line {reader.line_num}: {exc}") from None
    (_, header), body = rows[0], rows[1:]
    columns = [c.strip() for c in header]
    for i, c in enumerate(columns):
        if not c:
            raise DatasetError(
                f"column {i + 1} of the CSV header has no name (a saved DataFrame index? "
                "write the file with index=False)"
            )
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise DatasetError(f"the CSV header names column {c!r} twice")
        seen.add(c)
    if len(columns) == 1 and (";" in columns[0] or "\t" in columns[0]):
        sep = "';'" if ";" in columns[0] else "tabs"
        raise DatasetError(f"the CSV header seems separated by {sep}; separate columns by commas")
    label = _find_label(columns, label_column)
    if not body:
        raise DatasetError("the CSV file has a header but no data rows")
    if len(columns) < 2:
        raise DatasetError(
            f"the CSV file has only the label column {columns[label]!r}; it needs at least one "
            "numeric feature column as well"
        )
    features = [i for i in range(len(columns)) if i != label]
    x = np.empty((len(body), len(features)), dtype=np.float64)
    labels: list[str] = []
    for r, (line, row) in enumerate(body):
        if len(row) != len(columns):
            raise DatasetError(
                f"line {line} of the CSV has {len(row)} cells but the header has "
                f"{len(columns)} columns"
            )
        for j, i in enumerate(features):
            cell = row[i].strip()
            try:
                value = float(cell)
            except ValueError:
                what = "is empty" if not cell else f"holds {cell[:40]!r}, which is not a number"
                raise DatasetError(
                    f"line {line}, column {columns[i]!r} of the CSV {what}; feature columns "
                    "must be numeric"
                ) from None
            if not math.isfinite(value):
                raise DatasetError(
                    f"line {line}, column {columns[i]!r} of the CSV is {cell!r}; missing, NaN "
                    "and infinite values are not allowed"
                )
            x[r, j] = value
        cell = row[label].strip()
        if not cell:
            raise DatasetError(f"line {line}, label column {columns[label]!r} of the CSV is empty")
        labels.append(cell)
    x32 = x.astype(np.float32)
    if not np.all(np.isfinite(x32)):
        r, j = (int(v) for v in np.argwhere(~np.isfinite(x32))[0])
        raise DatasetError(
            f"line {body[r][0]}, column {columns[features[j]]!r} of the CSV is too large for "
            "float32"
        )
    y, names = encode_labels(
        labels, max_classes=max_classes, source=f"the label column {columns[label]!r}"
    )
    kind = _tabular_kind(x32)
    summary = _summary(
        "csv",
        x32,
        y,
        kind,
        names,
        label_column=columns[label],
        feature_columns=[columns[i] for i in features],
    )
    return ParsedUpload(x32, y, kind, names, summary)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# How a user names the label column: the API's form field, or the CLI's option.
_NAME_IT = "the label_column form field (modelkiln upload --label-column NAME)"


def _find_label(columns: list[str], label_column: str | None) -> int:
    lowered = [c.lower() for c in columns]
    listed = ", ".join(repr(c) for c in columns)
    if label_column is not None:
        if label_column in columns:
            return columns.index(label_column)
        if label_column.lower() in lowered:
            return lowered.index(label_column.lower())
        raise DatasetError(f"label column {label_column!r} not found; the CSV columns are {listed}")
    found = [lowered.index(name) for name in LABEL_COLUMNS if name in lowered]
    if not found:
        wanted = ", ".join(repr(n) for n in LABEL_COLUMNS)
        raise DatasetError(
            f"no label column: looked for {wanted} (any case) and the CSV columns are {listed}; "
            f"rename your label column or name it: {_NAME_IT}"
        )
    if len(found) > 1:
        both = ", ".join(repr(columns[i]) for i in found)
        raise DatasetError(f"several columns could be the label ({both}); say which: {_NAME_IT}")
    return found[0]


# --- NPZ --------------------------------------------------------------------------------------


def parse_npz(
    data: bytes, *, max_bytes: int, max_classes: int = DEFAULT_MAX_CLASSES
) -> ParsedUpload:
    """An ``.npz`` with ``x`` and optional ``y``; never unpickles (``allow_pickle=False``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise DatasetError(
            "not a valid .npz file (an .npz is a zip of .npy arrays: save it with np.savez)"
        ) from None
    if not infos:
        raise DatasetError("the .npz file is empty; it needs an array named 'x'")
    _check_expanded(sum(i.file_size for i in infos), max_bytes, what="the .npz file")
    names = {i.filename.removesuffix(".npy") for i in infos}
    unexpected = sorted(names - {"x", "y"})
    if unexpected:
        raise DatasetError(
            f"unexpected arrays {', '.join(map(repr, unexpected))} in the .npz; it may hold only "
            "'x' (features or images) and 'y' (labels)"
        )
    if "x" not in names:
        raise DatasetError("the .npz file has no array named 'x'")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            x = _npz_array(f, "x")
            y_raw = _npz_array(f, "y") if "y" in names else None
    except DatasetError:
        raise
    except Exception as exc:  # a corrupt member: zlib, CRC or header errors
        raise DatasetError(f"unreadable .npz file: {exc}") from None
    if x.dtype.kind not in "biuf":
        raise DatasetError(
            f"array 'x' has dtype {x.dtype}, which is not numeric; use integers or floats"
        )
    if x.ndim not in (2, 3, 4):
        raise DatasetError(
            f"array 'x' has shape {x.shape}; expected (N, D) tabular data, (N, H, W) or "
            "(N, C, H, W) images"
        )
    if x.shape[0] == 0 or x.size == 0:
        raise DatasetError(f"array 'x' is empty (shape {x.shape})")
    y: np.ndarray | None = None
    names_out: list[str] = []
    if y_raw is not None:
        if y_raw.ndim != 1:
            raise DatasetError(f"array 'y' has shape {y_raw.shape}; labels must be 1-D, (N,)")
        if len(y_raw) != len(x):
            raise DatasetError(
                f"'x' has {len(x)} rows but 'y' has {len(y_raw)} labels; they must match"
            )
        if y_raw.dtype.kind not in "biufUS":
            raise DatasetError(
                f"array 'y' has dtype {y_raw.dtype}; labels must be integers or strings"
            )
        if y_raw.dtype.kind == "S":
            y_raw = np.char.decode(y_raw, "utf-8", errors="replace")
        y, names_out = encode_labels(y_raw, max_classes=max_classes, source="array 'y'")
    if x.ndim == 2:
        x32 = x.astype(np.float32)
        _check_finite(x32, "array 'x'")
        kind = _tabular_kind(x32)
    else:
        x32 = _npz_images(x)
        kind = DataKind.image
    return ParsedUpload(x32, y, kind, names_out, _summary("npz", x32, y, kind, names_out))


def _npz_array(f: Any, name: str) -> np.ndarray:
    try:
        arr = f[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DatasetError(
                f"array {name!r} holds Python objects (dtype=object), which are never loaded "
                "(unpickling runs code); save plain numeric arrays"
            ) from None
        raise
    return np.asarray(arr)


def _npz_images(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None, :, :]  # (N, H, W) -> (N, 1, H, W)
    elif x.shape[1] not in (1, 3):
        hint = (
            " (it looks channels-last: transpose it to (N, C, H, W))"
            if x.shape[3] in (1, 3)
            else ""
        )
        raise DatasetError(
            f"array 'x' has shape {x.shape}: images need 1 (grayscale) or 3 (RGB) channels "
            f"as (N, C, H, W){hint}"
        )
    if x.dtype.kind == "f":
        _check_finite(x, "array 'x'")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DatasetError(
                f"array 'x' holds float images ranging from {lo:g} to {hi:g}; float pixels "
                "must be in [0, 1] (or save integers 0-255)"
            )
        return np.ascontiguousarray(x, dtype=np.float32)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise DatasetError(
            f"array 'x' holds integer images ranging from {lo} to {hi}; integer pixels must "
            "be 0-255"
        )
    return (x.astype(np.float32) / 255.0).astype(np.float32)


def _check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DatasetError(
            f"{what} holds {x[where]} at index {where}; NaN and infinite values are not allowed"
        )


# --- ZIP of PNG folders -----------------------------------------------------------------------

_CLUTTER_DIRS = {"__MACOSX"}
_CLUTTER_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"}


def parse_zip(
    data: bytes, *, max_bytes: int, max_classes: int = DEFAULT_MAX_CLASSES
) -> ParsedUpload:
    """A ZIP of PNG images in one folder per class, decoded in memory (see the module doc)."""
    from PIL import Image, UnidentifiedImageError

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("not a valid ZIP archive") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if not infos:
            raise DatasetError("the ZIP archive is empty")
        pngs: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        skipped = 0
        for info in infos:
            parts = _safe_parts(info.filename)
            if parts[0] in _CLUTTER_DIRS or _is_clutter(parts[-1]):
                skipped += 1
                continue
            if not parts[-1].lower().endswith(".png"):
                raise DatasetError(
                    f"{info.filename!r} in the ZIP is not a PNG image; the archive may hold only "
                    ".png files in class folders (convert or remove other files)"
                )
            if info.flag_bits & 0x1:
                raise DatasetError(f"{info.filename!r} in the ZIP is encrypted")
            pngs.append((parts, info))
        if not pngs:
            raise DatasetError("the ZIP archive holds no PNG images")
        _check_expanded(sum(i.file_size for _, i in pngs), max_bytes, what="the ZIP archive")
        pngs = _class_layout(pngs)
        classes = sorted({parts[0] for parts, _ in pngs})
        if len(classes) > max_classes:
            raise DatasetError(
                f"the ZIP archive has {len(classes)} class folders; at most {max_classes} "
                "classes are allowed"
            )
        class_id = {c: i for i, c in enumerate(classes)}
        pngs.sort(key=lambda p: p[0])
        pixels: list[np.ndarray] = []
        labels: list[int] = []
        first: tuple[str, tuple[int, int]] | None = None
        color = False
        for parts, info in pngs:
            try:
                raw = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError) as exc:
                raise DatasetError(f"{info.filename!r} in the ZIP is damaged: {exc}") from None
            try:
                img = Image.open(io.BytesIO(raw))  # reads the header only
                fmt = img.format
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
                raise DatasetError(
                    f"{info.filename!r} in the ZIP is not a readable image"
                ) from None
            if fmt != "PNG":
                raise DatasetError(f"{info.filename!r} in the ZIP is a {fmt} image, not a PNG")
            if first is None:
                first = (info.filename, img.size)
            elif img.size != first[1]:
                raise DatasetError(
                    f"image of the wrong size: {info.filename!r} is {_wxh(img.size)} but "
                    f"{first[0]!r} is {_wxh(first[1])}; every image must have the same size"
                )
            c = 1 if img.mode in _GRAY_MODES or img.mode.startswith("I") else 3
            if not pixels or (c == 3 and not color):
                # The float32 array all images will make, bounded before decoding any more.
                decoded = len(pngs) * c * img.size[0] * img.size[1] * 4
                _check_expanded(decoded, max_bytes, what="the ZIP archive's images")
            color = color or c == 3
            try:
                arr = _png_pixels(img)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise DatasetError(f"{info.filename!r} in the ZIP is a broken PNG: {exc}") from None
            pixels.append(arr)
            labels.append(class_id[parts[0]])
    channels = 3 if color else 1
    x = np.stack([np.broadcast_to(p, (channels, *p.shape[1:])) for p in pixels])  # (N, C, H, W)
    y = np.asarray(labels, dtype=np.int64)
    summary = _summary("zip", x, y, DataKind.image, classes, color="rgb" if color else "grayscale")
    if skipped:
        summary["skipped_files"] = skipped
    return ParsedUpload(x, y, DataKind.image, classes, summary)


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path's parts, refusing anything that could point outside the archive."""
    norm = name.replace("\\", "/")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts or not parts:
        raise DatasetError(
            f"unsafe path {name!r} in the ZIP: absolute paths and '..' are not allowed"
        )
    return parts


def _is_clutter(filename: str) -> bool:
    return filename.lower() in _CLUTTER_FILES or filename.startswith("._")


def _class_layout(
    pngs: list[tuple[tuple[str, ...], zipfile.ZipInfo]],
) -> list[tuple[tuple[str, ...], zipfile.ZipInfo]]:
    """Strip one wrapping top-level folder, then demand ``<class>/<image>.png`` everywhere."""
    tops = {parts[0] for parts, _ in pngs}
    if len(tops) == 1 and all(len(parts) >= 3 for parts, _ in pngs):
        pngs = [(parts[1:], info) for parts, info in pngs]
    for parts, info in pngs:
        if len(parts) == 1:
            raise DatasetError(
                f"{info.filename!r} is not inside a class folder; lay the ZIP out as "
                "<class>/<image>.png (e.g. cat/001.png)"
            )
        if len(parts) > 2:
            raise DatasetError(
                f"{info.filename!r} is nested too deeply; lay the ZIP out as <class>/<image>.png "
                "(optionally inside one top-level folder)"
            )
    return pngs


def _png_pixels(img: Any) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1]: C = 1 for grayscale modes, 3 for everything else."""
    if img.mode.startswith("I"):  # 16-bit grayscale (Pillow reads it as I or I;16)
        return (np.asarray(img, dtype=np.float64)[None] / 65535.0).clip(0, 1).astype(np.float32)
    if img.mode in _GRAY_MODES:
        return np.asarray(img.convert("L"), dtype=np.float32)[None] / 255.0
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3), alpha dropped
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# --- IDX (MNIST layout) -----------------------------------------------------------------------

# The third byte of the magic number: element type (http://yann.lecun.com/exdb/mnist/).
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(source: str | os.PathLike[str] | bytes, *, max_bytes: int | None = None) -> np.ndarray:
    """One IDX array from a path or bytes, plain or gzipped, in native byte order.

    A path that does not exist is also tried with ``.gz`` appended (MNIST ships gzipped).
    The layout: two zero bytes, a type code, the number of dimensions, each dimension as a
    big-endian uint32, then the values, big-endian, row-major.
    """
    label, raw = _idx_bytes(source, max_bytes)
    if len(raw) < 4:
        raise DatasetError(f"{label} is truncated: {len(raw)} bytes, not even an IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{label} is not an IDX file: magic number 0x{magic:08X} (expected 0x000008NN for "
            "unsigned bytes, e.g. 0x00000803 for MNIST images, 0x00000801 for labels)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{label} is truncated inside its header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    if max_bytes is not None:
        _check_expanded(expected, max_bytes, what=label)
    have = len(raw) - header
    shape = "x".join(map(str, dims))
    if have < expected:
        raise DatasetError(
            f"{label} is truncated: its header promises {shape} values ({_bytes(expected)}) "
            f"but only {_bytes(have)} follow"
        )
    if have > expected:
        raise DatasetError(
            f"{label} has {_bytes(have - expected)} of extra data after its {shape} values"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def load_idx_pair(
    images: str | os.PathLike[str] | bytes,
    labels: str | os.PathLike[str] | bytes,
    *,
    max_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An IDX image file and its label file: ``(x uint8 (N, H, W), y int64 (N,))``."""
    x = read_idx(images, max_bytes=max_bytes)
    y = read_idx(labels, max_bytes=max_bytes)
    if x.ndim == 1 and y.ndim == 3:
        raise DatasetError("the IDX image and label files look swapped")
    if x.ndim != 3:
        raise DatasetError(f"IDX images must have 3 dimensions (N, H, W); got shape {x.shape}")
    if y.ndim != 1:
        raise DatasetError(f"IDX labels must have 1 dimension (N,); got shape {y.shape}")
    for what, arr in (("images", x), ("labels", y)):
        if arr.dtype != np.uint8:
            raise DatasetError(
                f"IDX {what} must be unsigned bytes (type code 0x08); got {arr.dtype}"
            )
    if len(x) != len(y):
        raise DatasetError(
            f"the IDX image file has {len(x)} images but the label file has {len(y)} labels"
        )
    return x, y.astype(np.int64)


def _idx_bytes(source: str | os.PathLike[str] | bytes, max_bytes: int | None) -> tuple[str, bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        label, raw = "the IDX data", bytes(source)
    else:
        path = Path(source)
        if not path.is_file() and Path(f"{path}.gz").is_file():
            path = Path(f"{path}.gz")
        if not path.is_file():
            raise DatasetError(f"IDX file not found: {source} (nor {source}.gz)")
        label = f"IDX file {path.name!r}"
        if max_bytes is not None:
            check_size(path.stat().st_size, max_bytes, what=label)
        raw = path.read_bytes()
    if max_bytes is not None:
        check_size(len(raw), max_bytes, what=label)
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        raw = _gunzip(raw, label, None if max_bytes is None else MAX_EXPANSION * max_bytes)
    return label, raw


def _gunzip(raw: bytes, label: str, limit: int | None) -> bytes:
    """Decompress at most ``limit`` bytes (a gzip bomb stops there, not at the end)."""
    if limit is None:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{label} is a broken gzip file: {exc}") from None
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise DatasetError(f"{label} is a broken gzip file: {exc}") from None
    if len(out) > limit:
        raise UploadTooLarge(
            f"{label} decompresses to more than {_bytes(limit)}", size=len(out), limit=limit
        )
    if not d.eof:
        raise DatasetError(f"{label} is a truncated gzip file")
    return out
