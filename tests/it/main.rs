//! The tests against real peers (`cargo test --test it`; scripts/test.sh runs them, plain
//! `cargo test` does not, as they need the Python venv).
//!
//! Tests drive the real `xray` binary through real sockets against real peers: moto's server
//! plays the X-Ray API, the Python X-Ray SDK (under Flask) plays an instrumented application,
//! and a fault injector sits between the daemon and moto where a test needs to record or break
//! the upstream. Everything lives in [`support`]; its peers come from `.venv`, which
//! `scripts/test.sh` creates. Every test uses its own ports and its own moto, so tests run in
//! parallel; they wait on conditions with deadlines, never on fixed sleeps.

// A test that fails an `unwrap`/`expect` is a failed test with a message: the workspace-wide
// deny of these lints is for the daemon's code, not for its test harness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the test failing"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the harness reads its own environment to prepare the child processes it starts"
)]

mod support;

mod delivery;
mod harness;
mod stats_address;

mod aws_env;
mod compat;
mod connections;
mod distro_spans;
mod faults;
mod otlp;
mod otlp_grpc;
mod otlp_sink;
mod proxy;
mod relay;
mod signals;
mod viewer;
mod xray_otlp;
