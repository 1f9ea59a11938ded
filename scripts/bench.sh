#!/usr/bin/env bash
# The benchmark in one command: builds the daemon and the benchmark tools in release mode, then
# runs `xray-bench`, which measures the loopback ceiling, steps the daemon's load up until loss
# appears, measures low rates, idle and start-up, and writes bench/results.md and
# bench/results.json. See bench/README.md.
#
#   scripts/bench.sh                 # the full run (about 2-3 minutes)
#   scripts/bench.sh --smoke         # a few seconds, to check that it works
#   scripts/bench.sh --rates 50000,100000,150000 --step-seconds 10
#
# Extra arguments go to xray-bench (`scripts/bench.sh --help` lists them). Linux only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> cargo build --release -p xray-daemon-rs -p xray-bench-tools --bins" >&2
cargo build --release -p xray-daemon-rs -p xray-bench-tools --bins
exec target/release/xray-bench --xray target/release/xray --out bench "$@"
