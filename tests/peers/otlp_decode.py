"""What an OTLP backend received, decoded with PyPI opentelemetry-proto (not the daemon's code).

Usage:
  otlp_decode.py RECORDED
      RECORDED is a JSON list of the requests a fault injector received on /v1/traces:
      {"headers": [[name, value], ...], "body_hex"}. Gunzips a body sent with
      Content-Encoding gzip and decodes it as an ExportTraceServiceRequest.
      Prints {"requests": [{"gzip": B, "content_type": S, "headers": {name: value}}, ...],
              "spans": [{"trace_id", "span_id", "parent_span_id" (hex), "name", "kind" (int),
                         "start", "end" (ns, as strings), "status" (int), "flags" (int),
                         "attributes": {key: [type, value]}, "resource": {key: [type, value]},
                         "events": [name, ...], "links": [span_id hex, ...]}, ...]}.
      A value's type is the AnyValue field set: string_value, int_value (as a string),
      double_value, bool_value, array_value or kvlist_value (as their JSON text).
"""

import gzip
import json
import sys

from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def value(v) -> list:
    kind = v.WhichOneof("value")
    if kind == "int_value":
        return [kind, str(v.int_value)]
    if kind in ("array_value", "kvlist_value"):
        return [kind, MessageToJson(getattr(v, kind), indent=None)]
    if kind == "bytes_value":
        return [kind, v.bytes_value.hex()]
    return [kind, getattr(v, kind) if kind else None]


def attributes(kvs) -> dict:
    return {kv.key: value(kv.value) for kv in kvs}


def main() -> None:
    recorded = json.load(open(sys.argv[1]))
    requests, spans = [], []
    for call in recorded:
        headers = {name.lower(): v for name, v in call["headers"]}
        body = bytes.fromhex(call["body_hex"])
        zipped = headers.get("content-encoding") == "gzip"
        if zipped:
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        requests.append(
            {"gzip": zipped, "content_type": headers.get("content-type"), "headers": headers}
        )
        for rs in message.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "start": str(s.start_time_unix_nano),
                            "end": str(s.end_time_unix_nano),
                            "status": s.status.code,
                            "flags": s.flags,
                            "attributes": attributes(s.attributes),
                            "resource": resource,
                            "events": [e.name for e in s.events],
                            "links": [link.span_id.hex() for link in s.links],
                        }
                    )
    print(json.dumps({"requests": requests, "spans": spans}))


if __name__ == "__main__":
    main()
