"""Using what a job learned: samples, progress animation, predictions, checkpoint download.

Models are read from the job's latest checkpoint (even mid-training) through the
:class:`~app.sampling.ModelCache`; torch is imported on the first such request.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.deps import JobDep, ModelsDep, SettingsDep
from app.errors import Conflict, Invalid, NoCheckpoint, NotReady, TooLarge, WrongModel
from app.sampling import ModelCache, checkpoint_dir, checkpoint_version
from app.schemas import (
    Prediction,
    PredictionsPublic,
    PredictRequest,
    SampleFormat,
    SamplesPublic,
)
from app.settings import Settings
from app.store import JobRecord
from ml import layout
from ml.errors import CheckpointError, DatasetError
from ml.specs import ModelKind

if TYPE_CHECKING:
    from ml.inference import LoadedModel

router = APIRouter(prefix="/v1/jobs", tags=["models"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job."},
    409: {"description": "Wrong model kind, or no checkpoint yet."},
}
PNG, GIF, NPY = "image/png", "image/gif", "application/octet-stream"
REFERENCE_POINTS = 2000  # real points drawn under a 2-D scatter of samples
PROGRESS_DIR = "progress"  # the per-epoch grids a GAN writes in its run directory
PROGRESS_GIF = "progress.gif"  # their animation, cached beside them
MAX_GIF_FRAMES = 60  # a long run's animation shows this many of its grids, evenly spaced


def _model(job: JobRecord, models: ModelCache, settings: Settings) -> LoadedModel:
    """The job's latest checkpoint, loaded (409 if it has none yet)."""
    directory = checkpoint_dir(settings.runs_dir, job.id)
    for attempt in range(2):  # a checkpoint being replaced right now: read the new one
        try:
            model = models.get(job.id, directory)
        except CheckpointError as exc:
            if attempt:
                raise NoCheckpoint(f"the checkpoint of job {job.id} is unreadable: {exc}") from exc
            continue
        if model is None:
            raise NoCheckpoint(f"job {job.id} ({job.status.value}) has no checkpoint yet")
        return model
    raise AssertionError("unreachable")


def _reference(job: JobRecord, settings: Settings) -> np.ndarray | None:
    """Real 2-D points to draw under a scatter of samples, when the dataset is built in."""
    from ml.datasets import load_dataset

    try:
        data = load_dataset(
            job.spec.dataset, uploads_dir=settings.uploads_dir, data_dir=settings.data_dir
        )
    except DatasetError:
        return None
    x = data.x_train.reshape(len(data.x_train), -1)
    return x[:REFERENCE_POINTS, :2] if x.shape[1] == 2 else None


@router.get(
    "/{job_id}/samples",
    responses={
        **ERRORS,
        200: {
            "content": {PNG: {}, "application/json": {}, NPY: {}},
            "description": "A PNG grid (or scatter), JSON arrays, or a .npy file.",
        },
    },
)
def samples(
    job: JobDep,
    models: ModelsDep,
    settings: SettingsDep,
    n: Annotated[int, Query(ge=1, le=65536, description="How many samples.")] = 64,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="Same seed, same samples.")] = 0,
    format: SampleFormat = SampleFormat.png,
    nrow: Annotated[int, Query(ge=1, le=64, description="Images per grid row.")] = 8,
) -> Response:
    """GAN samples from the latest checkpoint: a PNG grid, JSON arrays or .npy."""
    if job.model != ModelKind.gan:
        raise WrongModel(f"samples come from a gan; job {job.id} is a {job.model}")
    if n > settings.max_samples:
        raise Invalid(f"n must be at most {settings.max_samples}")
    model = _model(job, models, settings)
    x = model.sample(n, seed)
    if format is SampleFormat.json:
        body = SamplesPublic(
            n=n, seed=seed, step=model.step, shape=list(x.shape), samples=x.tolist()
        )
        return Response(body.model_dump_json(), media_type="application/json")
    if format is SampleFormat.npy:
        buf = io.BytesIO()
        np.save(buf, x, allow_pickle=False)
        return Response(buf.getvalue(), media_type=NPY, headers=_attachment(f"{job.id}.npy"))
    from ml.images import samples_png

    reference = _reference(job, settings) if x.ndim == 2 else None
    try:
        png = samples_png(x, nrow=nrow, reference=reference)
    except ValueError as exc:
        raise Conflict(f"{exc}; ask for format=json or format=npy") from exc
    return Response(png, media_type=PNG, headers={"X-Checkpoint-Step": str(model.step)})


@router.get(
    "/{job_id}/progress.gif",
    responses={
        **ERRORS,
        200: {"content": {GIF: {}}, "description": "An animated GIF."},
        304: {"description": "Unchanged since the ETag sent in If-None-Match."},
    },
)
def progress_gif(job: JobDep, settings: SettingsDep, request: Request) -> Response:
    """The GAN's fixed-noise grids, one per epoch so far, as an animation (at most
    ``MAX_GIF_FRAMES`` of them, evenly spaced, the first and the latest always among them)."""
    if job.model != ModelKind.gan:
        raise WrongModel(f"progress images come from a gan; job {job.id} is a {job.model}")
    run_dir = settings.runs_dir / job.id
    frames = sorted((run_dir / PROGRESS_DIR).glob("epoch_*.png"))
    if not frames:
        raise NotReady(f"job {job.id} has no progress images yet (one is written per epoch)")
    key = _frames_key(frames)
    from ml.images import pick_frames

    frames = pick_frames(frames, MAX_GIF_FRAMES)
    headers = {"ETag": f'"{key}"', "Cache-Control": "no-cache"}  # revalidate every time
    if headers["ETag"] in request.headers.get("if-none-match", "").replace(" ", "").split(","):
        return Response(status_code=304, headers=headers)
    return Response(_cached_gif(run_dir, frames, key), media_type=GIF, headers=headers)


