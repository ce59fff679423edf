"""OTLP/HTTP protobuf encoding of spans, by hand: the wire format of
opentelemetry/proto/collector/trace/v1 ExportTraceServiceRequest (opentelemetry-proto 1.x; field
numbers below), written directly as bytes. Building the generated message objects costs ~35 us per
span here; this costs a few. tests/test_tracing.py decodes every export with opentelemetry-proto's
own classes, so a field written wrong fails there.

  ExportTraceServiceRequest  1 resource_spans (ResourceSpans)
  ResourceSpans              1 resource (Resource: 1 attributes), 2 scope_spans (ScopeSpans)
  ScopeSpans                 1 scope (InstrumentationScope: 1 name, 2 version), 2 spans (Span)
  Span                       1 trace_id (bytes 16), 2 span_id (bytes 8), 4 parent_span_id, 5 name,
                             6 kind (enum), 7 start_time_unix_nano (fixed64), 8 end_time_unix_nano
                             (fixed64), 9 attributes (KeyValue), 15 status (Status: 2 message, 3 code)
  KeyValue                   1 key, 2 value (AnyValue: 1 string, 2 bool, 3 int64, 4 double,
                             5 array (ArrayValue: 1 values))
"""

from __future__ import annotations

import struct
from typing import Any

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field; `tag` is (field number << 3) | 2, already combined."""
    return _SMALL[tag] + _varint(len(payload)) + payload


def _any(value: Any) -> bytes:
    if isinstance(value, str):
        b = value.encode()
        return b"\x0a" + _varint(len(b)) + b
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, (list, tuple)):
        return _field(0x2A, b"".join(_field(0x0A, _any(v)) for v in value))
    return _any(str(value))


_KEYS: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field (a few dozen names)
# (key, value) -> the whole encoded attribute, for values that repeat across requests (method, path,
# model, policy, upstream, outcome, small counts); bounded, so unique values cannot grow it.
_PAIRS: dict[tuple, bytes] = {}
_PAIRS_MAX = 8192
_UNIQUE = frozenset({"gateway.request_id"})  # a new value every time: never worth caching


def attributes(attrs: dict[str, Any], tag: int) -> bytes:
    out = []
    for k, v in attrs.items():
        t = type(v)
        pair = ((tag, k, t, v) if (t is bool or t is int or (t is str and len(v) <= 64)) and k not in _UNIQUE
                else None)
        if pair is not None:
            done = _PAIRS.get(pair)
            if done is not None:
                out.append(done)
                continue
        key = _KEYS.get(k)
        if key is None:
            key = _field(0x0A, k.encode())
            if len(_KEYS) < 1024:
                _KEYS[k] = key
        val = _any(v)
        body = key + b"\x12" + _varint(len(val)) + val
        enc = _SMALL[tag] + _varint(len(body)) + body
        if pair is not None and len(_PAIRS) < _PAIRS_MAX:
            _PAIRS[pair] = enc
        out.append(enc)
    return b"".join(out)


def resource(attrs: dict[str, Any], scope_name: str, scope_version: str) -> bytes:
    """The encoded Resource and InstrumentationScope fields (the same for every export)."""
    return (_field(0x0A, attributes(attrs, 0x0A)),
            _field(0x0A, _field(0x0A, scope_name.encode()) + _field(0x12, scope_version.encode())))


def span(s) -> bytes:
    out = [b"\x0a\x10", s.trace_id.to_bytes(16, "big"), b"\x12\x08", s.span_id.to_bytes(8, "big")]
    if s.parent_id:
        out += [b"\x22\x08", s.parent_id.to_bytes(8, "big")]
    out += [_field(0x2A, s.name.encode()), b"\x30", _varint(s.kind), b"\x39", _FIXED64(s.start), b"\x41",
            _FIXED64(s.end), attributes(s.attrs, 0x4A)]
    if s.status:
        status = (_field(0x12, s.status_message.encode()) if s.status_message else b"") + b"\x18" + _varint(s.status)
        out.append(_field(0x7A, status))
    return b"".join(out)


def export_request(encoded_resource: tuple[bytes, bytes], spans: list) -> bytes:
    res, scope = encoded_resource
    scope_spans = _field(0x12, scope + b"".join(_field(0x12, span(s)) for s in spans))
    return _field(0x0A, res + scope_spans)
