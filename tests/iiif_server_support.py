"""A local IIIF server for the tests and the bench: Presentation 2.1 and 3.0 documents,
and images through a static level-0 Image API layout (`{id}/info.json`,
`{id}/full/max/0/default.jpg` and v2's `full/full` = the original bytes), with ETag and
Last-Modified, conditional answers, failures to order, added latency and a request log.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Failures the server can be told to answer an image with.
FAULTS = ("404", "403", "429", "500", "slow", "truncated", "html")
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass
class Request:
    path: str
    status: int
    conditional: bool
    body_bytes: int
    at: float
    authorization: str | None


@dataclass
class IiifState:
    images: dict[str, bytes] = field(default_factory=dict)  # image id -> JPEG bytes
    documents: dict[str, dict] = field(default_factory=dict)  # path -> JSON document
    faults: dict[str, str] = field(default_factory=dict)  # image id -> one of FAULTS
    latency: float = 0.0  # seconds added to every request
    slow_for: float = 3.0  # seconds a 'slow' body stalls
    log: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def image_requests(self) -> list[Request]:
        with self.lock:
            return [r for r in self.log if r.path.startswith("/iiif/")
                    and not r.path.endswith("info.json")]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: IiifState

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - the http.server API
        state = self.state
        if state.latency:
            time.sleep(state.latency)
        path = self.path.split("?")[0]
        if path in state.documents:
            return self._send(200, json.dumps(state.documents[path]).encode(),
                              "application/ld+json")
        parts = path.split("/")
        # /iiif/<id>/info.json or /iiif/<id>/full/<max|full>/0/default.jpg
        if len(parts) >= 4 and parts[1] == "iiif" and parts[2] in state.images:
            image_id, rest = parts[2], "/".join(parts[3:])
            if rest == "info.json":
                return self._send(200, json.dumps(self._info(image_id)).encode(),
                                  "application/json")
            if rest in ("full/max/0/default.jpg", "full/full/0/default.jpg"):
                return self._image(image_id)
        self._send(404, b"not found", "text/plain")

    def _info(self, image_id: str) -> dict:
        host = self.headers.get("Host")
        return {"@context": "http://iiif.io/api/image/3/context.json",
                "id": f"http://{host}/iiif/{image_id}", "type": "ImageService3",
                "protocol": "http://iiif.io/api/image", "profile": "level0"}

    def _image(self, image_id: str):
        state = self.state
        data = state.images[image_id]
        fault = state.faults.get(image_id)
        if fault in ("404", "403", "500"):
            return self._send(int(fault), b"<html>error</html>", "text/html")
        if fault == "429":
            return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
        if fault == "html":
            return self._send(200, b"<html><body>Please log in</body></html>", "text/html")
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match") == etag:
            return self._send(304, b"", None, {"ETag": etag, "Last-Modified": LAST_MODIFIED})
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if fault == "slow":
            self._head(200, "image/jpeg", len(data), headers)
            self.wfile.write(data[:100])
            self.wfile.flush()
            time.sleep(state.slow_for)
            self.wfile.write(data[100:])
            return
        if fault == "truncated":
            self._head(200, "image/jpeg", len(data), headers)
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
            return
        self._send(200, data, "image/jpeg", headers)

    def _head(self, status, kind, length, headers, body_bytes=None):
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with self.state.lock:
            self.state.log.append(Request(
                self.path, status, bool(self.headers.get("If-None-Match")
                                        or self.headers.get("If-Modified-Since")),
                length if body_bytes is None else body_bytes, time.monotonic(),
                self.headers.get("Authorization")))

    def _send(self, status, body, kind, headers=None):
        self._head(status, kind, len(body), headers)
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client dropping a kept-alive connection at the end is no news


class IiifServer:
    """A threaded HTTP server on 127.0.0.1 with its state; use as a context manager."""

    def __init__(self, state: IiifState | None = None):
        self.state = state or IiifState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "IiifServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def service(self, image_id: str) -> str:
        return f"{self.base}/iiif/{image_id}"

    def publish(self, path: str, document: dict) -> str:
        self.state.documents[path] = document
        return self.base + path


def manifest_v3(server: IiifServer, name: str, canvases: list[tuple[str, str]],
                label: str = "", metadata: dict | None = None, service=None) -> dict:
    """A Presentation 3.0 manifest with a canvas per (canvas name, image id); `service`
    (image id -> service id) puts the images on another server."""
    service = service or server.service
    manifest_id = f"{server.base}/manifests/{name}.json"
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": manifest_id, "type": "Manifest", "label": {"en": [label or name]},
        "metadata": [{"label": {"en": [k]}, "value": {"en": [v]}}
                     for k, v in (metadata or {}).items()],
        "homepage": [{"id": f"https://museum.example/{name}", "type": "Text",
                      "format": "text/html"}],
        "items": [{
            "id": f"{manifest_id}/canvas/{canvas}", "type": "Canvas",
            "label": {"none": [f"{canvas}"]}, "width": 100, "height": 100,
            "items": [{"id": f"{manifest_id}/page/{canvas}", "type": "AnnotationPage",
                       "items": [{
                           "id": f"{manifest_id}/annotation/{canvas}", "type": "Annotation",
                           "motivation": "painting", "target": f"{manifest_id}/canvas/{canvas}",
                           "body": {"id": f"{service(image)}/full/max/0/default.jpg",
                                    "type": "Image", "format": "image/jpeg",
                                    "service": [{"id": service(image),
                                                 "type": "ImageService3",
                                                 "profile": "level0"}]}}]}]}
            for canvas, image in canvases]}


def manifest_v2(server: IiifServer, name: str, canvases: list[tuple[str, str]],
                label: str = "", metadata: dict | None = None) -> dict:
    """A Presentation 2.1 manifest with a canvas per (canvas name, image id)."""
    manifest_id = f"{server.base}/manifests/{name}.json"
    return {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@id": manifest_id, "@type": "sc:Manifest", "label": label or name,
        "metadata": [{"label": k, "value": f"<b>{v}</b>"} for k, v in (metadata or {}).items()],
        "related": f"https://museum.example/{name}",
        "sequences": [{"@type": "sc:Sequence", "canvases": [{
            "@id": f"{manifest_id}/canvas/{canvas}", "@type": "sc:Canvas", "label": canvas,
            "width": 100, "height": 100,
            "images": [{"@type": "oa:Annotation", "motivation": "sc:painting",
                        "on": f"{manifest_id}/canvas/{canvas}",
                        "resource": {"@id": f"{server.service(image)}/full/full/0/default.jpg",
                                     "@type": "dctypes:Image", "format": "image/jpeg",
                                     "service": {"@context":
                                                 "http://iiif.io/api/image/2/context.json",
                                                 "@id": server.service(image),
                                                 "profile": "http://iiif.io/api/image/2/"
                                                            "level0.json"}}}]}
            for canvas, image in canvases]}]}


def collection_v3(server: IiifServer, name: str, members: list[tuple[str, str]]) -> dict:
    """A Presentation 3.0 collection of (url, type) members."""
    return {"@context": "http://iiif.io/api/presentation/3/context.json",
            "id": f"{server.base}/collections/{name}.json", "type": "Collection",
            "label": {"en": [name]},
            "items": [{"id": url, "type": kind, "label": {"en": [url]}}
                      for url, kind in members]}