def _frames_key(frames: list[Path]) -> str:
    """Which frames a GIF shows: their count, and the newest one's name and mtime."""
    newest = frames[-1]
    return f"{len(frames)}-{newest.stem}-{newest.stat().st_mtime_ns}"


def _cached_gif(run_dir: Path, frames: list[Path], key: str) -> bytes:
    """``run_dir/progress.gif``, rebuilt only when its frames changed (its comment is ``key``).

    Rebuilding a 120-frame GIF takes most of a second; a page, or several, asking for it again
    get the file. It is replaced atomically, so a reader never sees half a GIF.
    """
    from PIL import Image

    from ml.images import progress_gif as make_gif

    cached = run_dir / PROGRESS_GIF
    try:
        data = cached.read_bytes()
        with Image.open(io.BytesIO(data)) as img:  # reads only the header
            if img.info.get("comment") == key.encode():
                return data
    except (OSError, SyntaxError, ValueError):
        pass  # missing or unreadable: build it
    data = make_gif(frames, comment=key)
    fd, tmp = tempfile.mkstemp(prefix=f".{PROGRESS_GIF}.", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, cached)
    except OSError:
        Path(tmp).unlink(missing_ok=True)  # a read-only or full disk: serve it uncached
    return data


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": PredictRequest.model_json_schema(),
                "example": {"inputs": [[0.5, -0.2]]},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "An image (CNN only).",
                        }
                    },
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/{job_id}/predict",
    response_model=PredictionsPublic,
    responses=ERRORS,
    openapi_extra=_PREDICT_BODY,
)
async def predict(
    job: JobDep, request: Request, models: ModelsDep, settings: SettingsDep
) -> PredictionsPublic:
    """Class probabilities from a neuron or CNN, for JSON inputs or an uploaded image."""
    if job.model not in (ModelKind.neuron, ModelKind.cnn):
        raise WrongModel(f"predict needs a neuron or a cnn; job {job.id} is a {job.model}")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        image = await _read_image_upload(request, settings.max_upload_bytes)
        return await run_in_threadpool(_predict_image, job, image, models, settings)
    inputs = await _read_inputs(request)
    return await run_in_threadpool(_predict, job, inputs, models, settings)


async def _read_inputs(request: Request) -> list[Any]:
    raw = await request.body()
    try:
        return PredictRequest.model_validate_json(raw).inputs
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


async def _read_image_upload(request: Request, max_bytes: int) -> bytes:
    if int(request.headers.get("content-length") or 0) > max_bytes + 64 * 1024:
        raise TooLarge(f"the upload is over the {max_bytes} byte limit")
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("send the image as the multipart field 'file'")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"the image is over the {max_bytes} byte limit")
    return data


def _predict(
    job: JobRecord, inputs: Any, models: ModelCache, settings: Settings
) -> PredictionsPublic:
    model = _model(job, models, settings)
    try:
        probs = model.predict(inputs)
    except (DatasetError, ValueError, TypeError) as exc:
        raise Invalid(str(exc)) from exc
    names = model.class_names or [str(i) for i in range(probs.shape[1])]
    preds = [
        Prediction(label=names[int(k)], class_index=int(k), probabilities=p.tolist())
        for p, k in zip(probs, probs.argmax(axis=1), strict=True)
    ]
    return PredictionsPublic(class_names=names, predictions=preds, step=model.step)


def _predict_image(
    job: JobRecord, data: bytes, models: ModelCache, settings: Settings
) -> PredictionsPublic:
    if job.model != ModelKind.cnn:
        raise Invalid('the neuron takes JSON inputs ({"inputs": [[...], ...]}), not images')
    model = _model(job, models, settings)
    return _predict(job, image_to_input(data, model.input_shape), models, settings)


def image_to_input(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Decode an image and fit it to the model's ``(C, H, W)``: grey or RGB, resized, in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            converted = img.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise Invalid(f"the file is not an image this API can read: {exc}") from exc
    resized = converted.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(resized, dtype=np.float32) / 255.0
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # (C, H, W)
    if arr.shape[0] != channels:
        raise Invalid(f"the model takes {channels} channels")
    return arr[None]  # (1, C, H, W)


@router.get(
    "/{job_id}/checkpoint",
    responses={
        **ERRORS,
        200: {
            "content": {NPY: {}, "application/json": {}},
            "description": "weights.safetensors, or config.json.",
        },
    },
)
def checkpoint(
    job: JobDep,
    settings: SettingsDep,
    part: Annotated[
        str,
        Query(pattern="^(weights|config)$", description="weights (safetensors) or config (JSON)."),
    ] = "weights",
) -> Response:
    """The trained weights (safetensors; the JSON config in its metadata) or the config."""
    directory = checkpoint_dir(settings.runs_dir, job.id)
    name = layout.CONFIG if part == "config" else layout.WEIGHTS
    for _ in range(3):  # read whole: a checkpoint replaced mid-download is retried
        try:
            data = (directory / name).read_bytes()
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        if part == "config":
            return Response(data, media_type="application/json")
        return Response(
            data,
            media_type=NPY,
            headers=_attachment(f"{job.id}-step{_step(directory)}.safetensors"),
        )
    raise NoCheckpoint(f"job {job.id} ({job.status.value}) has no checkpoint yet")


def _step(directory: Path) -> int:
    version = checkpoint_version(directory)
    return version[0] if version else 0


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
