"""X-Ray's OTLP endpoint, checked from the outside: what the daemon sends there with
--otlp-to-xray otlp, verified with botocore and PyPI opentelemetry-proto (not the daemon's code).

Usage:
  xray_otlp_check.py make OUT N
      Writes an OTLP ExportTraceServiceRequest (protobuf) with N spans to OUT, built with
      opentelemetry-proto: two resources, three scopes, and spans using every field OTLP 1.x
      defines as stable (all attribute value types, events, links, trace state, flags, status,
      dropped counts), started within the last minute.
      Prints {"file": OUT, "span_ids": [HEX16, ...]}.

  xray_otlp_check.py check RECORDED SENT ACCESS_KEY_ID SECRET_ACCESS_KEY SESSION_TOKEN REGION
      RECORDED is a JSON list of the requests the fault injector received on /v1/traces:
      {"method", "path", "headers": [[name, value], ...], "body_hex"}. SENT is the file `make`
      wrote. For each request: recomputes the SigV4 signature with botocore's
      SigV4Auth(credentials, "xray", REGION) over the exact bytes received (with the
      x-amz-date the request carries, and the payload hash of those bytes, not the one the
      request claims), checks Content-Encoding gzip and Content-Type protobuf, gunzips and
      decodes the body. Then compares every span received with the one sent: the span's own
      serialization, and its resource and scope (with their schema URLs), must be identical.
      Prints {"requests": K, "signatures": [{"ok": B, "expected": S, "got": S}, ...],
              "payload_hash_ok": [B...], "gzip": [B...], "protobuf": [B...],
              "spans_sent": N, "spans_received": M, "missing": [...], "unexpected": [...],
              "changed": [...], "duplicates": [...]}.
"""

import datetime
import gzip
import hashlib
import json
import os
import sys
import time
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status


def every_value(prefix: str) -> list:
    """One attribute of each AnyValue kind, nested ones included."""
    return [
        KeyValue(key=f"{prefix}.string", value=AnyValue(string_value="héllo \"world\"")),
        KeyValue(key=f"{prefix}.bool", value=AnyValue(bool_value=True)),
        KeyValue(key=f"{prefix}.int", value=AnyValue(int_value=-9007199254740993)),
        KeyValue(key=f"{prefix}.double", value=AnyValue(double_value=2.5e-7)),
        KeyValue(key=f"{prefix}.bytes", value=AnyValue(bytes_value=b"\x00\x01\xfe\xff")),
        KeyValue(
            key=f"{prefix}.array",
            value=AnyValue(
                array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=2)])
            ),
        ),
        KeyValue(
            key=f"{prefix}.kvlist",
            value=AnyValue(
                kvlist_value=KeyValueList(
                    values=[KeyValue(key="inner", value=AnyValue(double_value=1.0))]
                )
            ),
        ),
        KeyValue(key=f"{prefix}.empty", value=AnyValue()),
    ]


def make_span(n: int, trace_id: bytes, parent: bytes, now_ns: int) -> Span:
    start = now_ns - 30_000_000_000 + n * 1_000_000
    span = Span(
        trace_id=trace_id,
        span_id=os.urandom(7) + bytes([n % 255 + 1]),
        trace_state="vendor=one,other=two" if n % 2 else "",
        parent_span_id=parent,
        flags=0x301 if n % 3 == 0 else 0x101,
        name=f"operation {n}",
        kind=n % 6,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 12_345_678,
        attributes=every_value("span"),
        dropped_attributes_count=n % 4,
        dropped_events_count=1,
        dropped_links_count=n % 2,
        status=Status(code=n % 3, message="it broke" if n % 3 == 2 else ""),
    )
    span.events.add(
        time_unix_nano=start + 1_000,
        name="exception",
        attributes=[
            KeyValue(key="exception.type", value=AnyValue(string_value="ValueError")),
            KeyValue(key="exception.message", value=AnyValue(string_value="bad input")),
        ],
        dropped_attributes_count=2,
    )
    span.links.add(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        trace_state="linked=yes",
        attributes=every_value("link")[:2],
        dropped_attributes_count=1,
        flags=0x101,
    )
    return span


