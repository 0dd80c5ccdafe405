"""The image catalog: source images, their degraded versions and restorations, in the database
and the content-addressed store. Every insert is idempotent by content or recipe, so re-running
a demo or a generation plan never duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import DegradedImage, Restoration, SourceImage
from db.rows import get_or_create
from review.errors import ReviewError
from review.media.degrade import BlurSpec, Degraded, degrade, kernel_from_bytes, kernel_to_bytes
from review.media.store import ImageStore

CONTENT_TYPES = ("face", "text", "object", "scene")


class PhotoError(ReviewError):
    """An uploaded photo cannot be added as asked; the message says what to give."""


def params_key(params: dict[str, Any]) -> str:
    """A stable identity for a parameter dict (sorted canonical JSON, sha256)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def recipe_key(params: dict[str, Any], model_identity: str = "") -> str:
    """What a restoration is unique on besides its input and method: its parameters and the
    identity of the model that made it (a content hash of the weights; '' for restorers without a
    model, whose key is then `params_key` alone, as it always was). So the same parameters with
    other weights are another restoration, never the earlier one."""
    if not model_identity:
        return params_key(params)
    return params_key({"model_identity": model_identity, "params": params})


def add_source(
    session: Session,
    store: ImageStore,
    image: Image.Image,
    *,
    title: str = "",
    origin: str = "",
    licence: str = "",
    content: str = "scene",
    is_reference: bool = True,
) -> SourceImage:
    """Store a decoded RGB image as a source; the same pixels return the existing row."""
    if content not in CONTENT_TYPES:
        raise ValueError(f"content must be one of {', '.join(CONTENT_TYPES)}, not {content!r}.")
    stored = store.put_image(image)
    row, _new = get_or_create(session, SourceImage, {"sha256": stored.sha256}, lambda: SourceImage(
        sha256=stored.sha256,
        path=stored.relpath,
        width=image.width,
        height=image.height,
        title=title,
        origin=origin,
        licence=licence,
        content=content,
        is_reference=is_reference,
    ))
    return row


def add_photo(session: Session, store: ImageStore, image: Image.Image, *, title: str, licence: str,
              content: str, already_blurred: bool = False) -> tuple[SourceImage, bool]:
    """An uploaded photo into the catalog: returns (its source row, whether it is new). The
    source/consent note is required (who took it, and on what terms it may be shown to reviewers),
    the content type must be given; the same pixels already stored return the existing row
    unchanged (False), whatever name or note they come with now."""
    if not (licence or "").strip():
        raise PhotoError("Write the source / consent note: where the photo comes from and on what "
                         "terms reviewers may see it.")
    if content not in CONTENT_TYPES:
        raise PhotoError(f"Choose the content type ({', '.join(CONTENT_TYPES)}), not {content!r}.")
    sha256 = store.put_image(image).sha256  # content-addressed: storing the same pixels is a no-op
    existing = session.scalar(select(SourceImage).where(SourceImage.sha256 == sha256))
    if existing is not None:
        return existing, False
    add = add_blurred_photo if already_blurred else add_source
    return add(session, store, image, title=title, origin="upload", licence=licence.strip(),
               content=content), True


def add_tried_photo(session: Session, store: ImageStore, image: Image.Image, *, title: str, licence: str,
                    content: str) -> tuple[SourceImage, bool]:
    """A photo someone tried on the Try your photo page (review.answer.try_photo, which decides who
    may add it): stored as it arrived, a blurred source with no reference, under `add_photo`'s
    rules (consent note and content type required; the same pixels return the existing row and
    False). It joins no study until an admin puts it in a generation plan."""
    return add_photo(session, store, image, title=title, licence=licence, content=content,
                     already_blurred=True)


def add_blurred_photo(session: Session, store: ImageStore, image: Image.Image, **fields: str) -> SourceImage:
    """Store a photo that is blurred already: a source with no sharp reference, recorded as its
    own 'real' degraded input so restorers can take it. `fields` as for `add_source`."""
    source = add_source(session, store, image, is_reference=False, **fields)
    add_degraded(session, store, source, BlurSpec("real", None))
    return source


def plannable_sources(session: Session) -> list[SourceImage]:
    """Every photo a generation plan can use, sharp ones (which it blurs) first, then those that
    arrived blurred (used as they are, blur kind 'real'); oldest first within each."""
    return list(session.scalars(select(SourceImage).order_by(SourceImage.is_reference.desc(),
                                                             SourceImage.id)))


def add_degraded(
    session: Session, store: ImageStore, source: SourceImage, spec: BlurSpec
) -> DegradedImage:
    """Blur a source by `spec` (or record a real blurred photo as is); idempotent per recipe."""
    key = spec.key()

    def blur() -> DegradedImage:  # only when the recipe is new: blurring is the costly part
        if spec.kind == "real":
            stored, kernel_path = store.put_image(store.open_image(source.path)), None
        else:
            result: Degraded = degrade(store.open_image(source.path), spec)
            stored = store.put_image(result.image)
            kernel_path = (None if result.kernel is None
                           else store.put_bytes(kernel_to_bytes(result.kernel), "npy").relpath)
        return DegradedImage(
            source_id=source.id,
            recipe_key=key,
            kind=spec.kind,
            level=spec.level,
            params=spec.params(),
            seed=spec.seed,
            sha256=stored.sha256,
            path=stored.relpath,
            kernel_path=kernel_path,
        )

    row, _new = get_or_create(session, DegradedImage, {"source_id": source.id, "recipe_key": key}, blur)
    return row


def load_kernel(store: ImageStore, degraded: DegradedImage) -> np.ndarray | None:
    if degraded.kernel_path is None:
        return None
    return kernel_from_bytes(store.read_bytes(degraded.kernel_path))


def find_restoration(
    session: Session, degraded_id: int, method: str, params: dict[str, Any],
    model_identity: str = "",
) -> Restoration | None:
    """The stored restoration of this input by `method` with `params` and the model whose
    identity is `model_identity` ('' for restorers without a model), or None."""
    return session.scalar(
        select(Restoration).where(
            Restoration.degraded_id == degraded_id,
            Restoration.method == method,
            Restoration.params_key == recipe_key(params, model_identity),
        )
    )


def provenance_model(provenance: dict[str, Any]) -> str:
    """The model identity a result's provenance records ('' when it was made without a model)."""
    ident = provenance.get("model_identity")
    return ident if isinstance(ident, str) else ""


def add_restoration(
    session: Session,
    store: ImageStore,
    degraded: DegradedImage,
    method: str,
    params: dict[str, Any],
    image: Image.Image,
    provenance: dict[str, Any],
    metrics: dict[str, Any],
) -> Restoration:
    """Record a restorer's output under the model identity its provenance records; an existing
    row for the same recipe (input, method, parameters, model) is returned unchanged."""
    model = provenance_model(provenance)
    key = recipe_key(params, model)

    def record() -> Restoration:
        stored = store.put_image(image)
        return Restoration(
            degraded_id=degraded.id,
            method=method,
            params=params,
            params_key=key,
            model_identity=model,
            sha256=stored.sha256,
            path=stored.relpath,
            provenance=provenance,
            metrics=metrics,
            is_smoke_test=bool(provenance.get("smoke_test", False)),
        )

    row, _new = get_or_create(
        session, Restoration, {"degraded_id": degraded.id, "method": method, "params_key": key}, record)
    return row
