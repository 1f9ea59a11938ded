"""The MLflow tracking server as an OTLP/HTTP backend for the tests, stopped with its parent.

Usage: mlflow_server.py DIR PORT

Starts `mlflow server` (SQLite store in DIR, 127.0.0.1:PORT, telemetry off) in a process group
of its own, prints {"pid": P} once /health answers, then watches its parent (the test run):
when the parent is gone, or on SIGTERM, it stops the whole group and exits. So one server per
test run, never left behind.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request


def main() -> int:
    directory, port = sys.argv[1], sys.argv[2]
    parent = os.getppid()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_TRACKING_URI="")
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [
            mlflow,
            "server",
            "--backend-store-uri",
            f"sqlite:///{directory}/mlflow.db",
            "--default-artifact-root",
            f"{directory}/artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
        env=env,
        stdout=open(os.path.join(directory, "mlflow.log"), "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop(*_):
        try:
            os.killpg(server.pid, signal.SIGTERM)
            time.sleep(1)
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + 180
    while True:
        if server.poll() is not None:
            print(json.dumps({"error": f"mlflow server exited with {server.returncode}"}))
            sys.stdout.flush()
            return 1
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            print(json.dumps({"error": "mlflow server did not answer /health within 180 s"}))
            sys.stdout.flush()
            stop()
        time.sleep(0.5)
    print(json.dumps({"pid": server.pid}))
    sys.stdout.flush()
    while os.getppid() == parent and server.poll() is None:
        time.sleep(1)
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
