"""A real X-Ray client for the integration tests: Flask + the Python X-Ray SDK.

Usage: flask_app.py N STREAMING_THRESHOLD

Serves N requests through Flask's test client (no HTTP server). The SDK's
XRayMiddleware opens one segment per request and the route opens two
subsegments, so the SDK sends its UDP datagrams to the address in
AWS_XRAY_DAEMON_ADDRESS ("127.0.0.1:2000" or "tcp:H:P udp:H:P"). With a low
STREAMING_THRESHOLD (e.g. 0) the SDK streams each finished subsegment as its
own datagram before the parent segment.

Prints exactly one JSON line to stdout:
  {"trace_ids": [...], "segment_ids": [...], "subsegment_ids": [...],
   "requests": [{"trace_id": T, "segment_id": S, "subsegment_ids": [...]}, ...]}
Index i of trace_ids/segment_ids/requests is request i. Everything else the
SDK says goes to stderr through `logging`.
"""

import json
import os
import sys

from flask import Flask, jsonify

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: flask_app.py N STREAMING_THRESHOLD", file=sys.stderr)
        return 2
    count = int(sys.argv[1])
    threshold = int(sys.argv[2])
    address = os.environ.get("AWS_XRAY_DAEMON_ADDRESS")
    if not address:
        print("AWS_XRAY_DAEMON_ADDRESS must be set", file=sys.stderr)
        return 2

    xray_recorder.configure(
        service="flask-test",
        sampling=False,
        daemon_address=address,
        streaming_threshold=threshold,
        context_missing="LOG_ERROR",
    )

    app = Flask("flask-test")
    XRayMiddleware(app, xray_recorder)
    seen = []

    @app.route("/work")
    def work():
        segment = xray_recorder.current_segment()
        record = {
            "trace_id": segment.trace_id,
            "segment_id": segment.id,
            "subsegment_ids": [],
        }
        with xray_recorder.in_subsegment("db") as sub:
            sub.put_annotation("step", "db")
            record["subsegment_ids"].append(sub.id)
        with xray_recorder.in_subsegment("cache") as sub:
            sub.put_metadata("hit", False)
            record["subsegment_ids"].append(sub.id)
        seen.append(record)
        return jsonify(ok=True)

    client = app.test_client()
    for _ in range(count):
        response = client.get("/work")
        if response.status_code != 200:
            print(f"request failed: {response.status_code}", file=sys.stderr)
            return 1

    out = {
        "trace_ids": [r["trace_id"] for r in seen],
        "segment_ids": [r["segment_id"] for r in seen],
        "subsegment_ids": [s for r in seen for s in r["subsegment_ids"]],
        "requests": seen,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
