"""The HTTP/JSON gateway: an ASGI app (Starlette) serving the contract's ``google.api.http`` routes.

Routes, request fields and response fields come from the proto descriptors and their
``google.api.http`` annotations; nothing here names an RPC or a field. Each request is
decoded into the RPC's request message and handed to the same servicer object that the gRPC
server calls, with an :class:`HttpServicerContext` in place of gRPC's: API keys are checked
with the same :class:`ApiKeys`, and rate limits, the per-request log line, metrics and the
error-to-status mapping stay where they are, shared by both transports.

Request bodies (for a binding with ``body: "*"``):

- ``application/json``: the request message in proto3 JSON (bytes fields in base64);
- ``multipart/form-data``: one part per field, by its proto or JSON name; file parts fill
  bytes fields (``curl -F image=@selfie.jpg -F profile=strict``);
- a raw image (``image/*`` or ``application/octet-stream``): the message's first bytes
  field; other fields from the query string (``?profile=strict&requestId=a1``).

Responses are proto3 JSON (fields with default values included, enums by name). Errors are
``{"code": "<gRPC code name>", "message": "..."}`` with the HTTP status of
:data:`HTTP_STATUS`; never a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

import anyio
import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ekyc.server.logs import log_event
from ekyc.server.security import ApiKeys

WEB_DIR = Path(__file__).with_name("web")
JSON = "application/json"
NDJSON = "application/x-ndjson"
# Base64 makes a JSON body 4/3 of the image it carries; the decoded message is then held to
# the same max_message_bytes as a gRPC request.
JSON_OVERHEAD = 64 * 1024

# gRPC code -> HTTP status: the usual table (google.rpc.Code's mapping, as grpc-gateway uses).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Served with every response: the demo page loads nothing from outside its origin.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob: mediastream:; connect-src 'self'; manifest-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(self), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class GatewayError(Exception):
    """A request the gateway refuses before the service sees it (its own HTTP status)."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


class HttpAbort(Exception):
    """Raised by :meth:`HttpServicerContext.abort`, as gRPC's context raises to end the RPC."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------ bindings


@dataclass(frozen=True)
class Binding:
    """One HTTP route of an RPC, from its google.api.http rule or an additional binding."""

    method: descriptor.MethodDescriptor
    verb: str
    path: str
    body: str
    response_body: str

    @property
    def streaming(self) -> bool:
        return self.method.client_streaming or self.method.server_streaming

    @property
    def starlette_path(self) -> str:
        """The path template in Starlette's syntax: {field} and {field=**} variables."""
        out, index = "", 0
        template = self.path
        while index < len(template):
            if template[index] == "{":
                end = template.index("}", index)
                name, _, pattern = template[index + 1:end].partition("=")
                out += "{" + name.replace(".", "__") + (":path" if "**" in pattern else "") + "}"
                index = end + 1
            else:
                out += template[index]
                index += 1
        return out


def _rule_bindings(method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule) -> list[Binding]:
    kind = rule.WhichOneof("pattern")
    found = []
    if kind is not None:
        if kind == "custom":
            verb, path = rule.custom.kind.upper(), rule.custom.path
        else:
            verb, path = kind.upper(), getattr(rule, kind)
        found.append(Binding(method, verb, path, rule.body, rule.response_body))
    for extra in rule.additional_bindings:
        found.extend(_rule_bindings(method, extra))
    return found


def http_bindings(service: descriptor.ServiceDescriptor) -> list[Binding]:
    """Every HTTP binding of every RPC of ``service``, in declaration order."""
    found: list[Binding] = []
    for method in service.methods:
        options = method.GetOptions()
        if options.HasExtension(annotations_pb2.http):
            found.extend(_rule_bindings(method, options.Extensions[annotations_pb2.http]))
    return found


