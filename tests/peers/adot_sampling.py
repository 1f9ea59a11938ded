"""An ADOT-instrumented app's sampler, as a peer of the integration tests.

Usage: adot_sampling.py

Runs in .venv-distro. Configures OpenTelemetry the way the AWS distro does for an app started
with `OTEL_TRACES_SAMPLER=xray` and `OTEL_TRACES_SAMPLER_ARG=endpoint=http://HOST:PORT` (the
daemon's TCP address; the caller sets both): the distro's AwsXRayRemoteSampler, which fetches
X-Ray's sampling rules from that endpoint at once and then polls it. Then asks it, every 100 ms
for up to 20 s, to decide for a SERVER span on /health and one on /work, until the decisions
follow the rules the test serves (nothing under /health, everything else) three times running.

Prints exactly one JSON line to stdout: {"obeyed": true|false, "tries": N}
"""

import json
import os
import random
import sys
import time

for name, value in {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}.items():
    os.environ.setdefault(name, value)

from amazon.opentelemetry.distro.aws_opentelemetry_configurator import (  # noqa: E402
    AwsOpenTelemetryConfigurator,
)
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.sampling import Decision  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402


def sampled(sampler, path: str) -> bool:
    attributes = {"http.method": "GET", "http.target": path, "url.path": path}
    result = sampler.should_sample(
        None, random.getrandbits(128), "GET " + path, kind=SpanKind.SERVER, attributes=attributes
    )
    return result.decision == Decision.RECORD_AND_SAMPLE


def main() -> int:
    if os.environ.get("OTEL_TRACES_SAMPLER") != "xray":
        print("OTEL_TRACES_SAMPLER=xray must be set", file=sys.stderr)
        return 2
    AwsOpenTelemetryConfigurator().configure()
    sampler = trace.get_tracer_provider().sampler
    in_a_row = 0
    tries = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and in_a_row < 3:
        tries += 1
        if sampled(sampler, "/work") and not sampled(sampler, "/health"):
            in_a_row += 1
        else:
            in_a_row = 0
        time.sleep(0.1)
    print(json.dumps({"obeyed": in_a_row >= 3, "tries": tries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