def make(out: str, count: int) -> None:
    now_ns = time.time_ns()
    request = ExportTraceServiceRequest()
    resources = [
        (
            Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="checkout"))]
                     + every_value("resource"), dropped_attributes_count=3),
            "https://opentelemetry.io/schemas/1.24.0",
        ),
        (Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="payments"))]), ""),
    ]
    scopes = [
        (InstrumentationScope(name="checkout.http", version="1.2.3", attributes=every_value("scope")[:3],
                              dropped_attributes_count=1), "https://opentelemetry.io/schemas/1.21.0"),
        (InstrumentationScope(name="checkout.db"), ""),
        (None, ""),
    ]
    span_ids = []
    n = 0
    trace_id = os.urandom(16)
    for r, (resource, resource_schema) in enumerate(resources):
        resource_spans = ResourceSpans(resource=resource, schema_url=resource_schema)
        for s, (scope, scope_schema) in enumerate(scopes[: 3 - r]):
            scope_spans = ScopeSpans(schema_url=scope_schema)
            if scope is not None:
                scope_spans.scope.CopyFrom(scope)
            resource_spans.scope_spans.append(scope_spans)
        request.resource_spans.append(resource_spans)
    # Spread the spans over every scope; the first of the trace is its root.
    slots = [ss for rs in request.resource_spans for ss in rs.scope_spans]
    root = b""
    while n < count:
        span = make_span(n, trace_id, root, now_ns)
        if not root:
            root = span.span_id
        slots[n % len(slots)].spans.append(span)
        span_ids.append(span.span_id.hex())
        n += 1
    with open(out, "wb") as f:
        f.write(request.SerializeToString())
    print(json.dumps({"file": out, "span_ids": span_ids}))


def verify_signature(request: dict, body: bytes, credentials: Credentials, region: str) -> dict:
    headers = {name.lower(): value for name, value in request["headers"]}
    got = headers.get("authorization", "")
    signed = ""
    for part in got.split(","):
        part = part.strip()
        if part.startswith("SignedHeaders="):
            signed = part[len("SignedHeaders="):]
    to_sign = {}
    for name in filter(None, signed.split(";")):
        if name in ("x-amz-date", "x-amz-security-token"):
            continue  # botocore sets these itself, from the time and the credentials
        if name == "x-amz-content-sha256":
            # The hash of the bytes received, not the one the request claims: a signature
            # over other bytes cannot verify.
            to_sign[name] = hashlib.sha256(body).hexdigest()
        else:
            to_sign[name] = headers.get(name, "")
    url = f"http://{headers.get('host', '')}{request['path']}"
    aws_request = AWSRequest(method=request["method"], url=url, headers=to_sign, data=body)
    when = datetime.datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(credentials, "xray", region).add_auth(aws_request)
    expected = aws_request.headers["Authorization"]
    return {"ok": expected == got, "expected": expected, "got": got}


def by_span_id(request: ExportTraceServiceRequest) -> list:
    """(span id hex, (span, resource, resource schema, scope, scope schema) as bytes)."""
    out = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    (
                        span.span_id.hex(),
                        (
                            span.SerializeToString(deterministic=True),
                            rs.resource.SerializeToString(deterministic=True),
                            rs.schema_url,
                            ss.scope.SerializeToString(deterministic=True) if ss.HasField("scope") else None,
                            ss.schema_url,
                        ),
                    )
                )
    return out


def check(recorded: str, sent: str, key_id: str, secret: str, token: str, region: str) -> None:
    with open(recorded) as f:
        requests = json.load(f)
    with open(sent, "rb") as f:
        sent_spans = dict(by_span_id(ExportTraceServiceRequest.FromString(f.read())))
    credentials = Credentials(key_id, secret, token or None)
    report = {"requests": len(requests), "signatures": [], "payload_hash_ok": [], "gzip": [],
              "protobuf": [], "spans_sent": len(sent_spans), "spans_received": 0, "missing": [],
              "unexpected": [], "changed": [], "duplicates": []}
    received = {}
    for request in requests:
        body = bytes.fromhex(request["body_hex"])
        headers = {name.lower(): value for name, value in request["headers"]}
        report["signatures"].append(verify_signature(request, body, credentials, region))
        report["payload_hash_ok"].append(headers.get("x-amz-content-sha256") == hashlib.sha256(body).hexdigest())
        report["gzip"].append(headers.get("content-encoding") == "gzip" and body[:2] == b"\x1f\x8b")
        report["protobuf"].append(headers.get("content-type") == "application/x-protobuf")
        decoded = ExportTraceServiceRequest.FromString(gzip.decompress(body))
        for span_id, parts in by_span_id(decoded):
            report["spans_received"] += 1
            if span_id in received:
                report["duplicates"].append(span_id)
            received[span_id] = parts
    for span_id, parts in sent_spans.items():
        if span_id not in received:
            report["missing"].append(span_id)
        elif received[span_id] != parts:
            report["changed"].append(span_id)
    report["unexpected"] = [s for s in received if s not in sent_spans]
    print(json.dumps(report))


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
        return 0
    if len(sys.argv) == 8 and sys.argv[1] == "check":
        check(*sys.argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