def message_class(message_descriptor: descriptor.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(message_descriptor)


# ------------------------------------------------------------------------------ JSON


def to_json_dict(message: Message) -> dict:
    """Proto3 JSON of ``message`` as a dict: lowerCamelCase names, enums by name, and
    fields without presence printed even when they hold their default (false, 0, "")."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_body(code: grpc.StatusCode, message: str) -> dict:
    return {"code": code.name, "message": message}


def error_response(code: grpc.StatusCode, message: str, http_status: int | None = None, headers=None) -> Response:
    status = http_status or HTTP_STATUS.get(code, 500)
    return Response(_json_bytes(error_body(code, message)), status_code=status, media_type=JSON, headers=headers)


# ------------------------------------------------------------------------------ fields from text


def _field(message: Message, name: str) -> descriptor.FieldDescriptor | None:
    fields = message.DESCRIPTOR.fields_by_name
    if name in fields:
        return fields[name]
    return next((f for f in message.DESCRIPTOR.fields if f.json_name == name), None)


def _scalar_from_text(field: descriptor.FieldDescriptor, text: str) -> Any:
    """A query parameter, path variable or form field's text as the field's value."""
    kind = field.type
    try:
        if kind == field.TYPE_BOOL:
            lowered = text.strip().lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            return float(text)
        if kind == field.TYPE_STRING:
            return text
        if kind == field.TYPE_BYTES:
            return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None,
                                    validate=True)
        if kind == field.TYPE_ENUM:
            value = field.enum_type.values_by_name.get(text)
            return value.number if value is not None else field.enum_type.values_by_number[int(text)].number
        return int(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid value for field {field.json_name}: {exc}") from None


def set_field_from_text(message: Message, path: str, values: list[str]) -> None:
    """Set the (dotted) field ``path`` from text; a message-typed leaf takes JSON."""
    parts = path.split(".")
    target = message
    for part in parts[:-1]:
        field = _field(target, part)
        if field is None or field.message_type is None or field.is_repeated:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown field {path!r}")
        target = getattr(target, field.name)
    field = _field(target, parts[-1])
    if field is None:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown field {path!r}")
    if field.message_type is not None:
        for text in values[-1:] if not field.is_repeated else values:
            try:
                value = json.loads(text)
                if field.is_repeated:
                    json_format.ParseDict(value, getattr(target, field.name).add())
                else:
                    json_format.ParseDict(value, getattr(target, field.name))
            except (ValueError, json_format.ParseError) as exc:
                raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON for field {field.json_name}: {exc}") from None
        return
    if field.is_repeated:
        getattr(target, field.name).extend(_scalar_from_text(field, text) for text in values)
    else:
        setattr(target, field.name, _scalar_from_text(field, values[-1]))


def first_bytes_field(message_descriptor: descriptor.Descriptor) -> descriptor.FieldDescriptor | None:
    """The field a raw body fills: the message's first singular bytes field by number."""
    candidates = [f for f in message_descriptor.fields if f.type == f.TYPE_BYTES and not f.is_repeated]
    return min(candidates, key=lambda f: f.number) if candidates else None


# ------------------------------------------------------------------------------ request bodies


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (Content-Length
    is checked before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "invalid Content-Length") from None
    chunks, size = [], 0
    async for chunk in _limited_stream(request, limit):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            yield chunk
    except ClientDisconnect:
        raise GatewayError(grpc.StatusCode.CANCELLED, "the client closed the connection") from None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request body is larger than the limit of {limit} bytes", 413
    )


class _InMemoryMultiPartParser(MultiPartParser):
    # Uploaded images stay in memory (the body size is already capped): never a temporary file.
    spool_max_size = 1 << 62


