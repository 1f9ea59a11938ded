//! The trace viewer (`--viewer`) in a real headless browser: Debian's Chromium driven by
//! Selenium (`tests/peers/viewer_browser.py`, which asserts on the DOM and fails on any console
//! warning or error), against the real daemon with `--sink stdout` (no AWS account). The
//! Flask app with the Python X-Ray SDK is the client. Screenshots go to
//! `target/viewer-screenshots/` (gitignored), as test artifacts.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::flask::run_flask_peer;
use crate::support::free_addr;
use crate::support::http;
use crate::support::paths::{peer_script, repo_root, venv_bin};
use crate::support::wait;
use crate::support::{Daemon, new_segment_id, new_trace_id, segment_json};

/// How long one browser scenario may take (Chromium's start included) on a busy machine.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(120);

fn screenshots() -> PathBuf {
    let dir = repo_root().join("target").join("viewer-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Starts `viewer_browser.py SCENARIO` against `daemon` with `expect`.
fn browser(daemon: &Daemon, scenario: &str, expect: &Value) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(venv_bin("python"));
    command
        .arg(peer_script("viewer_browser.py"))
        .arg(scenario)
        .arg("--url")
        .arg(format!("http://{}", daemon.tcp_addr()))
        .arg("--screenshots")
        .arg(screenshots())
        .arg("--expect")
        .arg(expect.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the browser peer ({scenario}): {e}"))
}

/// Waits for the browser peer to end, and panics with its output unless it passed.
async fn passed(scenario: &str, child: tokio::process::Child, daemon: &Daemon) {
    let output = tokio::time::timeout(SCENARIO_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("the browser scenario {scenario} took over {SCENARIO_DEADLINE:?}")
        })
        .unwrap_or_else(|e| panic!("wait for the browser scenario {scenario}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "the browser scenario {scenario} failed ({}):\n{stdout}\n--- stderr:\n{stderr}\n--- daemon:\n{}",
        output.status,
        daemon.stdout()
    );
}

/// Runs one scenario to its end.
async fn scenario(daemon: &Daemon, name: &str, expect: Value) {
    let child = browser(daemon, name, &expect);
    passed(name, child, daemon).await;
}

/// A scenario that printed READY and waits for the test to act (send documents, say a trace
/// id on its stdin): the browser peer and what it printed so far.
struct Waiting {
    name: &'static str,
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

/// Starts a scenario and waits for its READY.
async fn until_ready(daemon: &Daemon, name: &'static str, expect: &Value) -> Waiting {
    let mut child = browser(daemon, name, expect);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(SCENARIO_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let is_ready = line.trim() == "READY";
            seen.push(line);
            if is_ready {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let output = child.wait_with_output().await.ok();
        panic!(
            "the browser scenario {name} never said READY: {seen:?}\n--- stderr:\n{}\n--- daemon:\n{}",
            output
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default(),
            daemon.stdout()
        );
    }
    Waiting {
        name,
        child,
        lines,
        seen,
    }
}

impl Waiting {
    /// Waits for the rest of the scenario, and panics with its output unless it passed.
    async fn passed(self, daemon: &Daemon) {
        let Waiting {
            name,
            mut child,
            mut lines,
            seen,
        } = self;
        drop(child.stdin.take());
        let rest = tokio::spawn(async move {
            let mut out = seen.join("\n");
            while let Ok(Some(line)) = lines.next_line().await {
                out.push('\n');
                out.push_str(&line);
            }
            out
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
                .await
                .ok();
            text
        });
        let status = tokio::time::timeout(SCENARIO_DEADLINE, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("the browser scenario {name} took over {SCENARIO_DEADLINE:?}")
            })
            .unwrap_or_else(|e| panic!("wait for the browser scenario {name}: {e}"));
        let out = rest.await.unwrap_or_default();
        let errors = errors.await.unwrap_or_default();
        assert!(
            status.success() && out.trim_end().ends_with("OK"),
            "the browser scenario {name} failed ({status}):\n{out}\n--- stderr:\n{errors}\n--- daemon:\n{}",
            daemon.stdout()
        );
    }
}

/// The local loop the issue asks for: `xray --viewer --sink stdout`, the Flask app's trace
/// showing up live (no reload) with its waterfall; a trace with X-Ray's colours, nesting across
/// documents, an open subsegment, an orphan and its exact raw bytes; a script in a segment's
/// name shown as text and never run; a refused datagram with its reason; a foreign `Host`
/// refused. Also: stdout lines end with the trace's link, and the store's counters are in
/// `/daemon/stats`.
#[tokio::test]
async fn the_viewer_shows_traces_live_with_their_waterfall_details_and_refusals() {
    let otlp = free_addr();
    let daemon = Daemon::builder()
        .args([
            "--viewer",
            "--sink",
            "stdout",
            "--otlp-http",
            &otlp.to_string(),
        ])
        .start()
        .await;

    // Live: the page is open and empty; the Flask app's request comes; its row appears.
    let mut live = until_ready(&daemon, "live", &json!({})).await;
    let flask = run_flask_peer(&daemon.udp_addr().to_string(), 1, 0).await;
    let request = &flask.requests[0];
    let mut stdin = live.child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{}\n", request.trace_id).as_bytes())
        .await
        .unwrap_or_else(|e| panic!("tell the browser the trace id: {e}"));
    drop(stdin);
    live.passed(&daemon).await;

    // Its waterfall: the segment, and its two streamed subsegments nested under it.
    scenario(
        &daemon,
        "trace",
        json!({
            "trace_id": request.trace_id,
            "rows": [
                {"id": request.segment_id, "depth": 0, "name": "flask-test", "bar": "bar-ok"},
                {"id": request.subsegment_ids[0], "depth": 1, "name": "db", "bar": "bar-ok"},
                {"id": request.subsegment_ids[1], "depth": 1, "name": "cache", "bar": "bar-ok"},
            ],
            "collapse": request.segment_id,
        }),
    )
    .await;

    // A trace with X-Ray's colours: a 500 (fault) root with a throttled (429) and an erring
    // (404) call nested in it, a subsegment streamed on its own under the throttled call, an
    // open subsegment, and an orphan whose parent never came.
    let trace = new_trace_id();
    let [root, payments, inventory, retry, slow, orphan] =
        std::array::from_fn::<String, 6, _>(|_| new_segment_id());
    let root_doc = format!(
        r#"{{"trace_id": "{trace}", "id": "{root}", "name": "checkout", "start_time": 1764662400.0, "end_time": 1764662400.8, "fault": true, "http": {{"request": {{"method": "POST", "url": "http://localhost/checkout"}}, "response": {{"status": 500}}}}, "annotations": {{"order_id": 42}}, "subsegments": [{{"id": "{payments}", "name": "payments", "namespace": "remote", "start_time": 1764662400.1, "end_time": 1764662400.4, "throttle": true, "http": {{"response": {{"status": 429}}}}}}, {{"id": "{inventory}", "name": "inventory", "start_time": 1764662400.4, "end_time": 1764662400.6, "error": true, "http": {{"response": {{"status": 404}}}}}}]}}"#
    );
    let streamed = format!(
        r#"{{"type": "subsegment", "trace_id": "{trace}", "id": "{retry}", "parent_id": "{payments}", "name": "retry", "start_time": 1764662400.2, "end_time": 1764662400.3}}"#
    );
    let open = format!(
        r#"{{"type": "subsegment", "trace_id": "{trace}", "id": "{slow}", "parent_id": "{root}", "name": "slow-call", "start_time": 1764662400.6, "in_progress": true}}"#
    );
    let lost = format!(
        r#"{{"type": "subsegment", "trace_id": "{trace}", "id": "{orphan}", "parent_id": "{}", "name": "lost-child", "start_time": 1764662400.1, "end_time": 1764662400.2}}"#,
        new_segment_id()
    );
    for doc in [&streamed, &open, &root_doc, &lost] {
        daemon.send_segment(doc);
    }
    scenario(
        &daemon,
        "trace",
        json!({
            "trace_id": trace,
            "rows": [
                {"id": root, "depth": 0, "name": "checkout", "bar": "bar-fault"},
                {"id": payments, "depth": 1, "name": "payments", "bar": "bar-throttle"},
                {"id": retry, "depth": 2, "name": "retry", "bar": "bar-ok"},
                {"id": inventory, "depth": 1, "name": "inventory", "bar": "bar-error"},
                {"id": slow, "depth": 1, "name": "slow-call", "bar": "bar-in-progress"},
                {"id": orphan, "depth": 0, "name": "lost-child"},
            ],
            "orphans": [orphan],
            "raw_of": root,
            "raw": root_doc,
            "collapse": root,
        }),
    )
    .await;

    // Untrusted text stays text.
    let xss_trace = new_trace_id();
    let name = "<img src=x onerror=alert(1)>";
    daemon.send_segment(&format!(
        r#"{{"trace_id": "{xss_trace}", "id": "{}", "name": "{name}", "start_time": 1764662400.0, "end_time": 1764662400.1, "annotations": {{"note": "<script>alert(2)</script>"}}}}"#,
        new_segment_id()
    ));
    scenario(&daemon, "xss", json!({"name": name, "trace_id": xss_trace})).await;

    // A refused datagram: why a segment never showed.
    daemon.send(b"hello-from-a-misconfigured-sdk");
    scenario(
        &daemon,
        "refused",
        json!({"reason": "missing_newline", "first_bytes": "hello-from-a-misconfigured-sdk"}),
    )
    .await;

    // An OpenTelemetry span, in the same list through its conversion; its raw text is the
    // span's OTLP JSON, labelled as such.
    let (otel_trace, otel_span) = ("6566a1b20123456789abcdef0123abcd", "53995c3f42cd8ad9");
    let span = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-svc"}}]}, "scopeSpans": [{"spans": [{"traceId": otel_trace, "spanId": otel_span, "name": "GET /otel", "kind": 2, "startTimeUnixNano": "1764662400100000000", "endTimeUnixNano": "1764662400200000000"}]}]}]});
    let answer = http::request(
        otlp,
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        span.to_string(),
    )
    .await
    .unwrap_or_else(|e| panic!("POST the span: {e}"));
    assert_eq!(answer.status, 200);
    let xray_trace = format!("1-{}-{}", &otel_trace[..8], &otel_trace[8..]);
    let path = format!("/daemon/viewer/api/traces/{xray_trace}");
    let mut kept = None;
    for _ in 0..100 {
        if let Ok(r) = daemon.get(&path).await
            && r.status == 200
        {
            kept = serde_json::from_slice::<Value>(&r.body).ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = kept.unwrap_or_else(|| panic!("the span's trace never reached the viewer"));
    let doc = &kept["documents"][0];
    assert_eq!(doc["format"], "otlp", "{kept:#}");
    let raw = doc["raw"].as_str().unwrap_or_default().to_owned();
    let raw_json: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    assert_eq!(
        raw_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"], otel_span,
        "{raw}"
    );
    scenario(
        &daemon,
        "trace",
        json!({
            "trace_id": xray_trace,
            "rows": [{"id": otel_span, "depth": 0, "name": "otel-svc", "bar": "bar-ok"}],
            "raw_of": otel_span,
            "raw": raw,
            "raw_label": "OTLP span (JSON)",
        }),
    )
    .await;

    // DNS rebinding: a page of another site resolving to 127.0.0.1 gets nothing.
    scenario(&daemon, "host", json!({})).await;

    // The laptop loop's other half: stdout lines link to the trace's page.
    let printed = daemon.stdout();
    let link = format!(
        "http://{}/daemon/viewer/#/trace/{}",
        daemon.tcp_addr(),
        request.trace_id
    );
    assert!(printed.contains(&link), "no {link} in:\n{printed}");
    let stats = daemon.stats().await;
    let store = stats
        .viewer
        .unwrap_or_else(|| panic!("no viewer in {stats:?}"));
    assert!(
        store.traces >= 4 && store.bytes > 0 && store.bytes <= store.budget_bytes,
        "{store:?}"
    );
    assert_eq!(store.budget_bytes, 16 << 20);
}

/// `--viewer-allow-remote`: any `Host` is let in, but only with the token printed in the
/// banner, given once in the URL and then kept in a cookie.
#[tokio::test]
async fn a_remote_viewer_needs_the_token_from_the_banner() {
    let daemon = Daemon::builder()
        .args(["--viewer", "--viewer-allow-remote", "--sink", "stdout"])
        .start()
        .await;
    // The daemon answers (and so is ready) a little before its banner is written out.
    let token = wait::until(Duration::from_secs(10), wait::POLL_INTERVAL, async || {
        let out = daemon.stdout();
        let rest = out.split("?token=").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    })
    .await
    .unwrap_or_else(|| panic!("no token in the banner:\n{}", daemon.stdout()));
    let addr = daemon.tcp_addr();
    let get = |path: String, cookie: Option<String>| async move {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: laptop.example:2000\r\n");
        if let Some(c) = cookie {
            request.push_str(&format!("Cookie: {c}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("send to {addr}: {e}"));
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
            .await
            .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
        answer
    };
    let refused = get("/daemon/viewer/api/traces".into(), None).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("token"), "says what is missing: {refused}");
    let wrong = get("/daemon/viewer/?token=nope".into(), None).await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    let given = get(format!("/daemon/viewer/?token={token}"), None).await;
    assert!(given.starts_with("HTTP/1.1 303"), "{given}");
    let cookie = given
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie set: {given}"))
        .to_owned();
    assert!(given.to_ascii_lowercase().contains("httponly"), "{given}");
    let page = get("/daemon/viewer/api/traces".into(), Some(cookie)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // Sampling calls and stats are not the viewer's: no token needed.
    let stats = get("/daemon/stats".into(), None).await;
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");
}

/// Restart without a database: with `--sink file:PATH` on too, the viewer starts with the
/// traces that file holds (written by an earlier run), and shows new ones as they come.
#[tokio::test]
async fn the_viewer_starts_with_the_traces_the_file_sink_wrote_before() {
    let earlier = new_trace_id();
    let line = format!(
        r#"{{"trace_id": "{earlier}", "id": "{}", "name": "before-restart", "start_time": 1764662400.0, "end_time": 1764662400.5}}"#,
        new_segment_id()
    );
    let builder = Daemon::builder();
    let path = builder.write_file("segments.jsonl", &format!("{line}\n"));
    let sink = format!("file:{}", path.display());
    let daemon = builder.args(["--viewer", "--sink", &sink]).start().await;
    let now = new_trace_id();
    daemon.send_segment(&segment_json(&now, &new_segment_id(), "after-restart"));
    let mut names = Vec::new();
    for _ in 0..100 {
        let listed = daemon
            .get("/daemon/viewer/api/traces")
            .await
            .ok()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .unwrap_or(Value::Null);
        names = listed["traces"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if names.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    names.sort();
    assert_eq!(
        names,
        ["after-restart", "before-restart"],
        "{}",
        daemon.stdout()
    );
    let kept = daemon
        .get(&format!("/daemon/viewer/api/traces/{earlier}"))
        .await
        .ok()
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .unwrap_or(Value::Null);
    assert_eq!(kept["documents"][0]["raw"], line.as_str(), "byte for byte");
}

/// The trace page's tools: the critical path marked (of two parallel calls, only the one that
/// ends later, and its own critical children), the errors counted and stepped through with the
/// buttons and e/E (scrolling to one below the fold, opening a collapsed parent), the
/// waterfall's keys (j/k, h/l, digits), the server's instrumentation hints beside their rows
/// and in the header, the download of the documents as sent; then the list's keys (`?`, `/`,
/// j/k, Enter, and none while typing in the filter box).
#[tokio::test]
async fn the_trace_page_marks_the_critical_path_steps_through_errors_and_answers_keys() {
    let daemon = Daemon::builder()
        .args(["--viewer", "--sink", "stdout"])
        .start()
        .await;
    let trace = new_trace_id();
    let id = |_| new_segment_id();
    let [
        api,
        auth,
        fanout,
        cache,
        cache_get,
        cache_set,
        db,
        render,
        render_tpl,
        late_log,
    ] = std::array::from_fn::<String, 10, _>(id);
    let t = 1764662400.0_f64;
    let node = |id: &str, name: &str, start: f64, end: f64| json!({"id": id, "name": name, "start_time": t + start, "end_time": t + end});
    // Enough quick steps under `auth` to push the later errors below the fold.
    let steps: Vec<Value> = (0..40)
        .map(|i| {
            let i = f64::from(i);
            node(&new_segment_id(), "step", 0.002 * i, 0.002 * (i + 1.0))
        })
        .collect();
    let mut auth_node = node(&auth, "auth", 0.0, 0.1);
    auth_node["throttle"] = json!(true);
    auth_node["subsegments"] = json!(steps);
    // Under `fanout`, `cache` and `db` run side by side; `cache` ends later: only it is
    // critical. Its two calls run one after the other: both are.
    let mut cache_node = node(&cache, "cache", 0.15, 0.85);
    cache_node["annotations"] = json!({"user-id": "u1"}); // X-Ray drops a key with `-`
    cache_node["subsegments"] = json!([
        node(&cache_get, "cache-get", 0.2, 0.3),
        node(&cache_set, "cache-set", 0.4, 0.8)
    ]);
    let mut fanout_node = node(&fanout, "fanout", 0.1, 0.9);
    fanout_node["subsegments"] = json!([cache_node]);
    let mut root = node(&api, "api", 0.0, 1.0);
    root["trace_id"] = json!(trace);
    root["subsegments"] = json!([auth_node, fanout_node]);
    // Over 50 annotations in the trace: a hint for the whole trace.
    root["annotations"] = (0..51)
        .map(|i| (format!("a{i}"), json!(i)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let streamed = |mut value: Value, parent: &str| {
        value["type"] = json!("subsegment");
        value["trace_id"] = json!(trace);
        value["parent_id"] = json!(parent);
        value
    };
    let mut db_node = streamed(node(&db, "db", 0.16, 0.5), &fanout);
    db_node["error"] = json!(true);
    db_node["http"] = json!({"response": {"status": 404}});
    // `late-log` ends after its parent (a hint); clamped to the parent's end it still ends
    // after `render-tpl`, which is then not critical.
    let mut render_node = streamed(node(&render, "render", 0.9, 0.98), &api);
    render_node["fault"] = json!(true);
    render_node["subsegments"] = json!([
        node(&render_tpl, "render-tpl", 0.9, 0.97),
        node(&late_log, "late-log", 0.95, 1.2)
    ]);
    let documents: Vec<String> = [root, db_node, render_node]
        .iter()
        .map(Value::to_string)
        .collect();
    for doc in &documents {
        daemon.send_segment(doc);
    }
    let row = |id: &str, depth: u32, name: &str| json!({"id": id, "depth": depth, "name": name});
    // Where the clamp decides: under a parent ending at 0.98, `early` (0.4-1.0) and `late`
    // (0.5-1.2) both end at 0.98 once clamped, and the tie goes to the one drawn first,
    // `early`; unclamped, `late` would end last and be taken instead.
    let clamp_trace = new_trace_id();
    let [parent, early, late] = std::array::from_fn::<String, 3, _>(id);
    let mut parent_node = node(&parent, "parent", 0.0, 0.98);
    parent_node["trace_id"] = json!(clamp_trace);
    parent_node["subsegments"] = json!([
        node(&late, "late", 0.5, 1.2),
        node(&early, "early", 0.4, 1.0)
    ]);
    daemon.send_segment(&parent_node.to_string());
    scenario(
        &daemon,
        "waterfall",
        json!({
            "trace_id": trace,
            "rows": [
                row(&api, 0, "api"),
                row(&auth, 1, "auth"),
                row(&fanout, 1, "fanout"),
                row(&cache, 2, "cache"),
                row(&cache_get, 3, "cache-get"),
                row(&cache_set, 3, "cache-set"),
                row(&db, 2, "db"),
                row(&render, 1, "render"),
                row(&render_tpl, 2, "render-tpl"),
                row(&late_log, 2, "late-log"),
            ],
            "critical": [api, auth, fanout, cache, cache_get, cache_set, render, late_log],
            "not_critical": [db, render_tpl],
            "errors": [auth, db, render],
            "hints": [
                {"id": cache, "rule": "annotation_key"},
                {"id": late_log, "rule": "outside_parent"},
            ],
            "trace_hints": ["too_many_annotations"],
            "download": documents,
            "more_critical": [{
                "trace_id": clamp_trace,
                "rows": [row(&parent, 0, "parent"), row(&early, 1, "early"), row(&late, 1, "late")],
                "critical": [parent, early],
                "not_critical": [late],
            }],
        }),
    )
    .await;

    // The list's keys need a second row.
    daemon.send_segment(&segment_json(&new_trace_id(), &new_segment_id(), "second"));
    scenario(&daemon, "keys", json!({})).await;
}

/// The list's tools: a filter typed in (text, errors only, a minimum duration, an
/// annotation), kept in the URL across a reload, and applied by the server to live traces too;
/// live updates paused (counted, not shown) and resumed; JSON Lines files loaded by a drop and
/// through the file input, and one larger than the store (1 MiB here) refused by the page
/// itself; Clear all, asked twice.
#[tokio::test]
async fn the_list_filters_pauses_loads_files_and_clears() {
    let daemon = Daemon::builder()
        .args(["--viewer", "--sink", "stdout", "--viewer-memory", "1"])
        .start()
        .await;
    let t = 1764662400.0_f64;
    // A trace: its root's name, how long it took, whether it failed, its user annotation.
    let send = |name: &str, seconds: f64, error: bool, user: &str| {
        let trace = new_trace_id();
        daemon.send_segment(
            &json!({
                "trace_id": trace, "id": new_segment_id(), "name": name,
                "start_time": t, "end_time": t + seconds, "error": error,
                "annotations": {"user": user},
            })
            .to_string(),
        );
        trace
    };
    let wanted = send("checkout", 0.8, true, "alice");
    let not_bob = send("checkout", 0.8, true, "bob");
    let not_fine = send("checkout", 0.8, false, "alice");
    let not_quick = send("checkout", 0.05, true, "alice");
    let not_health = send("health", 0.8, true, "alice");
    let expect = json!({
        "all": [wanted, not_bob, not_fine, not_quick, not_health],
        "q": "checkout",
        "min_ms": "100",
        "annotation": "user=alice",
        "hash": "#/?q=checkout&errors=1&min_ms=100&annotation=user%3Dalice",
        "matching": [wanted],
        "late_other": new_trace_id(),
        "late_match": new_trace_id(),
    });
    let filter = until_ready(&daemon, "filter", &expect).await;
    // The one that does not match first: had the page added it blindly, it would be listed
    // by the time the matching one is.
    for (key, name, error) in [
        ("late_other", "checkout", false),
        ("late_match", "checkout-v2", true),
    ] {
        daemon.send_segment(
            &json!({
                "trace_id": expect[key], "id": new_segment_id(), "name": name,
                "start_time": t, "end_time": t + 0.5, "error": error,
                "annotations": {"user": "alice"},
            })
            .to_string(),
        );
    }
    filter.passed(&daemon).await;

    let held = new_trace_id();
    let pause = until_ready(
        &daemon,
        "pause",
        &json!({"before": wanted, "trace_id": held}),
    )
    .await;
    daemon.send_segment(&segment_json(&held, &new_segment_id(), "while-paused"));
    pause.passed(&daemon).await;

    // Files as the download gives them: X-Ray documents one per line. A line that is not a
    // document is skipped, and counted.
    let file = |name: &str, root_name: &str, junk: bool| {
        let trace = new_trace_id();
        let (root, call) = (new_segment_id(), new_segment_id());
        let mut text = format!(
            "{}\n{}\n",
            json!({"trace_id": trace, "id": root, "name": root_name, "start_time": t, "end_time": t + 0.3}),
            json!({"type": "subsegment", "trace_id": trace, "id": call, "parent_id": root, "name": "imported-call", "start_time": t + 0.1, "end_time": t + 0.2}),
        );
        if junk {
            text.push_str("this line is not a document\n");
        }
        let path = daemon.dir().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        json!({
            "path": path, "trace_id": trace, "kept": 2, "skipped": u32::from(junk),
            "rows": [
                {"id": root, "depth": 0, "name": root_name},
                {"id": call, "depth": 1, "name": "imported-call"},
            ],
        })
    };
    // Larger than the store: documents enough to pass 1 MiB.
    let line = json!({"trace_id": new_trace_id(), "id": new_segment_id(), "name": "too-large", "start_time": t, "end_time": t + 0.1}).to_string() + "\n";
    let too_large = daemon.dir().join("too-large.jsonl");
    std::fs::write(&too_large, line.repeat((1 << 20) / line.len() + 1))
        .unwrap_or_else(|e| panic!("write {}: {e}", too_large.display()));
    scenario(
        &daemon,
        "load",
        json!({
            "drop": file("dropped.jsonl", "dropped", true),
            "pick": file("picked.jsonl", "picked", false),
            "too_large": {"path": too_large, "budget_mib": 1},
        }),
    )
    .await;

    scenario(&daemon, "clear", json!({})).await;
}
