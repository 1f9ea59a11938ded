//! [`mlflow`]: the MLflow tracking server, a real OTLP/HTTP backend from PyPI (`mlflow`, in
//! `.venv-mlflow`), started once per test run (it takes about 30 s to answer) and shared by the
//! tests that send to it; `tests/peers/mlflow_server.py` stops it when the test run ends. Its
//! traces are read back with MLflow's own client (`tests/peers/mlflow_traces.py`).

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::flask::run_peer;
use super::paths::{peer_script, repo_root};
use super::ports::free_port;

/// A running MLflow tracking server.
#[derive(Debug)]
pub struct Mlflow {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The wrapper (it outlives nothing: it stops the server when the test run ends).
    _wrapper: Mutex<Child>,
    _dir: tempfile::TempDir,
}

/// `.venv-mlflow/bin/NAME`; panics when it is missing, naming the setup command.
pub fn mlflow_venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv-mlflow").join("bin").join(name);
    if !path.exists() {
        panic!(
            "{} is missing: run `scripts/test.sh` once (it creates .venv-mlflow from \
             tests/requirements-mlflow.txt: the MLflow tracking server)",
            path.display()
        );
    }
    path
}

/// The test run's MLflow server, started on first use. Panics with its log if it does not
/// come up.
pub fn mlflow() -> &'static Mlflow {
    static SERVER: OnceLock<Mlflow> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("mlflow-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temp dir for MLflow: {e}"));
        let port = free_port();
        let mut wrapper = Command::new(mlflow_venv_bin("python"))
            .arg(peer_script("mlflow_server.py"))
            .arg(dir.path())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start mlflow_server.py: {e}"));
        let stdout = wrapper.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let report: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        if report.get("pid").is_none() {
            let log = std::fs::read_to_string(dir.path().join("mlflow.log")).unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("the MLflow server did not start ({line}): {tail}");
        }
        Mlflow {
            url: format!("http://127.0.0.1:{port}"),
            _wrapper: Mutex::new(wrapper),
            _dir: dir,
        }
    })
}

impl Mlflow {
    /// Every trace MLflow holds, read with its own client: `{"traces": [{"trace_id", "spans"}]}`.
    pub async fn traces(&self) -> Value {
        let mut command = tokio::process::Command::new(mlflow_venv_bin("python"));
        command
            .arg(peer_script("mlflow_traces.py"))
            .arg(&self.url)
            .env("MLFLOW_DISABLE_TELEMETRY", "true");
        let line = run_peer("the MLflow reader", command).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The spans of the trace whose id is `hex` (32 hex digits), once MLflow holds `count` of
    /// them; panics after `within`.
    pub async fn wait_for_spans(
        &self,
        hex: &str,
        count: usize,
        within: std::time::Duration,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let all = self.traces().await;
            let spans: Vec<Value> = all["traces"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["trace_id"].as_str().is_some_and(|id| id.ends_with(hex)))
                .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
                .collect();
            if spans.len() >= count {
                return spans;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "MLflow holds {} span(s) of trace {hex}, not {count}: {all:#}",
                    spans.len()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}