@dataclass
class RequestDecoder:
    """Builds an RPC's request message from an HTTP request, within the size limits."""

    max_message_bytes: int

    @property
    def max_body_bytes(self) -> int:
        return self.max_message_bytes * 4 // 3 + JSON_OVERHEAD

    async def decode(self, request: Request, binding: Binding, request_type: type[Message]) -> Message:
        message = request_type()
        for name, value in request.path_params.items():
            set_field_from_text(message, name.replace("__", "."), [value])
        if binding.body != "*":
            for name in request.query_params:
                set_field_from_text(message, name, request.query_params.getlist(name))
        if binding.body:
            target = message if binding.body == "*" else getattr(message, binding.body)
            await self._decode_body(request, target, binding)
        if message.ByteSize() > self.max_message_bytes:
            raise _too_large(self.max_message_bytes)
        return message

    async def _decode_body(self, request: Request, message: Message, binding: Binding) -> None:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type in ("", JSON) or media_type.endswith("+json"):
            self._parse_json(await read_limited(request, self.max_body_bytes), message)
        elif media_type == "multipart/form-data":
            await self._parse_multipart(request, message)
        elif media_type.startswith("image/") or media_type == "application/octet-stream":
            field = first_bytes_field(message.DESCRIPTOR)
            if field is None:
                raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"{binding.path} takes no raw body; send {JSON}",
                                   415)
            for name in request.query_params:
                set_field_from_text(message, name, request.query_params.getlist(name))
            setattr(message, field.name, await read_limited(request, self.max_message_bytes))
        else:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unsupported Content-Type {media_type!r}: send {JSON}, multipart/form-data or the image itself "
                "(image/jpeg, image/png, ...)",
                415,
            )

    @staticmethod
    def _parse_json(body: bytes, message: Message) -> None:
        if not body.strip():
            return
        try:
            json_format.Parse(body, message)
        except json_format.ParseError as exc:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON request: {exc}") from None
        except (UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON request: {exc}") from None

    async def _parse_multipart(self, request: Request, message: Message) -> None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        parser = _InMemoryMultiPartParser(
            request.headers, _limited_stream(request, self.max_body_bytes),
            max_files=16, max_fields=64, max_part_size=self.max_message_bytes,
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid multipart body: {exc.message}") from None
        try:
            texts: dict[str, list[str]] = {}
            for name, value in form.multi_items():
                field = _field(message, name.split(".")[0])
                if isinstance(value, UploadFile):
                    if field is None or field.type != field.TYPE_BYTES or "." in name:
                        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"file part {name!r} does not name a bytes field")
                    data = await value.read()
                    if field.is_repeated:
                        getattr(message, field.name).append(data)
                    else:
                        setattr(message, field.name, data)
                else:
                    texts.setdefault(name, []).append(value)
            for name, values in texts.items():
                set_field_from_text(message, name, values)
        finally:
            await form.close()


# ------------------------------------------------------------------------------ servicer context

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(text: str) -> float:
    """Seconds of a gRPC timeout header value: 1-8 digits and a unit (H M S m u n)."""
    text = text.strip()
    if not (2 <= len(text) <= 9 and text[:-1].isdigit() and text[-1] in _TIMEOUT_UNITS):
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT,
                           "invalid Grpc-Timeout: digits and a unit (H, M, S, m, u or n), e.g. 500m")
    return int(text[:-1]) * _TIMEOUT_UNITS[text[-1]]



