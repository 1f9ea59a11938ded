//! `--stats-address`: the counters and health on a TCP address of their own, which serves the
//! admin routes only and has no upstream at all: every other path gets 404, never a proxy
//! error.

use std::time::Duration;

use crate::support::{Daemon, free_addr, http, new_segment_id, new_trace_id, segment_json};

#[tokio::test]
async fn the_stats_address_serves_the_admin_routes_and_404s_the_rest() {
    let stats_addr = free_addr();
    let daemon = Daemon::builder()
        .args([
            "--sink",
            "stdout",
            "--stats-address",
            &stats_addr.to_string(),
        ])
        .start()
        .await;
    daemon.send_segment(&segment_json(
        &new_trace_id(),
        &new_segment_id(),
        "own-address",
    ));
    daemon
        .wait_for_stats(|s| s.sent == 1, Duration::from_secs(10))
        .await;

    let stats = http::get(stats_addr, "/daemon/stats").await.unwrap();
    assert_eq!(stats.status, 200);
    let stats = stats.json().unwrap();
    assert_eq!(
        (stats["received"].as_u64(), stats["sent"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    let metrics = http::get(stats_addr, "/daemon/metrics").await.unwrap();
    assert!(
        metrics.text().contains("xray_segments_sent_total 1"),
        "{}",
        metrics.text()
    );
    assert_eq!(
        http::get(stats_addr, "/daemon/health")
            .await
            .unwrap()
            .status,
        200
    );

    // A sampling call sent there is not a route of this address: 404 with the reason (not the
    // 502/503 of a proxy without an upstream), never forwarded.
    let sampling = http::post(stats_addr, "/GetSamplingRules", "{}")
        .await
        .unwrap();
    assert_eq!(sampling.status, 404, "{}", sampling.text());
    assert!(
        sampling.text().contains("--stats-address") && sampling.text().contains("-t address"),
        "{}",
        sampling.text()
    );
    let other = http::get(stats_addr, "/daemon/other").await.unwrap();
    assert_eq!(other.status, 404, "{}", other.text());
    let wrong_method = http::post(stats_addr, "/daemon/stats", "{}").await.unwrap();
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text());
    assert!(
        daemon
            .stdout()
            .contains(&format!("stats also on TCP {stats_addr}")),
        "{}",
        daemon.stdout()
    );
}

#[tokio::test]
async fn a_stats_address_in_use_exits_1_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let finished = Daemon::builder()
        .args(["--sink", "stdout", "--stats-address", &addr.to_string()])
        .run_to_exit(Duration::from_secs(20))
        .await;
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains(&addr.to_string()) && finished.stderr.contains("--stats-address"),
        "{}",
        finished.stderr
    );
}

/// `/daemon/metrics` on both addresses is the classic Prometheus text format (what the README
/// names, and what an older text-format parser reads) unless the scraper's `Accept` asks for
/// OpenMetrics; it was OpenMetrics 1.0 (`# EOF`) for every scraper, which such a parser reads
/// as counters of type `unknown`.
#[tokio::test]
async fn metrics_are_the_classic_text_format_unless_openmetrics_is_asked_for() {
    let stats_addr = free_addr();
    let daemon = Daemon::builder()
        .args([
            "--sink",
            "stdout",
            "--stats-address",
            &stats_addr.to_string(),
        ])
        .start()
        .await;
    for addr in [daemon.tcp_addr(), stats_addr] {
        for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = http::request(addr, "GET", "/daemon/metrics", &headers, "")
                .await
                .unwrap();
            let text = r.text();
            assert_eq!(
                r.header("content-type"),
                Some("text/plain; version=0.0.4; charset=utf-8"),
                "{accept:?}"
            );
            assert!(
                text.contains("# TYPE xray_segments_received_total counter\n")
                    && text.contains("\nxray_segments_received_total 0\n")
                    && !text.contains("# EOF"),
                "{accept:?}: {text}"
            );
        }
        // What Prometheus sends: it prefers OpenMetrics, and gets it.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                          text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let r = http::request(
            addr,
            "GET",
            "/daemon/metrics",
            &[("accept", prometheus)],
            "",
        )
        .await
        .unwrap();
        let text = r.text();
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
            "{:?}",
            r.headers
        );
        assert!(
            text.contains("# TYPE xray_segments_received counter\n")
                && text.contains("\nxray_segments_received_total 0\n")
                && text.ends_with("# EOF\n"),
            "{text}"
        );
    }
}
