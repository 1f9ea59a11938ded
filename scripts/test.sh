#!/usr/bin/env bash
# Builds the project and runs every test, installing what the tests need first:
#   - .venv (python3 -m venv) with tests/requirements.txt: moto_server, the Python X-Ray SDK, Flask.
#     Reinstalled when tests/requirements.txt changes (a copy of it is kept in .venv as a stamp).
#   - .venv-distro with tests/requirements-distro.txt: the AWS distro for OpenTelemetry (Python).
#   - .venv-mlflow with tests/requirements-mlflow.txt: the MLflow tracking server (an OTLP backend).
#   - tests/peers/node/node_modules (npm ci): the OpenTelemetry JS OTLP/HTTP exporter.
#   - netcat-openbsd (nc), for manual smoke checks, when running as root and nc is missing.
#   - chromium and chromium-driver, for the trace viewer's browser tests, likewise.
#   - cargo-fuzz (cargo install), when missing.
#   - the packaging tools (scripts/packaging-setup.sh), when running as root.
# Then: the house rules (cargo fmt --check, cargo clippy -D warnings, clippy.toml); cargo build of
# the workspace; a short fuzz run of each target in fuzz/ (FUZZ_SECONDS each, default 20; see
# fuzz/README.md for a longer run); the unit and in-process tests (what plain `cargo test`
# runs), the benchmark's smoke test, the tests against real peers (`--test it`) and the
# packaging tests (`--test packaging`).
# Works from any directory. Extra arguments go to the test binaries (after `--`),
# e.g. `scripts/test.sh smoke` runs only tests whose name contains "smoke" (and no fuzzing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A venv from a pinned requirements file, made again when the file changes (a copy of it is kept
# in the venv as a stamp).
setup_venv() {
    local venv="$1" requirements="$2"
    local stamp="$venv/.requirements.installed"
    if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$stamp"; then
        echo "==> setting up $venv from $requirements"
        rm -f "$stamp"
        if [[ ! -x "$venv/bin/python" ]]; then
            python3 -m venv "$venv"
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
}
setup_venv .venv tests/requirements.txt
# The AWS distro for OpenTelemetry pins its own OpenTelemetry versions: a venv of its own.
setup_venv .venv-distro tests/requirements-distro.txt
# The MLflow tracking server (a real OTLP/HTTP backend for --sink otlp) pins many packages of
# its own: a venv of its own too (about 850 MB, 2 minutes the first time).
setup_venv .venv-mlflow tests/requirements-mlflow.txt

# The OpenTelemetry JS client (tests/peers/node): npm ci from its lock file, again when it changes.
node_peer="tests/peers/node"
if [[ ! -d "$node_peer/node_modules" ]] || ! cmp -s "$node_peer/package-lock.json" "$node_peer/node_modules/.lock.installed"; then
    echo "==> npm ci in $node_peer"
    npm ci --prefix "$node_peer" --no-audit --no-fund --loglevel=error
    cp "$node_peer/package-lock.json" "$node_peer/node_modules/.lock.installed"
fi

# A Debian package for a command some tests run, when running as root and it is missing.
install_tool() {
    local command="$1" package="$2"
    if [[ "$(id -u)" == 0 ]] && ! command -v "$command" >/dev/null 2>&1; then
        echo "==> installing $package"
        if ! { apt-get update -qq && apt-get install -y -qq "$package" >/dev/null; }; then
            echo "warning: could not install $package; continuing without $command" >&2
        fi
    fi
}
install_tool nc netcat-openbsd
# The README's OTLP example is run as written.
install_tool curl curl
# The trace viewer's tests drive a real headless browser: Debian's Chromium and its driver
# (tests/peers/viewer_browser.py; ~75 s and ~0.5 GB the first time).
install_tool chromium chromium
install_tool chromedriver chromium-driver

# The packaging tests (tests/packaging/main.rs) need docker.io, rpm, qemu-user-static, buildah,
# skopeo, the arm64 linker and Rust target, cargo-generate-rpm, cargo-deb and cargo-about;
# installed once, skipped when present.
if [[ "$(id -u)" == 0 ]]; then
    echo "==> packaging tools (scripts/packaging-setup.sh)"
    scripts/packaging-setup.sh
fi

echo "==> cargo fmt --all --check"
cargo fmt --all --check
echo "==> cargo clippy --workspace --all-targets -- -D warnings (and the test = false targets)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --test it --test packaging -- -D warnings

echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

# A filtered run is for iterating on some tests; the fuzz run belongs to the full one. It runs
# before the tests so that the test runner's summary closes the output.
if [[ $# -eq 0 ]]; then
    fuzz_seconds="${FUZZ_SECONDS:-20}"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "==> installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    for target in segment_parse buffer_accounting admin_route otlp_decode xray_to_otlp; do
        echo "==> cargo +nightly fuzz run $target (${fuzz_seconds} s)"
        scratch="$(mktemp -d)"
        cargo +nightly fuzz run "$target" "$scratch" "fuzz/seeds/$target" -- \
            -max_total_time="$fuzz_seconds" -print_final_stats=1
        rm -rf "$scratch"
    done
fi

# Each test starts its own moto_server and daemon on its own free ports, so tests run in
# parallel; two threads match the 2-core CI machines (moto and the daemon need CPU too).
threads="${TEST_THREADS:-2}"
echo "==> cargo test --workspace --lib --bins --tests (unit, in-process daemon, benchmark smoke)"
# Benches are built above but not run here: they print timings, not test results.
cargo test --workspace --lib --bins --tests -- --test-threads="$threads" "$@"
echo "==> cargo test --test it (real peers: moto, the Python X-Ray SDK)"
cargo test --test it -- --test-threads="$threads" "$@"
echo "==> cargo test --test packaging (release builds, image, rpm, deb)"
cargo test --test packaging -- --test-threads="$threads" "$@"
