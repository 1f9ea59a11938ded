//! [`UdpTap`]: a recording UDP relay between a client (the Python X-Ray SDK) and the daemon.
//!
//! The client is pointed at the tap's address; the tap keeps a copy of every datagram, exactly
//! as the client sent it, and forwards it unchanged to the daemon. A test can then compare what
//! reached the daemon's destination with what the client really emitted, byte for byte.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::wait;

/// A recording relay on `127.0.0.1:0`; stops when dropped.
#[derive(Debug)]
pub struct UdpTap {
    addr: SocketAddr,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    relay: JoinHandle<()>,
}

impl UdpTap {
    /// Starts relaying every datagram received to `forward_to`.
    pub async fn start(forward_to: SocketAddr) -> Self {
        let inbound = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the UDP tap");
        let outbound = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the UDP tap's sender");
        let addr = inbound.local_addr().expect("UDP tap address");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&captured);
        let relay = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = inbound.recv_from(&mut buf).await else {
                    continue;
                };
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(buf[..n].to_vec());
                outbound
                    .send_to(&buf[..n], forward_to)
                    .await
                    .expect("UDP tap forwards to the daemon");
            }
        });
        Self {
            addr,
            captured,
            relay,
        }
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every datagram received so far, in arrival order, byte for byte.
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `count` datagrams were received and returns them all; panics
    /// after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Vec<u8>> {
        let found = wait::until(within, wait::POLL_INTERVAL, async || {
            let seen = self.datagrams();
            (seen.len() >= count).then_some(seen)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "the UDP tap saw {} of {count} datagrams within {within:?}",
                self.datagrams().len()
            )
        })
    }
}

impl Drop for UdpTap {
    fn drop(&mut self) {
        self.relay.abort();
    }
}
