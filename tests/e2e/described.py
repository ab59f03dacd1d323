"""The server's own OpenAPI document (GET /openapi.json) held against what the end-to-end tests
see of it: every HTTP answer of a test server (conftest routes requests' and httpx's through
`check`) and every WebSocket message the harness records (`check_message`). A mismatch fails the
test that made the request, with the request and the document's complaint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from werkzeug.datastructures import Headers, ImmutableMultiDict

# The shape of an answer to a path no route matched (or a method no route of the path takes),
# by the API the path is under.
UNROUTED = {"/api/v2": "PistonError", "/judge0": "Judge0Error"}
UNROUTED_STATUSES = (401, 404, 405, 429)


@dataclass(frozen=True)
class Exchange:
    """One request to a test server and its answer, whatever client made it."""

    method: str
    url: str
    request_headers: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.body[:300]!r}"


@dataclass
class _Request:
    """An Exchange's request as openapi-core reads one (its body is not checked: the tests send
    malformed requests on purpose)."""

    exchange: Exchange
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.exchange.url)
        self.host_url = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path
        self.method = self.exchange.method.lower()
        self.body = None
        self.content_type = Headers(self.exchange.request_headers).get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(parts.query)),
            header=Headers(self.exchange.request_headers),
            cookie=ImmutableMultiDict(),
        )


@dataclass
class _Response:
    exchange: Exchange

    @property
    def data(self) -> bytes:
        return self.exchange.body

    @property
    def status_code(self) -> int:
        return self.exchange.status

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def headers(self) -> Headers:
        return Headers(self.exchange.headers)


class Description:
    """One server's OpenAPI document, and the checks against it."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.openapi = OpenAPI.from_dict(document)

    def check(self, exchange: Exchange) -> None:
        if exchange.method in ("HEAD", "OPTIONS"):
            return  # Flask's own answers, which the document leaves out
        try:
            self.openapi.validate_response(_Request(self._one_segment(exchange)), _Response(exchange))
        except PathError:
            self._check_unrouted(exchange)
        except Exception as exc:  # noqa: BLE001 - any complaint of the validator fails the test
            raise AssertionError(f"an answer outside the OpenAPI document: {exchange}\n{_why(exc)}") from None

    def _one_segment(self, exchange: Exchange) -> Exchange:
        """A file's path under a route that takes slashes in its last parameter (Flask's path
        converter: /static/dist/chunks/a.js), as OpenAPI matches it: as one segment."""
        parts = urlsplit(exchange.url)
        for template in sorted(self.document["paths"], key=len, reverse=True):
            prefix = template.removesuffix("{filename}")
            if prefix != template and parts.path.startswith(prefix):
                rest = parts.path[len(prefix) :].replace("/", "%2F")
                return replace(exchange, url=parts._replace(path=prefix + rest).geturl())
        return exchange

    def _check_unrouted(self, exchange: Exchange) -> None:
        path = urlsplit(exchange.url).path
        shape = next((s for prefix, s in UNROUTED.items() if path.startswith(prefix)), "Error")
        assert exchange.status in UNROUTED_STATUSES, f"a path the document does not describe: {exchange}"
        body = json.loads(exchange.body)
        if shape == "Judge0Error" and exchange.status == 404:
            shape = "Judge0NotFound"
        self.check_message(shape, body)

    def check_message(self, schema: str, message: object) -> None:
        """A JSON value against one of the document's component schemas."""
        validator = Draft202012Validator(
            {"$ref": f"#/components/schemas/{schema}", "components": self.document["components"]}
        )
        errors = sorted(validator.iter_errors(message), key=lambda e: e.path)
        assert not errors, f"not a {schema}: {json.dumps(message)[:300]}\n" + "\n".join(
            f"  {list(e.path)}: {e.message[:200]}" for e in errors[:5]
        )


def _why(exc: Exception) -> str:
    reasons = [str(exc)]
    for inner in getattr(exc, "schema_errors", None) or []:
        reasons.append(f"  {list(inner.path)}: {inner.message[:300]}")
    cause = exc.__cause__
    while cause is not None:
        reasons.append(f"  {type(cause).__name__}: {str(cause)[:300]}")
        for inner in getattr(cause, "schema_errors", None) or []:
            reasons.append(f"    {list(inner.path)}: {inner.message[:300]}")
        cause = cause.__cause__
    return "\n".join(reasons)


# The servers this test run started (host:port), whose answers are checked, and the document they
# serve (the same for every one: it is built from the code).
SERVERS: set[str] = set()
_loaded: list[Description] = []


def watch(url: str, document: dict) -> None:
    """Check every answer of the server at url from now on, against the document."""
    if not _loaded:
        _loaded.append(Description(document))
    SERVERS.add(urlsplit(url).netloc)


def description() -> Description | None:
    return _loaded[0] if _loaded else None


def watched(url: str) -> bool:
    """Whether answers from url are checked: it is a server of the suite's (never Docker's own
    API, whose streams must not be read here)."""
    return bool(_loaded) and urlsplit(url).netloc in SERVERS


def check(exchange: Exchange) -> None:
    if watched(exchange.url):
        _loaded[0].check(exchange)


def check_message(schema: str, message: object) -> None:
    if _loaded:
        _loaded[0].check_message(schema, message)
