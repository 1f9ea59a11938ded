//! [`TlsFront`]: HTTPS on loopback in front of a plain-HTTP server (a fault injector), with a
//! throwaway self-signed certificate made by `openssl` for this test only. A client that
//! verifies certificates must refuse it; one that does not (NoVerifySSL) gets through.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The front; it listens on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// Terminates TLS and relays each connection's bytes to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the certificate");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl (Debian package openssl) to make a test certificate");
        assert!(
            made.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let certs = vec![CertificateDer::from_pem_file(&cert).expect("read cert.pem")];
        let key = PrivateKeyDer::from_pem_file(&key).expect("read key.pem");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the TLS front");
        let addr = listener.local_addr().expect("TLS front address");
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            addr,
            accept,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
