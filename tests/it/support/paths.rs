//! Where things are: the repository, the venv's executables, the `xray` binary, peer scripts.

use std::path::PathBuf;

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/NAME` under the repository root.
///
/// Panics (tests never skip) when it is missing, naming the setup command.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv").join("bin").join(name);
    if !path.exists() {
        panic!(
            "{} is missing: run `scripts/test.sh` once (it creates .venv from \
             tests/requirements.txt: moto[server], aws-xray-sdk, flask)",
            path.display()
        );
    }
    path
}

/// `.venv-distro/bin/NAME`: the AWS distro for OpenTelemetry's venv (it pins its own
/// OpenTelemetry versions). Panics when it is missing, naming the setup command.
pub fn distro_venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv-distro").join("bin").join(name);
    if !path.exists() {
        panic!(
            "{} is missing: run `scripts/test.sh` once (it creates .venv-distro from \
             tests/requirements-distro.txt: aws-opentelemetry-distro)",
            path.display()
        );
    }
    path
}

/// The daemon binary built by cargo for this test run.
pub fn xray_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xray"))
}

/// `tests/peers/NAME`; panics when it is missing.
pub fn peer_script(name: &str) -> PathBuf {
    let path = repo_root().join("tests").join("peers").join(name);
    assert!(path.exists(), "peer script {} is missing", path.display());
    path
}
