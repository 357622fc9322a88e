"""Datasets: the built-ins (described on first use) and uploads (CSV, NPZ, ZIP of PNGs)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.catalog import Catalog
from app.deps import CatalogDep, SettingsDep, StoreDep
from app.errors import Invalid, InvalidDataset, TooLarge
from app.schemas import DatasetPublic, DatasetSource, DatasetsPublic
from app.settings import Settings
from app.store import DatasetRecord, JobStore, new_id
from ml.datasets import BUILTINS
from ml.errors import DatasetError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

FORM_SLACK = 64 * 1024  # multipart headers and small fields on top of the file itself
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .csv (numeric columns and a label column), an "
                            ".npz (x, optional y) or a .zip of PNG images, one folder per class.",
                        },
                        "name": {"type": "string", "description": "A label for people."},
                        "label_column": {"type": "string", "description": "CSV label column."},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={
        413: {"description": "Over MODELKILN_MAX_UPLOAD_BYTES."},
        422: {"description": "Not a dataset this API can read."},
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_dataset(request: Request, store: StoreDep, settings: SettingsDep) -> DatasetPublic:
    """Upload a dataset; train on it with {"dataset": {"id": ...}}."""
    limit = settings.max_upload_bytes
    if int(request.headers.get("content-length") or 0) > limit + FORM_SLACK:
        raise TooLarge(f"the upload is over the {limit} byte limit")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid("send the dataset as multipart/form-data with a 'file' field")
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise Invalid("send the dataset file as the multipart field 'file'")
    data = await upload.read(limit + 1)
    name, label = form.get("name"), form.get("label_column")
    fields = {
        "filename": PurePosixPath(upload.filename).name[:255],
        "name": name if isinstance(name, str) and name else None,
        "label_column": label if isinstance(label, str) and label else None,
    }
    record = await run_in_threadpool(_store_upload, data, store, settings, fields)
    return DatasetPublic.from_upload(record)


def _store_upload(
    data: bytes, store: JobStore, settings: Settings, fields: dict[str, Any]
) -> DatasetRecord:
    from ml.datasets import load_dataset
    from ml.specs import DatasetRef
    from ml.uploads import UploadTooLarge, parse_upload, store_upload

    filename: str = fields["filename"]
    name = (fields["name"] or PurePosixPath(filename).stem or "upload")[:200]
    try:
        parsed = parse_upload(
            filename, data, max_bytes=settings.max_upload_bytes, label_column=fields["label_column"]
        )
    except UploadTooLarge as exc:
        raise TooLarge(str(exc)) from exc
    except DatasetError as exc:
        raise InvalidDataset(str(exc)) from exc
    dataset_id = new_id()
    path = store_upload(parsed, settings.uploads_dir, dataset_id, name)
    try:
        info = load_dataset(DatasetRef(id=dataset_id), uploads_dir=settings.uploads_dir).describe()
        info["summary"] = parsed.summary
        return store.add_dataset(
            dataset_id,
            name=name,
            filename=filename,
            kind=parsed.kind.value,
            size_bytes=len(data),
            info=info,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@router.get("", response_model=DatasetsPublic)
def list_datasets(store: StoreDep, catalog: CatalogDep) -> DatasetsPublic:
    """Built-in datasets (with whether each is available here) and uploads, newest first."""
    data = [_builtin(catalog, name) for name in BUILTINS]
    data += [DatasetPublic.from_upload(r) for r in store.list_datasets()]
    return DatasetsPublic(data=data, count=len(data))


def _builtin(catalog: Catalog, name: str) -> DatasetPublic:
    base: dict[str, Any] = {"id": None, "source": DatasetSource.builtin, "ref": {"name": name}}
    try:
        info = catalog.builtin(name)
    except DatasetError as exc:
        return DatasetPublic(name=name, available=False, detail=str(exc), **base)
    fields = ("kind", "shape", "num_classes", "class_names", "train_size", "val_size")
    return DatasetPublic.model_validate(
        {"name": name, "available": True, **{k: info.get(k) for k in fields}, **base}
    )
