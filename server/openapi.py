"""The OpenAPI 3.1 document of the HTTP/JSON API, built from the contract at start time.

Paths come from the ``google.api.http`` bindings (:func:`ekyc.server.gateway.http_bindings`),
schemas from the message descriptors (proto3 JSON: lowerCamelCase names, 64-bit integers as
strings, bytes as base64, enums by name), and descriptions from the proto comments kept in
the generated descriptor set (``ekyc/v1/contract.binpb``). Nothing here names an RPC or a field.
"""

from __future__ import annotations

from importlib import resources

from google.protobuf import descriptor, descriptor_pb2

from ekyc.server.gateway import HTTP_STATUS, JSON, NDJSON, Binding, first_bytes_field

ERROR_SCHEMA = "Error"
_REF = "#/components/schemas/"
_NUMBER_FORMATS = {descriptor.FieldDescriptor.TYPE_DOUBLE: "double", descriptor.FieldDescriptor.TYPE_FLOAT: "float"}
_INT32 = {descriptor.FieldDescriptor.TYPE_INT32, descriptor.FieldDescriptor.TYPE_SINT32,
          descriptor.FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {descriptor.FieldDescriptor.TYPE_UINT32, descriptor.FieldDescriptor.TYPE_FIXED32}
_INT64 = {descriptor.FieldDescriptor.TYPE_INT64, descriptor.FieldDescriptor.TYPE_SINT64,
          descriptor.FieldDescriptor.TYPE_SFIXED64, descriptor.FieldDescriptor.TYPE_UINT64,
          descriptor.FieldDescriptor.TYPE_FIXED64}


def load_comments(package: str = "ekyc.v1", name: str = "contract.binpb") -> dict[str, str]:
    """Leading comments of every message, field, enum, enum value, service and method, by
    full name (``ekyc.v1.VerifyRequest.image``); empty when the descriptor set is missing."""
    try:
        data = resources.files(package).joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    comments: dict[str, str] = {}
    for file in files.file:
        by_path = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location
                   if loc.leading_comments.strip()}
        prefix = f"{file.package}." if file.package else ""

        def message(msg, path, scope):
            full = scope + msg.name
            _put(comments, full, by_path.get(path))
            for i, field in enumerate(msg.field):
                _put(comments, f"{full}.{field.name}", by_path.get((*path, 2, i)))
            for i, nested in enumerate(msg.nested_type):
                message(nested, (*path, 3, i), full + ".")
            for i, nested in enumerate(msg.enum_type):
                enum(nested, (*path, 4, i), full + ".")

        def enum(en, path, scope):
            full = scope + en.name
            _put(comments, full, by_path.get(path))
            for i, value in enumerate(en.value):
                _put(comments, f"{full}.{value.name}", by_path.get((*path, 2, i)))

        for i, msg in enumerate(file.message_type):
            message(msg, (4, i), prefix)
        for i, en in enumerate(file.enum_type):
            enum(en, (5, i), prefix)
        for i, service in enumerate(file.service):
            _put(comments, prefix + service.name, by_path.get((6, i)))
            for j, method in enumerate(service.method):
                _put(comments, f"{prefix}{service.name}.{method.name}", by_path.get((6, i, 2, j)))
    return comments


def _put(comments: dict, key: str, text: str | None) -> None:
    if text:
        comments[key] = " ".join(line.strip() for line in text.splitlines())


class _Schemas:
    def __init__(self, comments: dict[str, str]):
        self.comments = comments
        self.schemas: dict[str, dict] = {}

    def ref(self, message: descriptor.Descriptor) -> dict:
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder against recursion
            self.schemas[message.full_name] = self.message(message)
        return {"$ref": _REF + message.full_name}

    def message(self, message: descriptor.Descriptor, binary_bytes: bool = False, skip=()) -> dict:
        properties = {}
        for field in message.fields:
            if field.name in skip:
                continue
            properties[field.json_name] = self.field(field, binary_bytes)
        schema: dict = {"type": "object", "properties": properties}
        text = self.comments.get(message.full_name)
        oneofs = [o for o in message.oneofs if not (len(o.fields) == 1 and o.fields[0].has_presence
                                                     and o.name.startswith("_"))]
        if oneofs:
            notes = "; ".join(f"at most one of {', '.join(f.json_name for f in o.fields)}" for o in oneofs)
            text = f"{text} ({notes})" if text else notes[0].upper() + notes[1:]
        if text:
            schema["description"] = text
        return schema

    def field(self, field: descriptor.FieldDescriptor, binary_bytes: bool = False) -> dict:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: dict = {"type": "object", "additionalProperties": self.single(value, binary_bytes)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.single(field, binary_bytes)}
        else:
            schema = self.single(field, binary_bytes)
        text = self.comments.get(field.full_name)
        if text:
            schema = {**schema, "description": text} if "$ref" not in schema else {"allOf": [schema], "description": text}
        return schema

    def single(self, field: descriptor.FieldDescriptor, binary_bytes: bool) -> dict:
        kind = field.type
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            values = [v.name for v in field.enum_type.values]
            scope = field.enum_type.full_name
            text = "; ".join(f"{v.name}: {self.comments[f'{scope}.{v.name}'].rstrip('.')}" for v in field.enum_type.values
                             if f"{scope}.{v.name}" in self.comments)
            schema = {"type": "string", "enum": values}
            return {**schema, "description": text} if text else schema
        if kind == field.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == field.TYPE_STRING:
            return {"type": "string"}
        if kind == field.TYPE_BYTES:
            if binary_bytes:
                return {"type": "string", "contentMediaType": "application/octet-stream"}
            return {"type": "string", "contentEncoding": "base64"}
        if kind in _NUMBER_FORMATS:
            return {"type": "number", "format": _NUMBER_FORMATS[kind]}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "format": "int64", "minimum": 0}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        raise ValueError(f"unsupported field type {kind} of {field.full_name}")