class HttpServicerContext(grpc.ServicerContext):
    """What a servicer method needs from gRPC's context, for a call that came over HTTP.

    ``abort`` raises :class:`HttpAbort` as gRPC's raises to end the RPC; the metadata are the
    request's ``authorization`` (and ``user-agent``) headers, the peer is the client address
    in gRPC's ``ipv4:HOST:PORT`` form, so rate limits identify a client the same way.
    """

    transport = "http"  # the servicer puts it in the call's log line

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str, deadline: float | None = None):
        self._metadata = metadata
        self._peer = peer
        self._deadline = deadline
        self._callbacks: list[Callable[[], None]] = []
        self._active = True
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> "HttpServicerContext":
        """The context of ``request``; a ``Grpc-Timeout`` header (gRPC's format, e.g. ``500m``)
        sets the deadline, as grpc-gateway does."""
        timeout = request.headers.get("grpc-timeout")
        deadline = None if timeout is None else time.monotonic() + parse_grpc_timeout(timeout)
        metadata = tuple(
            (name, request.headers[name]) for name in ("authorization", "user-agent") if name in request.headers
        )
        client = request.client
        if client is None:
            peer = "unknown"
        elif ":" in client.host:
            peer = f"ipv6:[{client.host}]:{client.port}"
        else:
            peer = f"ipv4:{client.host}:{client.port}"
        return cls(metadata, peer, deadline)

    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self):
        return None

    def peer_identity_key(self):
        return None

    def auth_context(self):
        return {}

    def time_remaining(self):
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def abort(self, code, details):
        raise HttpAbort(code, details)

    def abort_with_status(self, status):
        raise HttpAbort(status.code, status.details)

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details

    def code_and_details(self):
        return self.code, self.details

    def send_initial_metadata(self, initial_metadata):
        pass

    def set_trailing_metadata(self, trailing_metadata):
        pass

    def set_compression(self, compression):
        pass

    def disable_next_message_compression(self):
        pass

    def is_active(self) -> bool:
        return self._active

    def add_callback(self, callback) -> bool:
        if not self._active:
            return False
        self._callbacks.append(callback)
        return True

    def cancel(self) -> None:
        self.finish()

    def finish(self) -> None:
        """The call is over (answered, or the client went away): run the callbacks once."""
        if not self._active:
            return
        self._active = False
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a callback must not break the response
                log_event("callback_failed", level=logging.WARNING)


def grpc_health_check(health_servicer, service: str = "") -> Callable[[], bool]:
    """``is_serving`` for :class:`Gateway`: asks the gRPC health servicer itself, so that
    ``/healthz`` is 200 exactly while gRPC health reports SERVING."""
    from grpc_health.v1 import health_pb2

    def serving() -> bool:
        context = HttpServicerContext((), "local")
        try:
            response = health_servicer.Check(health_pb2.HealthCheckRequest(service=service), context)
        except HttpAbort:
            return False
        return response is not None and response.status == health_pb2.HealthCheckResponse.SERVING

    return serving


# ------------------------------------------------------------------------------ the app


class _SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app):
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(event):
            if event["type"] == "http.response.start":
                present = {name.lower() for name, _ in event.get("headers", [])}
                event = {**event, "headers": [*event.get("headers", []),
                                              *(h for h in self.headers if h[0] not in present)]}
            await send(event)

        return await self.app(scope, receive, send_with_headers)


