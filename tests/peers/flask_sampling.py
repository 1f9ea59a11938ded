"""A real X-Ray client with centralized sampling: Flask + the Python X-Ray SDK.

Usage: flask_sampling.py N WAIT_FOR_TARGETS

The SDK is configured with sampling=True, so it asks the daemon's TCP address
(from AWS_XRAY_DAEMON_ADDRESS, "tcp:H:P udp:H:P") for sampling rules
(POST /GetSamplingRules) and, about every 10 s, reports statistics and gets
targets (POST /SamplingTargets).

Steps:
1. start the SDK's pollers and wait (at most 30 s) until rules have been
   fetched through the daemon;
2. serve N requests to /health and N to /work through Flask's test client,
   alternating; the SDK decides for each whether to sample it and sends the
   sampled segments over UDP;
3. if WAIT_FOR_TARGETS is 1, wait (at most 30 s) until the SDK has reported
   its statistics and received targets through the daemon.

Prints exactly one JSON line to stdout:
  {"requests": [{"path": P, "trace_id": T, "sampled": bool}, ...],
   "reports": [[statistics documents sent in one SamplingTargets call], ...],
   "targets": [[target documents received in that call], ...],
   "rules": [rule names the SDK loaded]}
Everything else the SDK says goes to stderr through `logging`.
"""

import json
import logging
import os
import sys
import threading
import time

from flask import Flask, jsonify

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.sampling.connector import ServiceConnector
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: flask_sampling.py N WAIT_FOR_TARGETS", file=sys.stderr)
        return 2
    count = int(sys.argv[1])
    wait_for_targets = sys.argv[2] == "1"
    address = os.environ.get("AWS_XRAY_DAEMON_ADDRESS")
    if not address:
        print("AWS_XRAY_DAEMON_ADDRESS must be set", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    # Record what the SDK reports and receives, around its own connector.
    reports = []
    targets = []
    lock = threading.Lock()
    original_docs = ServiceConnector._generate_reporting_docs
    original_fetch = ServiceConnector.fetch_sampling_target

    def recording_docs(self, rules, now):
        docs = original_docs(self, rules, now)
        with lock:
            reports.append(docs)
        return docs

    def recording_fetch(self, rules):
        result = original_fetch(self, rules)
        with lock:
            targets.append(result[0])
        return result

    ServiceConnector._generate_reporting_docs = recording_docs
    ServiceConnector.fetch_sampling_target = recording_fetch

    xray_recorder.configure(
        service="flask-sampling",
        sampling=True,
        daemon_address=address,
        context_missing="LOG_ERROR",
    )

    app = Flask("flask-sampling")
    XRayMiddleware(app, xray_recorder)
    seen = []

    def record(path):
        segment = xray_recorder.current_segment()
        seen.append(
            {"path": path, "trace_id": segment.trace_id, "sampled": bool(segment.sampled)}
        )

    @app.route("/health")
    def health():
        record("/health")
        return jsonify(ok=True)

    @app.route("/work")
    def work():
        record("/work")
        return jsonify(ok=True)

    sampler = xray_recorder.sampler
    sampler.start()
    deadline = time.time() + 30
    while not sampler._cache.last_updated:
        if time.time() > deadline:
            print("no sampling rules were fetched within 30 s", file=sys.stderr)
            return 1
        time.sleep(0.05)

    client = app.test_client()
    for _ in range(count):
        for path in ("/health", "/work"):
            response = client.get(path)
            if response.status_code != 200:
                print(f"request failed: {response.status_code}", file=sys.stderr)
                return 1

    if wait_for_targets:
        deadline = time.time() + 30
        while True:
            with lock:
                if targets:
                    break
            if time.time() > deadline:
                print("no sampling targets were fetched within 30 s", file=sys.stderr)
                return 1
            time.sleep(0.05)

    with lock:
        out = {
            "requests": seen,
            "reports": reports,
            "targets": targets,
            "rules": [r.name for r in sampler._cache.rules],
        }
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
