"""A client for the imgsearch server, standard library only.

    from imgsearch_client import Client

    client = Client("http://127.0.0.1:8080")
    for hit in client.search(text="a red car in the snow", k=5):
        print(f"{hit.score:.3f}  {hit.path}")
    client.search(image="holiday.jpg")                  # by an image file (or bytes)
    client.search(similar=42)                            # more like image 42
    client.search(text=["beach", ("people", -1.0)])      # weighted terms: + beach − people
    client.search(text="dog", under="/photos/2023", after="2023-06-01", k=50)
    client.status()["collection"]["indexed"]
    client.thumbnail(42, size=256)                       # JPEG bytes

Every failure raises an ImgsearchError subclass carrying the server's message.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

__all__ = [
    "Client",
    "SearchResult",
    "ImgsearchError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ServerError",
    "ConnectionError",
    "QueryImageError",
]

# The same as the server's (CMakeLists.txt's project() defines it; tests/python/test_client.py checks
# that the two agree). A server's own version: Client.status()["server"]["version"].
__version__ = "0.1.0"


class ImgsearchError(Exception):
    """Anything that went wrong talking to the server."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.status = status


class BadRequestError(ImgsearchError):
    """The server refused the request as malformed (HTTP 400, 413, 415, 422)."""


class AuthenticationError(ImgsearchError):
    """A bearer token is needed, or the one given is wrong (HTTP 401, 403)."""


class NotFoundError(ImgsearchError):
    """No such image or endpoint (HTTP 404)."""


class ServerError(ImgsearchError):
    """The server failed (HTTP 5xx) or answered something that is not what the API promises."""


class ConnectionError(ImgsearchError):  # noqa: A001 - the name users expect, scoped to this module
    """The server could not be reached."""


class QueryImageError(ImgsearchError, OSError):
    """A query image file could not be read (before anything was sent). Also a FileNotFoundError
    or PermissionError where that is the reason, so `except FileNotFoundError` works."""


class _QueryImageNotFound(QueryImageError, FileNotFoundError):
    pass


class _QueryImageNotPermitted(QueryImageError, PermissionError):
    pass


@dataclass(frozen=True)
class Moment:
    time: float  # seconds from the start of the video
    score: float


@dataclass(frozen=True)
class SearchResult:
    id: int
    path: str
    score: float
    width: int
    height: int
    url: str
    thumbnail_url: str  # a video's: its frame at `time`
    time: Optional[float] = None  # a video: the time (seconds) of its best-matching frame
    moments: Tuple[Moment, ...] = ()  # a video: its other matching moments, best first

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


# A text term: "beach", or ("people", -1.0) for a weighted (here negative) one.
TextTerm = Union[str, Tuple[str, float]]
# An image term: a path, raw bytes, or either with a weight.
ImageTerm = Union[str, os.PathLike, bytes, Tuple[Union[str, os.PathLike, bytes], float]]

_FILTERS = ("under", "after", "before", "formats", "min_score", "exact")


