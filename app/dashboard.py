"""The web dashboard: ``GET /`` and its static files, plus the form schema it is built from.

No build step: ``app/static`` holds plain HTML, CSS and a JavaScript module that talks to the
``/v1`` API (job list, submit form, live loss curves over Server-Sent Events, GAN samples).
``app/main.py`` mounts it with ``app.include_router(dashboard.router)``.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ml.specs import EXAMPLES, HYPERPARAMS, DeviceChoice, ModelKind

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


class FormField(BaseModel):
    """One input of the submit form, from a hyperparameter's pydantic field."""

    name: str
    type: str  # integer | number | boolean | choice
    default: Any
    description: str | None = None
    choices: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False


class ModelForm(BaseModel):
    model: ModelKind
    description: str
    dataset: str  # the example's dataset: a sensible default
    fields: list[FormField]


class DashboardSpecs(BaseModel):
    models: list[ModelForm]
    devices: list[str]


def _description(cls: type[BaseModel], name: str) -> str | None:
    """A field's description, inherited from a base class when the override has none."""
    for klass in cls.__mro__:
        fields = getattr(klass, "model_fields", {})
        if name in fields and fields[name].description:
            return str(fields[name].description)
    return None


def _form_field(cls: type[BaseModel], name: str, info: FieldInfo) -> FormField:
    annotation = info.annotation
    default = info.get_default(call_default_factory=True)
    choices: list[str] | None = None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        kind, choices = "choice", [str(m.value) for m in annotation]
        default = default.value if isinstance(default, Enum) else default
    elif annotation is bool:
        kind = "boolean"
    elif annotation is int:
        kind = "integer"
    else:
        kind = "number"
    field = FormField(
        name=name,
        type=kind,
        default=default,
        choices=choices,
        description=_description(cls, name),
    )
    for meta in info.metadata:  # annotated_types bounds: Ge, Gt, Le, Lt
        for attr, target, exclusive in (
            ("ge", "minimum", False),
            ("gt", "minimum", True),
            ("le", "maximum", False),
            ("lt", "maximum", True),
        ):
            value = getattr(meta, attr, None)
            if value is not None:
                setattr(field, target, float(value))
                setattr(field, f"exclusive_{target}", exclusive)
    return field


@cache
def dashboard_specs() -> DashboardSpecs:
    """The submit form of each model kind: every hyperparameter with its default and bounds."""
    models = []
    for kind, cls in HYPERPARAMS.items():
        dataset = EXAMPLES[kind.value]["dataset"]
        assert isinstance(dataset, dict)
        models.append(
            ModelForm(
                model=kind,
                description=(cls.__doc__ or "").strip().splitlines()[0],
                dataset=str(dataset.get("name", "")),
                fields=[_form_field(cls, n, info) for n, info in cls.model_fields.items()],
            )
        )
    return DashboardSpecs(models=models, devices=[d.value for d in DeviceChoice])


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type=MEDIA_TYPES[".html"], headers=NO_CACHE
    )


@router.get("/dashboard/specs.json", response_model=DashboardSpecs)
def specs() -> DashboardSpecs:
    """The submit forms' fields, defaults and bounds, built from ``ml.specs``."""
    return dashboard_specs()


@router.get("/static/{filename}", response_class=FileResponse)
def static_file(filename: str) -> FileResponse:
    """A file of ``app/static`` (flat folder; nothing outside it is reachable)."""
    path = STATIC_DIR / filename
    if "/" in filename or filename.startswith(".") or path.suffix not in MEDIA_TYPES:
        raise HTTPException(404, f"no static file {filename!r}")
    if not path.is_file():
        raise HTTPException(404, f"no static file {filename!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)