@dataclass
class Gateway:
    """The HTTP face of a servicer: routes from ``service``'s google.api.http annotations.

    ``servicer`` has one method per RPC, called as gRPC calls it: ``(request, context)``.
    ``is_serving`` reports gRPC health (``GET /healthz``); ``api_keys`` (when non-empty)
    guards the API routes as gRPC's ApiKeyInterceptor guards the RPCs.
    """

    servicer: Any
    service: descriptor.ServiceDescriptor
    is_serving: Callable[[], bool]
    api_keys: ApiKeys | None = None
    max_message_bytes: int = 10 * 1024 * 1024
    max_concurrent_calls: int = 64
    openapi: dict | None = None
    web_dir: Path | None = WEB_DIR

    def __post_init__(self):
        self.bindings = http_bindings(self.service)
        self.decoder = RequestDecoder(self.max_message_bytes)
        self._limiter: anyio.CapacityLimiter | None = None

    # -------------------------------------------------------------- app

    def app(self):
        """The ASGI application."""
        routes = [Route(b.starlette_path, self._endpoint(b), methods=[b.verb]) for b in self.bindings]
        routes.append(Route("/healthz", self._healthz, methods=["GET", "HEAD"]))
        if self.openapi is not None:
            routes.append(Route("/openapi.json", self._openapi, methods=["GET", "HEAD"]))
        if self.web_dir is not None:
            # The page at / and its assets under /static/: no catch-all, so a wrong verb on an
            # API path is still 405.
            routes.append(Route("/", self._index, methods=["GET", "HEAD"]))
            routes.append(Mount("/static", StaticFiles(directory=self.web_dir), name="static"))
        app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
        )
        return _SecurityHeaders(app)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Created lazily: a CapacityLimiter belongs to the event loop that first uses it.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrent_calls)
        return self._limiter

    async def _healthz(self, request: Request) -> Response:
        serving = self.is_serving()
        body = {"status": "SERVING" if serving else "NOT_SERVING"}
        return JSONResponse(body, status_code=200 if serving else 503, headers={"cache-control": "no-store"})

    async def _index(self, request: Request) -> Response:
        return FileResponse(self.web_dir / "index.html", headers={"cache-control": "no-cache"})

    async def _openapi(self, request: Request) -> Response:
        return Response(_json_bytes(self.openapi), media_type=JSON)

    # -------------------------------------------------------------- calls

    def _endpoint(self, binding: Binding):
        if binding.streaming:
            async def endpoint(request: Request) -> Response:
                return await self._stream_call(request, binding)
        else:
            async def endpoint(request: Request) -> Response:
                return await self._unary_call(request, binding)
        endpoint.__name__ = binding.method.name
        return endpoint

    def _check_key(self, request: Request) -> None:
        if not self.api_keys or not len(self.api_keys):
            return
        header = request.headers.get("authorization", "")
        presented = header[len("Bearer "):].strip() if header.startswith("Bearer ") else None
        if presented is not None and self.api_keys.accepts(presented):
            return
        reason = ("missing API key: send 'Authorization: Bearer <key>'" if presented is None
                  else "API key not accepted")
        raise GatewayError(grpc.StatusCode.UNAUTHENTICATED, reason)

    def _check_capacity(self) -> None:
        # As gRPC's maximum_concurrent_rpcs: refuse at once rather than hold more bodies in memory.
        if self.limiter.available_tokens < 1:
            raise GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"the server is handling its limit of {self.max_concurrent_calls} calls; retry later")

    def _refused(self, binding: Binding, started: float, error: GatewayError) -> Response:
        """The log line of a request refused before the servicer ran, and its response."""
        if error.code != grpc.StatusCode.CANCELLED:
            log_event("rpc", method=binding.method.name, transport="http", code=error.code.name,
                      latency_ms=round((time.perf_counter() - started) * 1000.0, 2), error=error.message)
        headers = {"www-authenticate": "Bearer"} if error.code == grpc.StatusCode.UNAUTHENTICATED else None
        return error_response(error.code, error.message, error.http_status, headers)

    async def _unary_call(self, request: Request, binding: Binding) -> Response:
        started = time.perf_counter()
        method = binding.method
        try:
            self._check_key(request)
            self._check_capacity()
            context = HttpServicerContext.from_request(request)
            message = await self.decoder.decode(request, binding, message_class(method.input_type))
        except GatewayError as error:
            return self._refused(binding, started, error)
        handler = getattr(self.servicer, method.name)
        try:
            response = await anyio.to_thread.run_sync(handler, message, context, limiter=self.limiter)
        except HttpAbort as abort:
            return error_response(abort.code, abort.message)
        finally:
            context.finish()
        payload = to_json_dict(response)
        if binding.response_body:
            payload = payload.get(method.output_type.fields_by_name[binding.response_body].json_name)
        return Response(_json_bytes(payload), media_type=JSON)

    async def _stream_call(self, request: Request, binding: Binding) -> Response:
        """Newline-delimited JSON both ways: one request message per line in, one response
        message per line out, as the servicer yields them. A failure after the first line was
        sent ends the body with a ``{"code", "message"}`` line."""
        started = time.perf_counter()
        method = binding.method
        try:
            self._check_key(request)
            self._check_capacity()
            context = HttpServicerContext.from_request(request)
        except GatewayError as error:
            return self._refused(binding, started, error)
        request_type = message_class(method.input_type)
        loop = asyncio.get_running_loop()
        lines = _ndjson_messages(request, request_type, self.decoder.max_body_bytes)
        handler = getattr(self.servicer, method.name)
        if method.client_streaming:
            requests: Any = _BlockingIterator(lines, loop)
        else:
            first = await anext(lines, None)
            requests = first if first is not None else request_type()
        end = object()

        def start():
            return iter(handler(requests, context))

        def step(iterator):
            return next(iterator, end)

        try:
            iterator = await anyio.to_thread.run_sync(start, limiter=self.limiter)
            first_response = await anyio.to_thread.run_sync(step, iterator, limiter=self.limiter)
        except HttpAbort as abort:
            context.finish()
            return error_response(abort.code, abort.message)
        except BaseException:
            context.finish()
            raise

        async def body():
            try:
                item = first_response
                while item is not end:
                    yield _json_bytes(to_json_dict(item)) + b"\n"
                    item = await anyio.to_thread.run_sync(step, iterator, limiter=self.limiter)
                if isinstance(requests, _BlockingIterator) and requests.error is not None:
                    # A request line that did not parse ended the input: say so, last.
                    error = requests.error
                    yield _json_bytes(error_body(error.code, error.message)) + b"\n"
            except HttpAbort as abort:
                yield _json_bytes(error_body(abort.code, abort.message)) + b"\n"
            finally:
                context.finish()

        return StreamingResponse(body(), media_type=NDJSON)


