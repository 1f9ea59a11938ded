"""The migration case for the integration tests: an X-Ray SDK service calls an OpenTelemetry one.

Usage: migration.py

In one process:
- the callee, a Flask app instrumented with OpenTelemetry (FlaskInstrumentor, a
  BatchSpanProcessor and the OTLP/HTTP exporter, configured by OTEL_EXPORTER_OTLP_ENDPOINT,
  OTEL_SERVICE_NAME and OTEL_PROPAGATORS=xray,tracecontext, the AWS X-Ray propagator from PyPI
  opentelemetry-propagator-aws-xray), served on 127.0.0.1 by werkzeug in a thread;
- the caller, a Flask app with the X-Ray SDK's XRayMiddleware and its `requests` patch, served
  through Flask's test client: one request, which calls the callee with `requests` (the patch
  opens a subsegment and sends X-Amzn-Trace-Id). Its segments go to AWS_XRAY_DAEMON_ADDRESS.

Prints exactly one JSON line to stdout:
  {"xray_trace_id": T, "xray_segment_id": S, "call_subsegment_id": C,
   "otel_trace_id": HEX32, "otel_server_span_id": HEX16, "otel_parent_id": HEX16 or null}
Everything else goes to stderr.
"""

import json
import os
import sys
import threading

import requests
from flask import Flask, jsonify
from werkzeug.serving import make_server

from aws_xray_sdk.core import patch, xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> int:
    for name in ("AWS_XRAY_DAEMON_ADDRESS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_PROPAGATORS"):
        if not os.environ.get(name):
            print(f"{name} must be set", file=sys.stderr)
            return 2

    # The callee: OpenTelemetry.
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    seen = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    trace.set_tracer_provider(provider)
    callee = Flask("otel-callee")
    FlaskInstrumentor().instrument_app(callee)

    @callee.route("/inventory")
    def inventory():
        return jsonify(items=3)

    server = make_server("127.0.0.1", 0, callee)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    callee_url = f"http://127.0.0.1:{server.server_port}/inventory"

    # The caller: the X-Ray SDK.
    xray_recorder.configure(
        service="xray-caller",
        sampling=False,
        daemon_address=os.environ["AWS_XRAY_DAEMON_ADDRESS"],
        context_missing="LOG_ERROR",
    )
    patch(["requests"])
    caller = Flask("xray-caller")
    XRayMiddleware(caller, xray_recorder)
    record = {}

    @caller.route("/checkout")
    def checkout():
        segment = xray_recorder.current_segment()
        record["xray_trace_id"] = segment.trace_id
        record["xray_segment_id"] = segment.id
        response = requests.get(callee_url, timeout=5)
        # The patch's subsegment for the call has ended and is the segment's last child.
        record["call_subsegment_id"] = segment.subsegments[-1].id
        return jsonify(status=response.status_code)

    response = caller.test_client().get("/checkout")
    if response.status_code != 200:
        print(f"request failed: {response.status_code}", file=sys.stderr)
        return 1

    provider.force_flush(30_000)
    provider.shutdown()
    server.shutdown()

    servers = [s for s in seen.get_finished_spans() if s.kind.name == "SERVER"]
    if len(servers) != 1:
        print(f"expected one SERVER span, got {len(servers)}", file=sys.stderr)
        return 1
    span = servers[0]
    ctx = span.get_span_context()
    record["otel_trace_id"] = format(ctx.trace_id, "032x")
    record["otel_server_span_id"] = format(ctx.span_id, "016x")
    record["otel_parent_id"] = (
        format(span.parent.span_id, "016x") if span.parent is not None else None
    )
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
