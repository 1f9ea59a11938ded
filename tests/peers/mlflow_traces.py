"""Reads back, with MLflow's own client, the traces an MLflow tracking server stored.

Usage: mlflow_traces.py TRACKING_URI

Prints {"traces": [{"trace_id": S, "spans": [{"trace_id", "span_id", "parent_id", "name",
"start_ns", "end_ns", "status", "attributes": {...}, "events": [name, ...]}, ...]}, ...]}
for every trace in experiment 0. Ids are as MLflow gives them (span ids as hex); attribute
values as MLflow typed them (JSON).
"""

import json
import logging
import os
import sys


def main() -> int:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    logging.disable(logging.WARNING)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sys.argv[1])
    out = []
    for trace in client.search_traces(locations=["0"], max_results=500):
        spans = []
        for span in trace.data.spans:
            status = span.status
            spans.append(
                {
                    "trace_id": span.trace_id,
                    "span_id": span.span_id,
                    "parent_id": span.parent_id,
                    "name": span.name,
                    "start_ns": str(span.start_time_ns),
                    "end_ns": str(span.end_time_ns),
                    "status": str(getattr(status, "status_code", status)),
                    "attributes": {k: v for k, v in (span.attributes or {}).items()},
                    "events": [e.name for e in (span.events or [])],
                }
            )
        out.append({"trace_id": trace.info.trace_id, "spans": spans})
    print(json.dumps({"traces": out}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