async def _ndjson_messages(request: Request, request_type: type[Message], max_line: int) -> AsyncIterator[Message]:
    """Request messages from a newline-delimited JSON body; a line that does not parse ends
    the body with INVALID_ARGUMENT (its position is in the message)."""
    buffer = b""
    number = 0
    try:
        async for chunk in request.stream():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                number += 1
                if line.strip():
                    yield _parse_line(line, request_type, number)
            if len(buffer) > max_line:
                raise _too_large(max_line)
    except ClientDisconnect:
        return
    if buffer.strip():
        yield _parse_line(buffer, request_type, number + 1)


def _parse_line(line: bytes, request_type: type[Message], number: int) -> Message:
    message = request_type()
    try:
        json_format.Parse(line, message)
    except (json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"line {number} is not a valid "
                           f"{request_type.DESCRIPTOR.full_name} in JSON: {exc}") from None
    return message


class _BlockingIterator:
    """A blocking iterator over an async one, for a servicer reading requests in its own thread."""

    def __init__(self, agen: AsyncIterator[Message], loop: asyncio.AbstractEventLoop):
        self._agen = agen
        self._loop = loop
        self._done = False
        self.error: GatewayError | None = None

    def __iter__(self):
        return self

    def __next__(self) -> Message:
        if self._done:
            raise StopIteration
        future = asyncio.run_coroutine_threadsafe(anext(self._agen, None), self._loop)
        try:
            item = future.result()
        except GatewayError as error:
            # The items before it are answered; the response ends with this error.
            self._done = True
            self.error = error
            raise StopIteration from None
        if item is None:
            self._done = True
            raise StopIteration
        return item


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    code = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED}.get(exc.status_code,
                                                                                     grpc.StatusCode.INVALID_ARGUMENT)
    message = {404: f"no such resource: {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return error_response(code, message, exc.status_code, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log_event("http_error", level=logging.ERROR, path=request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return error_response(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")


def iter_bindings(bindings: Iterable[Binding]) -> list[tuple[str, str, str]]:
    """(verb, path, method name) of each binding: for logs and docs."""
    return [(b.verb, b.path, b.method.name) for b in bindings]