def _query_parameters(schemas: _Schemas, message: descriptor.Descriptor, skip: set[str]) -> list[dict]:
    parameters = []
    for field in message.fields:
        if field.name in skip or field.message_type is not None:
            continue
        schema = schemas.field(field)
        description = schema.pop("description", None)
        parameter = {"name": field.json_name, "in": "query", "required": False, "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _path_parameters(binding: Binding, schemas: _Schemas) -> list[dict]:
    out, template = [], binding.path
    while "{" in template:
        start = template.index("{")
        end = template.index("}", start)
        name = template[start + 1:end].split("=")[0]
        out.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
        template = template[end + 1:]
    return out


def _error_responses() -> dict:
    documented = {
        "400": "INVALID_ARGUMENT: the image or a field is unusable",
        "401": "UNAUTHENTICATED: missing or wrong API key (when the server has keys)",
        "413": "RESOURCE_EXHAUSTED: the body is larger than the server's limit",
        "415": "INVALID_ARGUMENT: an unsupported Content-Type",
        "429": "RESOURCE_EXHAUSTED: rate limit or server queue full; retry later",
        "500": "INTERNAL: an unexpected error (details only in the server log)",
        "503": "UNAVAILABLE: models loading or the server shutting down",
        "504": "DEADLINE_EXCEEDED",
    }
    error = {"content": {JSON: {"schema": {"$ref": _REF + ERROR_SCHEMA}}}}
    return {status: {"description": text, **error} for status, text in documented.items()}


def openapi_document(service: descriptor.ServiceDescriptor, bindings: list[Binding], *, version: str,
                     comments: dict[str, str] | None = None, title: str = "ekyc HTTP/JSON API") -> dict:
    """The OpenAPI 3.1 document of ``bindings`` (the routes of ``service``)."""
    comments = load_comments() if comments is None else comments
    schemas = _Schemas(comments)
    paths: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for binding in bindings:
        method = binding.method
        count = seen.get(method.name, 0)
        seen[method.name] = count + 1
        operation: dict = {
            "operationId": method.name if count == 0 else f"{method.name}{count + 1}",
            "tags": [service.name],
            "summary": comments.get(method.full_name, method.name),
        }
        parameters = _path_parameters(binding, schemas)
        request = method.input_type
        if binding.streaming:
            operation["description"] = (
                f"Newline-delimited JSON both ways: one {request.full_name} per request line, one "
                f"{method.output_type.full_name} per response line. A failure after the first line ends the "
                "body with an Error line."
            )
            operation["requestBody"] = {"required": True, "content": {
                NDJSON: {"schema": schemas.ref(request)}}}
            success = {"description": "one response per line", "content": {
                NDJSON: {"schema": schemas.ref(method.output_type)}}}
        else:
            if binding.body == "*":
                content = {JSON: {"schema": schemas.ref(request)},
                           "multipart/form-data": {"schema": schemas.message(request, binary_bytes=True)}}
                raw = first_bytes_field(request)
                if raw is not None:
                    content["image/*"] = {"schema": {"type": "string", "contentMediaType": "image/*"}}
                    content["application/octet-stream"] = {"schema": {"type": "string",
                                                                      "contentMediaType": "application/octet-stream"}}
                    raw_parameters = _query_parameters(schemas, request, {raw.name})
                    for parameter in raw_parameters:
                        parameter["description"] = (
                            (parameter.get("description", "") + " ").lstrip()
                            + f"(with a raw image body, which fills {raw.json_name})"
                        )
                    parameters.extend(raw_parameters)
                operation["requestBody"] = {"required": True, "content": content}
            elif binding.body:
                field = request.fields_by_name[binding.body]
                operation["requestBody"] = {"required": True, "content": {JSON: {"schema": schemas.field(field)}}}
            else:
                parameters.extend(_query_parameters(schemas, request, set()))
            response_schema = schemas.ref(method.output_type)
            if binding.response_body:
                response_schema = schemas.field(method.output_type.fields_by_name[binding.response_body])
            success = {"description": "OK", "content": {JSON: {"schema": response_schema}}}
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = {"200": success, **_error_responses()}
        paths.setdefault(binding.path, {})[binding.verb.lower()] = operation
    codes = sorted({code.name for code in HTTP_STATUS})
    schemas.schemas[ERROR_SCHEMA] = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": codes, "description": "the gRPC status code's name"},
            "message": {"type": "string"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": comments.get(service.full_name, "")
            + f" Generated from {service.full_name}'s google.api.http annotations.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "Authorization: Bearer <key>, when the server has API keys"}},
        },
        "security": [{}, {"apiKey": []}],
    }
