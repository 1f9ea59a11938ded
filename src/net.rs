//! Binding the daemon's two sockets, with the options the stages rely on.
//!
//! UDP: an IPv6 wildcard (`[::]`, and `:PORT`) also receives IPv4; the kernel is asked for a
//! large receive buffer ([`UDP_RECEIVE_BUFFER`]) so bursts wait in the kernel rather than being
//! dropped, and the size granted is reported; on Linux the socket reports the kernel's own
//! drop count (`SO_RXQ_OVFL`). TCP: a plain listener with address reuse.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Receive buffer asked of the kernel for the UDP socket, in bytes.
pub const UDP_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// A bind that failed, with the flag that changes the address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {proto} {addr}: {source}{hint}. Choose another address with {flag}")]
pub struct BindError {
    /// "UDP" or "TCP".
    pub proto: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The flag that sets it.
    pub flag: &'static str,
    /// A hint for common causes.
    pub hint: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn bind_error(
    proto: &'static str,
    addr: SocketAddr,
    flag: &'static str,
    source: std::io::Error,
) -> BindError {
    let hint = match source.kind() {
        std::io::ErrorKind::AddrInUse => " (another X-Ray daemon, or another program, is using it)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        std::io::ErrorKind::AddrNotAvailable => " (no interface has this address)",
        _ => "",
    };
    BindError {
        proto,
        addr,
        flag,
        hint,
        source,
    }
}

fn socket_for(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A bound UDP socket and the receive buffer the kernel granted.
#[derive(Debug)]
pub struct BoundUdp {
    /// The socket (non-blocking; read by the receiver's own thread, not the runtime).
    pub socket: UdpSocket,
    /// The address actually bound (with the real port when 0 was asked).
    pub local: SocketAddr,
    /// The receive buffer in bytes, as the kernel reports it.
    pub receive_buffer: usize,
}

/// Binds the UDP socket.
pub fn bind_udp(addr: SocketAddr) -> Result<BoundUdp, BindError> {
    let err = |e| bind_error("UDP", addr, "-b/--bind", e);
    let socket = socket_for(addr, Type::DGRAM, Protocol::UDP).map_err(err)?;
    grow_receive_buffer(&socket);
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RxqOvfl, &1) {
        tracing::debug!("SO_RXQ_OVFL unavailable ({e}): kernel drops will not be counted");
    }
    socket.bind(&addr.into()).map_err(err)?;
    let receive_buffer = socket.recv_buffer_size().unwrap_or(0);
    let socket: UdpSocket = socket.into();
    let local = socket.local_addr().map_err(err)?;
    Ok(BoundUdp {
        socket,
        local,
        receive_buffer,
    })
}

/// Asks for [`UDP_RECEIVE_BUFFER`], beyond the system's cap where privileged.
fn grow_receive_buffer(socket: &Socket) {
    #[cfg(target_os = "linux")]
    if nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &UDP_RECEIVE_BUFFER,
    )
    .is_ok()
    {
        return;
    }
    // Without privileges the kernel caps this at net.core.rmem_max; the banner shows the result.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
}

/// Binds a TCP listener; `flag` names the option that sets `addr` (for the error). Must run
/// inside the runtime.
pub fn bind_tcp(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, BindError> {
    let err = |e| bind_error("TCP", addr, flag, e);
    let socket = socket_for(addr, Type::STREAM, Protocol::TCP).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    let std_listener: std::net::TcpListener = socket.into();
    TcpListener::from_std(std_listener).map_err(err)
}
