"""A real OpenTelemetry client for the integration tests: Flask + the OpenTelemetry SDK.

Usage: otel_flask_app.py N CALL_URL

The reference user's OpenTelemetry half: FlaskInstrumentor and RequestsInstrumentor, a
BatchSpanProcessor with the OTLP/HTTP protobuf exporter (OTLPSpanExporter), configured only
by the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_SERVICE_NAME). With OTEL_EXPORTER_OTLP_PROTOCOL=grpc the OTLP/gRPC exporter instead
(insecure, as an http:// endpoint makes it; OTEL_EXPORTER_OTLP_COMPRESSION=gzip compresses). Serves N requests to GET /home through Flask's test client; each opens the
nested spans home-activities-data -> home-result-activities (attribute app.hubabuba) and calls
CALL_URL with requests (a CLIENT span). Then flushes and shuts the provider down, so every span
has been exported (or the exporter gave up) when this exits.

Prints exactly one JSON line to stdout:
  {"spans": [{"trace_id": HEX32, "span_id": HEX16, "parent_id": HEX16 or null,
              "name": N, "kind": "SERVER"|"INTERNAL"|"CLIENT", "start_ns": I, "end_ns": I}],
   "export_ok": true|false}
Everything else goes to stderr.
"""

import json
import os
import sys

import requests
from flask import Flask, jsonify
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: otel_flask_app.py N CALL_URL", file=sys.stderr)
        return 2
    count = int(sys.argv[1])
    call_url = sys.argv[2]

    provider = TracerProvider(resource=Resource.create())
    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter()
    batch = BatchSpanProcessor(exporter)
    provider.add_span_processor(batch)
    seen = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("otel-flask-test")

    app = Flask("otel-flask-test")
    FlaskInstrumentor().instrument_app(app)
    RequestsInstrumentor().instrument()

    @app.route("/home")
    def home():
        with tracer.start_as_current_span("home-activities-data") as outer:
            outer.set_attribute("app.hubabuba", "hubabuba-value")
            with tracer.start_as_current_span("home-result-activities") as inner:
                inner.set_attribute("app.result.count", 3)
            requests.get(call_url, timeout=5)
        return jsonify(ok=True)

    client = app.test_client()
    for _ in range(count):
        response = client.get("/home")
        if response.status_code != 200:
            print(f"request failed: {response.status_code}", file=sys.stderr)
            return 1

    export_ok = provider.force_flush(30_000)
    provider.shutdown()

    spans = []
    for s in seen.get_finished_spans():
        ctx = s.get_span_context()
        parent = s.parent.span_id if s.parent is not None else None
        spans.append(
            {
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(parent, "016x") if parent is not None else None,
                "name": s.name,
                "kind": s.kind.name,
                "start_ns": s.start_time,
                "end_ns": s.end_time,
            }
        )
    print(json.dumps({"spans": spans, "export_ok": bool(export_ok)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
