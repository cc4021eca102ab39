"""Response schemas of the Client-Server API, read from the spec's OpenAPI definitions.

The spec repository (matrix-org/matrix-spec) keeps one OpenAPI 3.1 document per API area in
data/api/client-server/*.yaml. OpenAPI 3.1 schema objects are JSON Schema 2020-12, so a
response body is checked with `jsonschema`'s Draft 2020-12 validator; the documents' relative
`$ref`s (`definitions/errors/error.yaml`, `../../event-schemas/...`, `#/components/...`) resolve
through a `referencing` registry that loads the YAML files on demand by their file:// URI.

The spec checkout is looked up beside the repository (`<repo>/../shared/matrix-spec`, as CI
clones it), then at $VECHE_MATRIX_SPEC. A missing checkout is an error, never a skip.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_ENV = "VECHE_MATRIX_SPEC"


class SpecMissingError(RuntimeError):
    """The matrix-spec checkout holding the OpenAPI definitions cannot be found."""


def spec_root() -> Path:
    """The matrix-spec checkout: `<repo>/../shared/matrix-spec`, else $VECHE_MATRIX_SPEC."""
    candidates = [REPO_ROOT.parent / "shared" / "matrix-spec"]
    if os.environ.get(SPEC_ENV):
        candidates.append(Path(os.environ[SPEC_ENV]))
    for candidate in candidates:
        if (candidate / "data" / "api" / "client-server").is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise SpecMissingError(
        f"matrix-spec OpenAPI definitions not found (tried {tried}); clone "
        f"https://github.com/matrix-org/matrix-spec to ../shared/matrix-spec or set {SPEC_ENV}"
    )


@cache
def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _retrieve(uri: str) -> Resource[Any]:
    """Load a spec YAML file named by its file:// URI (the registry's lazy lookup)."""
    if not uri.startswith("file://"):
        raise NoSuchResource(uri)
    path = Path(url2pathname(urlparse(uri).path))
    if not path.is_file():
        raise NoSuchResource(uri)
    return Resource.from_contents(_load_yaml(path), default_specification=DRAFT202012)


def _pointer(*segments: str) -> str:
    """A JSON pointer (RFC 6901) as a URI fragment."""
    escaped = (s.replace("~", "~0").replace("/", "~1") for s in segments)
    return "/" + "/".join(quote(s, safe="") for s in escaped)


class ClientServerSpec:
    """The Client-Server API documents, indexed by `(path template, method)`."""

    def __init__(self, root: Path) -> None:
        self.api_dir = (root / "data" / "api" / "client-server").resolve()
        self.registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
        self.operations: dict[tuple[str, str], Path] = {}
        for document in sorted(self.api_dir.glob("*.yaml")):
            for path, item in (_load_yaml(document).get("paths") or {}).items():
                for method in item:
                    self.operations.setdefault((path, method.lower()), document)

    def _response(self, document: Path, path: str, method: str, status: int) -> tuple[str, Any]:
        """The response object for `status` (following `$ref`s to components), with its URI."""
        responses = _load_yaml(document)["paths"][path][method]["responses"]
        key = str(status) if str(status) in responses else status
        if key not in responses:
            raise KeyError(f"{method.upper()} {path} documents no {status} response")
        uri = document.as_uri() + "#" + _pointer("paths", path, method, "responses", str(key))
        response = responses[key]
        if "$ref" in response:
            ref = response["$ref"]
            assert ref.startswith("#/"), ref
            uri = document.as_uri() + ref
            response = _load_yaml(document)
            for segment in ref[2:].split("/"):
                response = response[segment.replace("~1", "/").replace("~0", "~")]
        return uri, response

    def validator(self, path: str, method: str, status: int) -> Draft202012Validator:
        """A validator of the JSON body the spec documents for this response."""
        method = method.lower()
        if (path, method) not in self.operations:
            raise KeyError(f"the spec documents no operation {method.upper()} {path}")
        uri, response = self._response(self.operations[(path, method)], path, method, status)
        if "application/json" not in (response.get("content") or {}):
            raise KeyError(f"{method.upper()} {path} {status} has no application/json schema")
        schema_uri = uri + _pointer("content", "application/json", "schema")
        return Draft202012Validator({"$ref": schema_uri}, registry=self.registry)

    def schema_validator(self, ref: str) -> Draft202012Validator:
        """A validator of a schema file named relative to data/api/client-server/."""
        uri = (self.api_dir / ref).resolve().as_uri()
        return Draft202012Validator({"$ref": uri}, registry=self.registry)

    def mismatches(self, path: str, method: str, status: int, body: Any) -> list[str]:
        """Every way `body` breaks the documented schema, as readable lines (empty: conforms)."""
        return _describe(self.validator(path, method, status), body)

    def schema_mismatches(self, ref: str, body: Any) -> list[str]:
        """Like `mismatches`, against a schema file (e.g. `definitions/errors/error.yaml`)."""
        return _describe(self.schema_validator(ref), body)

    def event_schema(self, event: dict[str, Any]) -> Path | None:
        """The spec's schema for this event type (per msgtype for m.room.message), if any."""
        schemas = self.api_dir.parent.parent / "event-schemas" / "schema"
        event_type = event.get("type")
        if not isinstance(event_type, str) or "/" in event_type:
            return None
        msgtype = (event.get("content") or {}).get("msgtype")
        if event_type == "m.room.message" and isinstance(msgtype, str) and "/" not in msgtype:
            per_msgtype = schemas / f"m.room.message${msgtype}.yaml"
            if per_msgtype.is_file():
                return per_msgtype
        path = schemas / f"{event_type}.yaml"
        return path if path.is_file() else None

    def event_mismatches(self, event: dict[str, Any]) -> list[str]:
        """A client-format room event checked against its event type's schema (data/event-schemas).

        The event schemas require `room_id`, which /sync leaves out by design ("Will not be
        present on events that arrive through /sync"), so a placeholder stands in for it there.
        Redacted events are held to the core event schema only.
        """
        schema = self.event_schema(event)
        if "redacted_because" in (event.get("unsigned") or {}):
            # A redacted event keeps only the content keys the redaction algorithm preserves,
            # which the per-type schemas (e.g. a message's required `body`) do not allow for:
            # check the envelope only.
            core = "state_event.yaml" if "state_key" in event else "room_event.yaml"
            schema = self.api_dir.parent.parent / "event-schemas/schema/core-event-schema" / core
        if schema is None:
            return []
        event = {"room_id": "!placeholder:sync", **event}
        validator = Draft202012Validator({"$ref": schema.as_uri()}, registry=self.registry)
        return _describe(validator, event)

    def events_mismatches(self, body: Any) -> list[str]:
        """`event_mismatches` for every full room event (one with an event_id) inside `body`."""
        found: list[str] = []
        for where, event in _room_events(body, ""):
            found += [f"{where}/{line}" for line in self.event_mismatches(event)]
        return found


def _room_events(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if {"type", "content", "sender", "event_id"} <= node.keys():
            events.append((where or "<root>", node))
        for key, value in node.items():
            events += _room_events(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            events += _room_events(value, f"{where}/{index}")
    return events


def _describe(validator: Draft202012Validator, body: Any) -> list[str]:
    errors = validator.iter_errors(body)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    ]


@cache
def client_server_spec() -> ClientServerSpec:
    return ClientServerSpec(spec_root())