class Client:
    """Talks to one imgsearch server. Thread-safe (each call opens its own connection)."""

    def __init__(self, url: str = "http://127.0.0.1:8080", token: Optional[str] = None, timeout: float = 60.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url must look like http://host:port, not {url!r}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("IMGSEARCH_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ---- search ----

    def search(
        self,
        text: Union[None, TextTerm, Sequence[TextTerm]] = None,
        image: Union[None, ImageTerm, Sequence[ImageTerm]] = None,
        similar: Union[None, int, Tuple[int, float], Sequence[Union[int, Tuple[int, float]]]] = None,
        moment: Optional[Tuple[int, float]] = None,
        k: int = 10,
        offset: int = 0,
        **filters: Any,
    ) -> list[SearchResult]:
        """Searches by any mix of texts, images and indexed image ids (each optionally weighted;
        negative weights push results away), and a video's moment (moment=(id, seconds)). Filters: under (a folder), after and before (a date
        "2023-05-01", a datetime, or Unix seconds), formats (["jpeg", "png"]), min_score, exact."""
        unknown = set(filters) - set(_FILTERS)
        if unknown:
            raise TypeError(f"unknown filter(s) {', '.join(sorted(unknown))}; known: {', '.join(_FILTERS)}")
        terms = []
        for t, w in _weighted(text, str):
            terms.append({"text": t, "weight": w})
        for img, w in _weighted(image, (str, bytes, os.PathLike)):
            terms.append({"image": base64.b64encode(_image_bytes(img)).decode("ascii"), "weight": w})
        for i, w in _weighted(similar, int):
            terms.append({"id": int(i), "weight": w})
        if moment is not None:
            terms.append({"id": int(moment[0]), "time": float(moment[1])})
        if not terms:
            raise ValueError("give text=, image=, similar= or moment=")
        body = {"terms": terms, "k": k, "offset": offset}
        for key, value in filters.items():
            if value is None:
                continue
            if key in ("after", "before") and hasattr(value, "isoformat"):
                value = value.isoformat()
            body[key] = list(value) if key == "formats" else value
        answer = self._request("POST", "/api/search", body=body)
        return [_result(r) for r in answer["results"]]

    def similar(self, image_id: int, k: int = 10, **filters: Any) -> list[SearchResult]:
        """More like an indexed image (the image itself left out)."""
        return self.search(similar=image_id, k=k, **filters)

    # ---- images ----

    def info(self, image_id: int) -> dict:
        """What the collection knows about an image: path, size, format, capture time, …"""
        return self._request("GET", f"/api/images/{int(image_id)}/info")

    def image(self, image_id: int) -> bytes:
        """The image file's bytes."""
        return self._request("GET", f"/api/images/{int(image_id)}", raw=True)

    def thumbnail(self, image_id: int, size: int = 256, time: Optional[float] = None) -> bytes:
        """A JPEG thumbnail whose longer side is `size` (rounded up to 64, 128, 256, 512 or 1024); of a
        video, its frame at `time` seconds (default: its middle sampled frame)."""
        at = "" if time is None else f"&t={float(time):.3f}"
        return self._request("GET", f"/api/images/{int(image_id)}/thumbnail?size={int(size)}{at}", raw=True)

    # ---- the server ----

    def status(self) -> dict:
        """Counts by state, ingestion queues and throughput, recent failures, model and index."""
        return self._request("GET", "/api/status")

    def healthy(self) -> bool:
        try:
            self._request("GET", "/healthz")
            return True
        except ImgsearchError:
            return False

    def rescan(self, path: Optional[str] = None) -> list[str]:
        """Asks the server to reconcile a watched folder (or all of them) with the disk now.
        Needs the token when the server has one. Returns the folders being rescanned."""
        body = {"path": os.path.abspath(path)} if path else None
        return self._request("POST", "/api/rescan", body=body)["rescanning"]

    # ---- plumbing ----

    def _request(self, method: str, path: str, body: Optional[dict] = None, raw: bool = False) -> Any:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            raise _error_from(e) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectionError(f"cannot reach the imgsearch server at {self.url}: {reason}") from None
        if raw:
            return payload
        try:
            return json.loads(payload)
        except ValueError:
            raise ServerError(f"{method} {path}: the server answered something that is not JSON") from None


def _weighted(value: Any, scalar_types) -> Iterable[Tuple[Any, float]]:
    """None, x, (x, w) or a list of those → (x, w) pairs."""
    if value is None:
        return []
    if isinstance(value, scalar_types) or (isinstance(value, tuple) and len(value) == 2
                                           and isinstance(value[1], (int, float))
                                           and isinstance(value[0], scalar_types)):
        value = [value]
    pairs = []
    for item in value:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"a weighted term is (term, weight), not {item!r}")
            pairs.append((item[0], float(item[1])))
        else:
            pairs.append((item, 1.0))
    return pairs


def _image_bytes(image: Union[str, os.PathLike, bytes]) -> bytes:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    try:
        with open(image, "rb") as f:
            return f.read()
    except OSError as e:
        kind = {FileNotFoundError: _QueryImageNotFound, PermissionError: _QueryImageNotPermitted}.get(
            type(e), QueryImageError)
        raise kind(f"cannot read the query image {os.fspath(image)}: {e.strerror or e}") from None


def _result(r: dict) -> SearchResult:
    try:
        return SearchResult(id=int(r["id"]), path=r["path"], score=float(r["score"]), width=int(r["width"]),
                            height=int(r["height"]), url=r["url"], thumbnail_url=r["thumbnail"],
                            time=float(r["time"]) if "time" in r else None,
                            moments=tuple(Moment(time=float(m["time"]), score=float(m["score"]))
                                          for m in r.get("moments", ())))
    except (KeyError, TypeError, ValueError) as e:
        raise ServerError(f"a search result is missing {e}") from None


def _error_from(e: urllib.error.HTTPError) -> ImgsearchError:
    try:
        message = json.loads(e.read()).get("error") or e.reason
    except (ValueError, AttributeError):
        message = e.reason
    status = e.code
    if status in (401, 403):
        return AuthenticationError(message, status)
    if status == 404:
        return NotFoundError(message, status)
    if status >= 500:
        return ServerError(message, status)
    return BadRequestError(message, status)
