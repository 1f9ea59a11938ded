#!/usr/bin/env bash
# The benchmark in one command: builds the daemon and the benchmark tools in release mode, then
# runs `xray-bench`, which measures the loopback ceiling, steps the daemon's load up until loss
# appears, measures low rates, idle and start-up, and writes bench/results.md and
# bench/results.json. See bench/README.md.
#
#   scripts/bench.sh                 # the full run (about 2-3 minutes)
#   scripts/bench.sh --smoke         # a few seconds, to check that it works
#   scripts/bench.sh --rates 50000,100000,150000 --step-seconds 10
#   scripts/bench.sh --static        # the binary that ships instead (see below)
#
# --static (first argument only) measures the build scripts/release.sh ships for x86_64: the
# same `cargo build --release`, but with glibc linked in (RUSTFLAGS="-C
# target-feature=+crt-static", --target x86_64-unknown-linux-gnu, so
# target/x86_64-unknown-linux-gnu/release/xray); without it, the dynamically linked
# target/release/xray. Extra arguments go to xray-bench (`scripts/bench.sh --help` lists them;
# a later --xray wins). Linux only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

xray=target/release/xray
tools=(-p xray-daemon-rs -p xray-bench-tools)
if [[ "${1:-}" == --static ]]; then
    shift
    echo "==> RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked --target x86_64-unknown-linux-gnu --bin xray" >&2
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu --bin xray
    xray=target/x86_64-unknown-linux-gnu/release/xray
    tools=(-p xray-bench-tools)
fi
echo "==> cargo build --release ${tools[*]} --bins" >&2
cargo build --release "${tools[@]}" --bins
exec target/release/xray-bench --xray "$xray" --out bench "$@"
