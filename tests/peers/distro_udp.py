"""The AWS distro for OpenTelemetry's UDP exporter, as a peer of the integration tests.

Usage: distro_udp.py HOST:PORT

Runs in .venv-distro (aws-opentelemetry-distro pins its own OpenTelemetry versions). Two tracer
providers with a SimpleSpanProcessor each (one datagram per span): one exports through
OTLPUdpSpanExporter(endpoint, sampled=True), which sends `T1S` + base64 of the OTLP protobuf
after the X-Ray header line, the other through sampled=False (`T1U`). Each makes a parent span
`distro-parent` with a child `distro-child` (attribute app.hubabuba).

Prints exactly one JSON line to stdout:
  {"sampled": [{"trace_id": HEX32, "span_id": HEX16, "name": N}, ...],
   "unsampled": [...]}
"""

import json
import sys

from amazon.opentelemetry.distro.otlp_udp_exporter import OTLPUdpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def run(endpoint: str, sampled: bool) -> list:
    provider = TracerProvider(resource=Resource.create({"service.name": "distro-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPUdpSpanExporter(endpoint=endpoint, sampled=sampled)))
    seen = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    tracer = provider.get_tracer("distro-test")
    with tracer.start_as_current_span("distro-parent"):
        with tracer.start_as_current_span("distro-child") as child:
            child.set_attribute("app.hubabuba", "udp")
    provider.shutdown()
    return [
        {
            "trace_id": format(s.get_span_context().trace_id, "032x"),
            "span_id": format(s.get_span_context().span_id, "016x"),
            "name": s.name,
        }
        for s in seen.get_finished_spans()
    ]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: distro_udp.py HOST:PORT", file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    out = {"sampled": run(endpoint, True), "unsampled": run(endpoint, False)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
