//! Free ports on 127.0.0.1.
//!
//! The daemon listens on the same port number for UDP and TCP (like the upstream daemon's
//! 2000), so a port is only handed out when both protocols can bind it. A process-wide set
//! makes sure two tests of this binary never get the same port. Another process can still take
//! the port between the check and the daemon's bind; [`crate::support::DaemonBuilder::start`]
//! retries with new ports when the daemon reports the address in use.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that is free for both UDP and TCP right now and was not handed out
/// before by this process.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else {
            continue;
        };
        let port = addr.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("found no port free for both UDP and TCP on 127.0.0.1 in 1000 tries");
}

/// `127.0.0.1:`[`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}
