"""Uploads: every format parses, every rejection says what is wrong, and stored uploads train."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.datasets import DataKind, load_dataset
from ml.errors import DatasetError
from ml.specs import DatasetRef
from ml.uploads import (
    MAX_EXPANSION,
    UploadTooLarge,
    load_idx_pair,
    parse_upload,
    read_idx,
    store_upload,
)

MB = 1_000_000


def parse(filename: str, data: bytes, **kw: object) -> object:
    kw.setdefault("max_bytes", MB)
    return parse_upload(filename, data, **kw)  # type: ignore[arg-type]


def reject(filename: str, data: bytes, *fragments: str, **kw: object) -> str:
    """Parse, expecting a DatasetError whose message holds every fragment; return it."""
    with pytest.raises(DatasetError) as info:
        parse(filename, data, **kw)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- builders ---------------------------------------------------------------------------------


def csv_bytes(text: str) -> bytes:
    return text.encode()


def npz_bytes(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def png_bytes(size: tuple[int, int] = (4, 3), mode: str = "L", value: int = 128) -> bytes:
    buf = io.BytesIO()
    color = value if mode in ("L", "1") else (value, 255 - value, 0)[: len(mode)]
    Image.new(mode, size, color).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def image_zip(n_per_class: int = 3, classes: tuple[str, ...] = ("cat", "dog")) -> dict[str, bytes]:
    return {
        f"{c}/{i:03d}.png": png_bytes(value=40 * k + i)
        for k, c in enumerate(classes)
        for i in range(n_per_class)
    }


TABLE = "a,b,c,label\n" + "".join(
    f"{i},{i * 0.5},{-i},{'cat' if i % 2 else 'dog'}\n" for i in range(10)
)


# --- size limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.csv", "t.npz", "t.zip"])
def test_every_format_rejects_an_upload_over_max_bytes(name: str) -> None:
    with pytest.raises(UploadTooLarge) as info:
        parse_upload(name, b"x" * 101, max_bytes=100)
    assert info.value.size == 101 and info.value.limit == 100
    assert "101 bytes, over the 100 bytes limit" in str(info.value)


def test_upload_too_large_is_a_dataset_error() -> None:
    assert issubclass(UploadTooLarge, DatasetError)


def test_unknown_extension_names_the_supported_ones() -> None:
    reject("data.xlsx", b"PK..", "'.xlsx'", ".csv", ".npz", ".zip")


# --- CSV --------------------------------------------------------------------------------------


def test_csv_with_string_labels_maps_sorted_names_to_class_ids() -> None:
    p = parse("t.csv", csv_bytes(TABLE))
    assert p.kind is DataKind.tabular
    assert p.x.dtype == np.float32 and p.x.shape == (10, 3)
    assert p.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(p.y, [1, 0] * 5)  # 0 is "dog" (even rows) -> id 1
    np.testing.assert_allclose(p.x[3], [3, 1.5, -3])
    assert p.summary["label_column"] == "label"
    assert p.summary["class_counts"] == {"cat": 5, "dog": 5}


def test_csv_integer_labels_sort_numerically_and_label_column_may_be_named() -> None:
    rows = "".join(f"{i},{[10, 2, 7][i % 3]}\n" for i in range(12))
    p = parse("t.csv", csv_bytes("f,Outcome\n" + rows), label_column="outcome")
    assert p.class_names == ["2", "7", "10"]  # numeric order, not "10" < "2"
    np.testing.assert_array_equal(p.y[:3], [2, 0, 1])


@pytest.mark.parametrize("column", ["y", "Target", "CLASS"])
def test_csv_finds_the_usual_label_column_names(column: str) -> None:
    rows = "".join(f"{i},{i % 2}\n" for i in range(10))
    p = parse("t.csv", csv_bytes(f"f,{column}\n{rows}"))
    assert p.summary["label_column"] == column


def test_csv_with_two_features_is_points() -> None:
    rows = "".join(f"{i},{-i},{i % 2}\n" for i in range(10))
    assert parse("t.csv", csv_bytes("u,v,label\n" + rows)).kind is DataKind.points


def test_csv_empty_file() -> None:
    reject("t.csv", b"  \n", "the CSV file is empty")


def test_csv_header_without_rows() -> None:
    reject("t.csv", b"a,label\n", "header but no data rows")


def test_csv_missing_label_column_lists_names_looked_for_and_columns() -> None:
    msg = reject("t.csv", b"a,b\n1,2\n", "no label column")
    assert "'label', 'y', 'target', 'class'" in msg
    assert "'a', 'b'" in msg


def test_csv_named_label_column_missing() -> None:
    reject("t.csv", b"a,b\n1,2\n", "label column 'kind' not found", "'a', 'b'", label_column="kind")


def test_csv_non_numeric_cell_names_line_and_column() -> None:
    reject("t.csv", b"a,b,label\n1,2,x\n3,abc,y\n", "line 3, column 'b'", "'abc'", "not a number")


def test_csv_empty_cell_names_line_and_column() -> None:
    reject("t.csv", b"a,b,label\n1,,x\n", "line 2, column 'b'", "is empty")


def test_csv_ragged_row() -> None:
    reject("t.csv", b"a,b,label\n1,2,x\n3,y\n", "line 3", "2 cells", "header has 3 columns")


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_csv_nan_and_inf_are_rejected(cell: str) -> None:
    data = f"a,b,label\n1,2,x\n3,{cell},y\n".encode()
    reject("t.csv", data, "line 3, column 'b'", "NaN and infinite values are not allowed")


def test_csv_too_many_classes() -> None:
    rows = "".join(f"{i},c{i}\n" for i in range(30))
    reject(
        "t.csv", csv_bytes("a,label\n" + rows), "30 distinct values", "at most 20", max_classes=20
    )


def test_csv_fractional_labels_are_not_classes() -> None:
    reject("t.csv", b"a,label\n1,0.5\n2,1.5\n", "'0.5'", "regression target")


def test_csv_unnamed_index_column_gets_a_hint() -> None:
    reject("t.csv", b",a,label\n0,1,x\n", "column 1", "no name", "index=False")


def test_csv_semicolons_get_a_hint() -> None:
    reject("t.csv", b"a;b;label\n1;2;x\n", "';'", "commas")


def test_csv_not_utf8() -> None:
    reject("t.csv", b"a,label\n\xff\xfe,1\n", "not UTF-8")


# --- NPZ --------------------------------------------------------------------------------------


def test_npz_tabular_with_int_labels() -> None:
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    p = parse("t.npz", npz_bytes(x=x, y=np.arange(10) % 2))
    assert p.kind is DataKind.tabular and p.x.dtype == np.float32
    np.testing.assert_array_equal(p.x, x)
    np.testing.assert_array_equal(p.y, np.arange(10) % 2)
    assert p.class_names == ["0", "1"]


def test_npz_unlabelled_images_are_scaled_and_get_a_channel() -> None:
    x = np.full((10, 5, 4), 255, dtype=np.uint8)
    x[0, 0, 0] = 0
    p = parse("t.npz", npz_bytes(x=x))
    assert p.kind is DataKind.image and p.y is None and p.class_names == []
    assert p.x.shape == (10, 1, 5, 4) and p.x.dtype == np.float32
    assert p.x.max() == 1.0 and p.x[0, 0, 0, 0] == 0.0


def test_npz_rgb_float_images_and_string_labels() -> None:
    x = np.random.default_rng(0).random((10, 3, 4, 4))
    y = np.array(["b", "a"] * 5)
    p = parse("t.npz", npz_bytes(x=x, y=y))
    assert p.x.shape == (10, 3, 4, 4) and p.class_names == ["a", "b"]
    np.testing.assert_array_equal(p.y, [1, 0] * 5)


def test_npz_object_array_is_rejected_not_unpickled() -> None:
    x = np.array([[1.0, 2.0], {"evil": 1}], dtype=object)
    reject("t.npz", npz_bytes(x=x), "array 'x' holds Python objects", "never loaded")


def test_npz_wrong_shape() -> None:
    reject("t.npz", npz_bytes(x=np.zeros(10)), "shape (10,)", "expected (N, D)")


def test_npz_channels_last_gets_a_hint() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((4, 8, 8, 3))), "channels-last", "(N, C, H, W)")


def test_npz_length_mismatch() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((10, 3)), y=np.zeros(9, dtype=int)), "10 rows", "9 labels")


def test_npz_labels_must_be_1d() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((10, 3)), y=np.zeros((10, 1))), "'y' has shape (10, 1)")


def test_npz_non_numeric_x() -> None:
    reject("t.npz", npz_bytes(x=np.array([["a", "b"]] * 4)), "dtype <U1", "not numeric")


def test_npz_non_integer_labels() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((4, 3)), y=np.array([0.5, 1, 0, 1])), "0.5", "not a class")


def test_npz_too_many_classes() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((50, 2)), y=np.arange(50)), "50 distinct", max_classes=10)


def test_npz_empty() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((0, 3))), "'x' is empty")


def test_npz_without_x() -> None:
    reject("t.npz", npz_bytes(y=np.zeros(3)), "no array named 'x'")


def test_npz_extra_arrays_are_named() -> None:
    reject("t.npz", npz_bytes(x=np.zeros((4, 2)), names=np.zeros(2)), "unexpected arrays 'names'")


def test_npz_nan() -> None:
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    reject("t.npz", npz_bytes(x=x), "index (2, 1)", "NaN and infinite values are not allowed")


def test_npz_float_images_out_of_range() -> None:
    reject("t.npz", npz_bytes(x=np.full((4, 3, 3), 2.0)), "from 2 to 2", "[0, 1]")


def test_npz_not_a_zip() -> None:
    reject("t.npz", b"definitely not numpy", "not a valid .npz")


def test_npz_that_expands_past_the_limit_is_too_large() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((1000, 100)))  # 800 kB of zeros, a few kB compressed
    data = buf.getvalue()
    limit = len(data) + 10
    with pytest.raises(UploadTooLarge) as info:
        parse_upload("t.npz", data, max_bytes=limit)
    assert "expands to" in str(info.value) and info.value.limit == MAX_EXPANSION * limit


# --- ZIP of PNG folders -----------------------------------------------------------------------


def test_zip_grayscale_class_folders() -> None:
    p = parse("t.zip", zip_bytes(image_zip()))
    assert p.kind is DataKind.image and p.class_names == ["cat", "dog"]
    assert p.x.shape == (6, 1, 3, 4) and p.x.dtype == np.float32  # 4 wide, 3 high
    np.testing.assert_array_equal(p.y, [0, 0, 0, 1, 1, 1])
    assert p.x[1, 0, 0, 0] == pytest.approx(1 / 255)
    assert p.x[3, 0, 0, 0] == pytest.approx(40 / 255)


def test_zip_in_one_wrapping_folder_with_mixed_modes_becomes_rgb() -> None:
    files = {f"pets/{k}": v for k, v in image_zip().items()}
    files["pets/dog/009.png"] = png_bytes(mode="RGB", value=255)
    files["__MACOSX/pets/._cat"] = b"junk"
    files["pets/.DS_Store"] = b"junk"
    p = parse("t.zip", zip_bytes(files))
    assert p.class_names == ["cat", "dog"] and p.x.shape == (7, 3, 3, 4)
    np.testing.assert_allclose(p.x[-1, :, 0, 0], [1.0, 0.0, 0.0])  # the RGB one
    np.testing.assert_allclose(p.x[0, :, 0, 0], [0.0, 0.0, 0.0])  # gray repeated per channel
    assert p.summary["color"] == "rgb" and p.summary["skipped_files"] == 2


def test_zip_image_of_the_wrong_size_names_file_and_sizes() -> None:
    files = image_zip()
    files["dog/bad.png"] = png_bytes(size=(5, 5))
    reject("t.zip", zip_bytes(files), "image of the wrong size", "'dog/bad.png' is 5x5", "4x3")


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "cat/../../evil.png", "C:/x.png"])
def test_zip_path_traversal_is_rejected(name: str) -> None:
    files = image_zip()
    files[name] = png_bytes()
    reject("t.zip", zip_bytes(files), "unsafe path", "'..' are not allowed")


def test_zip_non_png_file_is_rejected_by_name() -> None:
    files = image_zip()
    files["cat/notes.txt"] = b"hello"
    reject("t.zip", zip_bytes(files), "'cat/notes.txt'", "not a PNG")


def test_zip_jpeg_named_png_is_rejected() -> None:
    buf = io.BytesIO()
    Image.new("L", (4, 3)).save(buf, format="JPEG")
    files = image_zip()
    files["cat/x.png"] = buf.getvalue()
    reject("t.zip", zip_bytes(files), "'cat/x.png'", "JPEG image, not a PNG")


def test_zip_too_many_classes() -> None:
    files = image_zip(n_per_class=1, classes=tuple(f"c{i}" for i in range(5)))
    reject("t.zip", zip_bytes(files), "5 class folders", "at most 3", max_classes=3)


def test_zip_empty_archive() -> None:
    reject("t.zip", zip_bytes({}), "the ZIP archive is empty")


def test_zip_with_only_clutter_has_no_images() -> None:
    reject("t.zip", zip_bytes({".DS_Store": b"x"}), "holds no PNG images")


def test_zip_image_outside_a_class_folder() -> None:
    reject("t.zip", zip_bytes({"a.png": png_bytes()}), "'a.png' is not inside a class folder")


def test_zip_bomb_is_refused_before_extracting() -> None:
    data = zip_bytes({"cat/a.png": b"\0" * 5 * MB})  # ~5 kB compressed
    assert len(data) < 20_000
    with pytest.raises(UploadTooLarge) as info:
        parse_upload("t.zip", data, max_bytes=100_000)
    assert "the ZIP archive expands to 5,000,000 bytes" in str(info.value)


def test_zip_png_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG", optimize=True)  # 9 Mpx, ~9 kB
    files = {"cat/a.png": buf.getvalue(), "dog/b.png": buf.getvalue()}
    data = zip_bytes(files, compression=zipfile.ZIP_STORED)
    with pytest.raises(UploadTooLarge) as info:
        parse_upload("t.zip", data, max_bytes=len(data) + 1)
    assert "images expands to 72,000,000 bytes" in str(info.value)


def test_zip_not_an_archive() -> None:
    reject("t.zip", b"nope", "not a valid ZIP archive")


# --- IDX --------------------------------------------------------------------------------------


def test_read_idx_round_trips_bytes_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(idx_bytes(arr)), arr)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)  # finds the .gz
    floats = np.array([1.5, -2.0], dtype=np.float32)
    out = read_idx(idx_bytes(floats, code=0x0D))
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, floats)


def test_idx_wrong_magic() -> None:
    with pytest.raises(DatasetError, match="not an IDX file: magic number 0x89504E47"):
        read_idx(png_bytes())


def test_idx_truncated() -> None:
    data = idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8))[:-1]
    with pytest.raises(DatasetError, match=r"truncated: its header promises 3x2x2 values"):
        read_idx(data)


def test_idx_pair_count_mismatch() -> None:
    images = idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8))
    labels = idx_bytes(np.zeros(2, dtype=np.uint8))
    with pytest.raises(DatasetError, match="has 3 images but the label file has 2 labels"):
        load_idx_pair(images, labels)


def test_idx_images_must_be_unsigned_bytes() -> None:
    images = idx_bytes(np.zeros((3, 2, 2), dtype=np.float32), code=0x0D)
    labels = idx_bytes(np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"unsigned bytes \(type code 0x08\)"):
        load_idx_pair(images, labels)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="IDX file not found"):
        read_idx(tmp_path / "nope")


def test_mnist_layout_loads_through_load_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    y = np.arange(50, dtype=np.uint8) % 10
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(x))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    ds = load_dataset(DatasetRef(name="mnist"), data_dir=tmp_path)
    assert ds.kind is DataKind.image and ds.num_classes == 10
    assert ds.sample_shape == (1, 28, 28)
    assert len(ds.x_train) + len(ds.x_val) == 50
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() <= ds.x_train.max() <= 1.0
    all_x = np.concatenate([ds.x_train, ds.x_val])[:, 0]
    assert sorted(map(bytes, np.round(all_x * 255).astype(np.uint8))) == sorted(map(bytes, x))


# --- storing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("t.csv", csv_bytes(TABLE)),
        ("t.npz", npz_bytes(x=np.random.default_rng(1).random((10, 6, 6)))),
        ("t.zip", zip_bytes(image_zip(n_per_class=5))),
    ],
)
def test_stored_upload_round_trips_through_load_dataset(
    tmp_path: Path, filename: str, data: bytes
) -> None:
    p = parse(filename, data)
    path = store_upload(p, tmp_path, "ds_1", "my data")
    assert path == tmp_path / "ds_1.npz"
    assert [f.name for f in tmp_path.iterdir()] == ["ds_1.npz"]  # no temporary left
    ds = load_dataset(DatasetRef(id="ds_1"), uploads_dir=tmp_path)
    assert ds.name == "my data" and ds.kind is p.kind
    assert ds.class_names == p.class_names
    assert ds.sample_shape == p.x.shape[1:]
    got = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(bytes, got)) == sorted(map(bytes, p.x))
    if p.y is None:
        assert ds.y_train is None and ds.num_classes == 0
    else:
        assert ds.num_classes == len(p.class_names)
        assert sorted(np.concatenate([ds.y_train, ds.y_val]).tolist()) == sorted(p.y.tolist())


def test_store_upload_refuses_an_unsafe_id(tmp_path: Path) -> None:
    p = parse("t.csv", csv_bytes(TABLE))
    with pytest.raises(DatasetError, match="may only hold letters"):
        store_upload(p, tmp_path, "../x", "x")


def test_upload_too_small_to_split_is_rejected_at_upload() -> None:
    reject("t.csv", b"a,label\n1,x\n", "too few rows")
