//! Reading `/daemon/stats`: the body parsed into the daemon's own typed [`Snapshot`], and
//! [`assert_balanced`], the one check of its accounting identities every test shares.
//!
//! Tests read counters as fields (`stats.sent`, `stats.inputs["udp"].refused`,
//! `stats.sinks["xray"].rejected`) and drops through [`Snapshot::dropped`] with a
//! [`DropReason`], so a renamed or missing counter fails to compile or to parse instead of
//! reading as zero.

pub use xray_daemon::outcome::{DropReason, ErrorKind};
pub use xray_daemon::stats::{InputSnapshot, SinkSnapshot, Snapshot};

/// Parses a `/daemon/stats` body. A body that is not a [`Snapshot`] fails the test, naming the
/// parse error and the body.
#[track_caller]
pub fn parse(body: &str) -> Snapshot {
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("/daemon/stats is not a stats Snapshot ({e}): {body}"))
}

/// Fails the test, showing the snapshot, unless every identity it promises holds: over all
/// (`received = sent + rejected + dropped + buffered + in_flight`), per input and per sink
/// ([`Snapshot::broken_identities`]).
#[track_caller]
pub fn assert_balanced(stats: &Snapshot) {
    let broken = stats.broken_identities();
    assert!(
        broken.is_empty(),
        "the stats do not balance: {broken:?}\n{stats:#?}"
    );
}

/// Failed calls of `kind` (0 when the kind is not listed).
pub fn backend_errors(stats: &Snapshot, kind: ErrorKind) -> u64 {
    stats
        .backend_errors
        .get(kind.as_str())
        .copied()
        .unwrap_or(0)
}
