"""Read IIIF Presentation 2.1 and 3.0 manifests and collections into canvas images.

Plain JSON, read by hand: the only maintained Python model of Presentation 3
(iiif-prezi3) is made for writing manifests, its pydantic models reject the small
deviations real manifests are full of, and it has no model of 2.1 at all. What this job
needs is a handful of fields, each read tolerantly here (a canvas without an image is a
counted problem, not a failed import); tests/jobs check the reading against manifests of
both versions.

An image's key is its image service id when it has one, else the image resource's URL:
the service id names the image itself, while the resource URL often carries a size
(`/full/1000,/0/default.jpg`) that a publisher may change without the image changing,
and every size (the full image for the features, thumbnails for the pages) is made from
the service id. Two canvases showing one image make one image row (the first one keeps
it).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.fetch import is_web_url

FULL_SIZE = {2: "full", 3: "max"}  # the full image in Image API 2 (also 2.0) and 3


@dataclass(frozen=True)
class CanvasImage:
    """One canvas's image as the import stores it."""

    key: str  # service id, else resource URL: the images row's path
    source_url: str  # the full image: what the feature job fetches by default
    service: str | None
    service_version: int | None
    manifest_id: str
    canvas_id: str
    label: str | None  # the canvas label, else the manifest's
    title: str | None  # the manifest label (the catalogue title)
    homepage: str | None
    metadata: dict = field(default_factory=dict)  # manifest metadata label -> value


@dataclass
class Reading:
    """What a walk from the source found."""

    images: list[CanvasImage] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)  # ids read
    failed_manifests: list[str] = field(default_factory=list)  # ids that could not be read
    problems: list[str] = field(default_factory=list)


class SourceError(Exception):
    """The source itself cannot be read or is not a manifest or collection."""


def read_source(source: str, load: Callable[[str], dict], *, max_depth: int,
                max_manifests: int) -> Reading:
    """Walk the manifest or collection at `source` (URL or file) and return its images.

    `load(url)` returns a parsed JSON document or raises ValueError with a reason.
    Collections are followed to `max_depth` levels and `max_manifests` manifests.
    """
    try:
        document = load(source)
    except ValueError as error:
        raise SourceError(f"cannot read {source}: {error}") from None
    if _kind(document) not in ("Manifest", "Collection"):
        raise SourceError(f"{source} is neither a IIIF manifest nor a collection")
    reading = Reading()
    seen: set[str] = set()
    _walk(document, source, load, reading, seen, 0, max_depth, max_manifests)
    return reading


