"""Fetch images and IIIF documents over HTTP(S): bounded, polite, conditional, capped.

Used by the feature job (on its threads or Dask workers) for images imported with
import_iiif.py, and by that import for manifests and collections. urllib3 does the work:
a PoolManager with `block=True` holds at most IIIF_FETCH_PER_HOST connections per host
(threads beyond them wait: politeness), and its Retry retries connection errors and
429/5xx with exponential backoff, sleeping as long as a Retry-After header asks (capped).
The body is streamed in chunks against a deadline for the whole transfer and a size cap.
Every failure becomes a `Fetched` with a reason, never an exception: one bad image never
stops a run. Credentials go into the Authorization header only; urllib3 drops that
header on a redirect to another host, and nothing here logs headers.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX = 60  # seconds: a server asking for longer is retried by the next run
BACKOFF = 0.5  # seconds, doubled per retry
CHUNK = 64 * 1024
JPEG_START = b"\xff\xd8"


def is_web_url(text: str | None) -> bool:
    """Whether `text` is an http(s) URL: the only kind fetched or taken from a manifest."""
    return bool(text) and text.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: picklable, so Dask workers build their own Fetcher from it."""

    concurrency: int = 8  # requests in flight in one process (the feature job's threads)
    per_host: int = 4
    timeout: float = 30.0
    retries: int = 3
    max_bytes: int = 100 * 2 ** 20
    bearer_token: str = field(default="", repr=False)
    basic_auth: str = field(default="", repr=False)  # user:password

    @classmethod
    def from_settings(cls, settings) -> "FetchOptions":
        return cls(concurrency=settings.iiif_fetch_concurrency,
                   per_host=settings.iiif_fetch_per_host, timeout=settings.iiif_fetch_timeout,
                   retries=settings.iiif_fetch_retries,
                   max_bytes=settings.iiif_fetch_max_mb * 2 ** 20,
                   bearer_token=settings.iiif_bearer_token,
                   basic_auth=settings.iiif_basic_auth)

    def headers(self) -> dict[str, str]:
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.basic_auth:
            token = base64.b64encode(self.basic_auth.encode("utf-8")).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        return {}


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of one GET: data (200), not_modified (304), or an error reason."""

    data: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    not_modified: bool = False


class Fetcher:
    """A connection pool shared by the threads of one process."""

    def __init__(self, options: FetchOptions):
        self.options = options
        retry = urllib3.Retry(total=options.retries, status_forcelist=RETRY_STATUSES,
                              backoff_factor=BACKOFF, respect_retry_after_header=True,
                              retry_after_max=RETRY_AFTER_MAX, raise_on_status=False,
                              redirect=5)
        self.pool = urllib3.PoolManager(num_pools=64, maxsize=options.per_host, block=True,
                                        retries=retry, headers=options.headers())

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
            expect_jpeg: bool = False) -> Fetched:
        """GET `url`, conditionally when `etag` or `last_modified` is given."""
        if not is_web_url(url):
            return Fetched(error=f"not an http(s) URL: {url[:200]}")
        headers = dict(self.pool.headers)
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        timeout = self.options.timeout
        deadline = time.monotonic() + timeout
        try:
            response = self.pool.request(
                "GET", url, headers=headers, preload_content=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout))
        except MaxRetryError as error:
            return Fetched(error=f"cannot fetch: {_reason(error.reason)}")
        except (HTTPError, OSError, ValueError) as error:
            return Fetched(error=f"cannot fetch: {_reason(error)}")
        read = False  # whether the body was read to its end
        try:
            if response.status == 304:
                read = True
                return Fetched(not_modified=True, etag=response.headers.get("ETag", etag),
                               last_modified=response.headers.get("Last-Modified",
                                                                  last_modified))
            if response.status != 200:
                return Fetched(error=f"HTTP {response.status} {response.reason or ''}".strip())
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.options.max_bytes:
                return Fetched(error=f"larger than {self.options.max_bytes} bytes "
                                     f"({declared} declared)")
            data, error = self._body(response, deadline)
            if error:
                return Fetched(error=error)
            read = True
            if expect_jpeg and not data.startswith(JPEG_START):
                kind = response.headers.get("Content-Type", "unknown type")
                return Fetched(error=f"not a JPEG image ({kind[:80]})")
            return Fetched(data=data, etag=response.headers.get("ETag"),
                           last_modified=response.headers.get("Last-Modified"))
        finally:
            if not read:
                # Unread bytes would be taken for the next response on this connection.
                response.close()
            response.release_conn()

    def _body(self, response, deadline: float) -> tuple[bytes, str | None]:
        parts, size = [], 0
        try:
            for chunk in response.stream(CHUNK):
                size += len(chunk)
                if size > self.options.max_bytes:
                    return b"", f"larger than {self.options.max_bytes} bytes"
                if time.monotonic() > deadline:
                    return b"", f"timed out after {self.options.timeout:g} s"
                parts.append(chunk)
        except HTTPError as error:  # read timeout, connection cut, fewer bytes than declared
            return b"", f"body cut short: {_reason(error)}"
        return b"".join(parts), None

    def close(self) -> None:
        self.pool.clear()


def _reason(error) -> str:
    """Return a short reason (credentials travel in a header, never in it)."""
    text = f"{type(error).__name__}: {error}"
    return text[:300]