def load_file(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None


def _walk(document: dict, where: str, load, reading: Reading, seen: set[str], depth: int,
          max_depth: int, max_manifests: int) -> None:
    kind = _kind(document)
    if kind == "Manifest":
        _manifest(document, where, reading)
        return
    if depth >= max_depth:
        reading.problems.append(f"collection {where}: deeper than {max_depth} levels, "
                                "not followed")
        return
    for member in _members(document):
        member_id = _id(member) or ""
        if member_id in seen:
            continue
        seen.add(member_id)
        if _kind(member) == "Manifest" and len(reading.manifests) >= max_manifests:
            reading.problems.append(f"more than {max_manifests} manifests: the rest "
                                    "not read")
            return
        # Embedded in full (v3 collections may embed manifests) or only referenced.
        if not _has_content(member):
            try:
                member = load(member_id)
            except ValueError as error:
                reading.problems.append(f"cannot read {member_id}: {error}")
                if _kind(member) == "Manifest":
                    reading.failed_manifests.append(member_id)
                continue
        _walk(member, member_id, load, reading, seen, depth + 1, max_depth, max_manifests)


def _manifest(manifest: dict, where: str, reading: Reading) -> None:
    manifest_id = _id(manifest) or where
    reading.manifests.append(manifest_id)
    version = 3 if "items" in manifest else 2
    title = _text(manifest.get("label"))
    metadata = {}
    for pair in manifest.get("metadata") or []:
        if isinstance(pair, dict) and _text(pair.get("label")):
            metadata[_text(pair["label"])] = _text(pair.get("value")) or ""
    homepage = _first_url(manifest.get("homepage") if version == 3 else manifest.get("related"))
    canvases = manifest.get("items") if version == 3 else \
        ((manifest.get("sequences") or [{}])[0] or {}).get("canvases")
    for canvas in canvases or []:
        if not isinstance(canvas, dict):
            continue
        canvas_id = _id(canvas) or ""
        body = _painted_image(canvas, version)
        if body is None:
            reading.problems.append(f"canvas {canvas_id} of {manifest_id}: no image")
            continue
        resource = _id(body)
        service, service_version = _service(body, version)
        if service:
            url = f"{service}/full/{FULL_SIZE[service_version]}/0/default.jpg"
        elif is_web_url(resource):
            url = resource
        else:
            reading.problems.append(f"canvas {canvas_id} of {manifest_id}: no image URL")
            continue
        reading.images.append(CanvasImage(
            key=service or resource, source_url=url, service=service,
            service_version=service_version, manifest_id=manifest_id, canvas_id=canvas_id,
            label=_text(canvas.get("label")) or title, title=title, homepage=homepage,
            metadata=metadata))


def _painted_image(canvas: dict, version: int) -> dict | None:
    """Return the image resource painted on the canvas (the first choice of a Choice)."""
    if version == 3:
        annotations = [a for page in canvas.get("items") or [] if isinstance(page, dict)
                       for a in page.get("items") or []]
        bodies = [a.get("body") for a in annotations if isinstance(a, dict)]
    else:
        bodies = [a.get("resource") for a in canvas.get("images") or []
                  if isinstance(a, dict)]
    for body in bodies:
        if isinstance(body, list):
            body = body[0] if body else None
        if isinstance(body, dict) and _kind(body) == "Choice":
            choices = body.get("items") or body.get("default") or []
            body = choices[0] if isinstance(choices, list) and choices else choices
        if isinstance(body, dict) and _kind(body) in ("Image", "Choice", ""):
            return body
    return None


def _service(body: dict, version: int) -> tuple[str | None, int | None]:
    services = body.get("service")
    for service in services if isinstance(services, list) else [services]:
        if not isinstance(service, dict):
            continue
        service_id = _id(service)
        if not service_id:
            continue
        kind = str(service.get("type") or service.get("@type") or "")
        described = json.dumps([service.get("profile"), service.get("@context"), kind])
        if "ImageService3" in kind or "image/3" in described:
            service_version = 3
        elif "ImageService" in kind or "image/2" in described or "image/1" in described:
            service_version = 2
        else:
            continue  # another kind of service (auth, search)
        return service_id.removesuffix("/info.json").rstrip("/"), service_version
    return None, None


def _members(collection: dict) -> list[dict]:
    members = []
    for name in ("items", "members", "collections", "manifests"):
        for member in collection.get(name) or []:
            if isinstance(member, dict) and _id(member):
                members.append(member)
            elif isinstance(member, str):  # v2 allows plain ids
                members.append({"@id": member, "@type": "sc:Manifest"})
    return members


def _has_content(member: dict) -> bool:
    return any(name in member for name in ("items", "sequences", "manifests", "collections",
                                           "members"))


def _kind(document) -> str:
    if not isinstance(document, dict):
        return "?"
    kind = document.get("type") or document.get("@type") or ""
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return str(kind).rpartition(":")[2]  # sc:Manifest, dctypes:Image, oa:Choice


def _id(document) -> str | None:
    if isinstance(document, dict):
        value = document.get("id") or document.get("@id")
        return value if isinstance(value, str) else None
    return None


TAGS = re.compile(r"<[^>]+>")


def _text(value) -> str | None:
    """Return the text of a label or value: a v3 language map, a v2 string, list or
    {"@value"}; v2 values may hold HTML, whose tags are dropped."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and "@value" in value:
        text = str(value["@value"])
    elif isinstance(value, dict):  # a language map: the first language, "none" last
        languages = sorted(value, key=lambda language: language == "none")
        texts = value[languages[0]] if languages else []
        text = "; ".join(map(str, texts if isinstance(texts, list) else [texts]))
    elif isinstance(value, list):
        text = "; ".join(filter(None, (_text(item) for item in value)))
    else:
        text = str(value)
    text = TAGS.sub("", text).strip()
    return text or None


def _first_url(value) -> str | None:
    for item in value if isinstance(value, list) else [value]:
        url = item if isinstance(item, str) else _id(item)
        if is_web_url(url):
            return url
    return None
