//! The UDP stage: datagrams in, segments into the [`Buffer`]; never waits on anything
//! downstream.
//!
//! In: the bound UDP socket (bound by [`crate::app`]). Out: each accepted [`Segment`] pushed to
//! the buffer; each refused datagram counted by reason in [`Stats`] (with a rate-limited
//! warning naming the sender).
//!
//! Each wake-up drains the socket: up to [`BURST`] datagrams are read, parsed and pushed to the
//! buffer under one lock. A datagram is read into one reusable scratch buffer sized to the
//! document cap plus [`MAX_HEADER_BYTES`]; a datagram longer than that is cut by the kernel,
//! which reports it (`MSG_TRUNC`), and is counted as truncated. The only allocation per
//! datagram is the accepted document itself.
//!
//! On Linux the socket also reports the kernel's own count of datagrams it dropped because the
//! receive queue was full (`SO_RXQ_OVFL`); it is published in the stats.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::buffer::Buffer;
use crate::segment::{self, Segment};
use crate::stats::{DropReason, Stats};

/// Room allowed for the header line on top of the document cap.
pub const MAX_HEADER_BYTES: usize = 1024;

/// Datagrams read per wake-up before they are handed to the buffer together.
pub const BURST: usize = 64;

/// What the receiver needs besides its socket.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// Cap on a document's size in bytes.
    pub max_document: usize,
}

/// Reads datagrams until `shutdown` is cancelled.
pub async fn run(
    socket: UdpSocket,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    settings: ReceiverSettings,
    shutdown: CancellationToken,
) {
    let mut scratch = vec![0u8; settings.max_document + MAX_HEADER_BYTES];
    let mut accepted: Vec<Segment> = Vec::with_capacity(BURST);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::error!("UDP socket failed: {e}; no more segments can be received");
                    break;
                }
            }
        }
        // One accounting transaction per burst: a datagram counted as received is also counted
        // as pushed or refused before a stats snapshot can see it.
        let books = stats.books();
        for _ in 0..BURST {
            let read = socket.try_io(tokio::io::Interest::READABLE, || {
                recv::recv(&socket, &mut scratch)
            });
            let datagram = match read {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("Reading from the UDP socket failed: {e}");
                    break;
                }
            };
            if let Some(dropped) = datagram.kernel_dropped {
                stats.set_kernel_dropped(dropped);
            }
            if datagram.len == 0 {
                continue;
            }
            stats.datagram_received(datagram.len);
            if datagram.truncated {
                stats.datagram_refused(
                    DropReason::Truncated,
                    datagram.from,
                    &format_args!(
                        "datagram of {} bytes is longer than the {}-byte receive buffer (document cap plus header)",
                        datagram.len,
                        scratch.len()
                    ),
                );
                continue;
            }
            match segment::parse(&scratch[..datagram.len], settings.max_document) {
                Ok(seg) => {
                    tracing::trace!(
                        "Segment {} of trace {} from {}",
                        seg.id.as_deref().unwrap_or("-"),
                        seg.trace_id.as_deref().unwrap_or("-"),
                        datagram.from
                    );
                    accepted.push(seg);
                }
                Err(why) => stats.datagram_refused(why.reason(), datagram.from, &why),
            }
        }
        if !accepted.is_empty() {
            buffer.push_all(accepted.drain(..));
        }
        drop(books);
    }
}

/// One datagram as read.
#[derive(Debug)]
struct Datagram {
    /// Bytes in the scratch buffer (the full length when truncated, where the OS says it).
    len: usize,
    /// The sender.
    from: SocketAddr,
    /// The datagram did not fit the scratch buffer.
    truncated: bool,
    /// The kernel's cumulative count of datagrams dropped on this socket, when reported.
    kernel_dropped: Option<u32>,
}

#[cfg(target_os = "linux")]
mod recv {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use tokio::net::UdpSocket;

    use super::Datagram;

    pub(super) fn recv(socket: &UdpSocket, scratch: &mut [u8]) -> std::io::Result<Datagram> {
        let mut cmsg = nix::cmsg_space!(u32);
        let mut iov = [IoSliceMut::new(scratch)];
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
        )
        .map_err(std::io::Error::from)?;
        let mut kernel_dropped = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::RxqOvfl(n) = c {
                    kernel_dropped = Some(n);
                }
            }
        }
        let from = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| std::net::SocketAddr::V4((*v4).into()))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|v6| std::net::SocketAddr::V6((*v6).into()))
                    })
            })
            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(Datagram {
            len: msg.bytes,
            from,
            truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
            kernel_dropped,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod recv {
    use tokio::net::UdpSocket;

    use super::Datagram;

    pub(super) fn recv(socket: &UdpSocket, scratch: &mut [u8]) -> std::io::Result<Datagram> {
        // Without MSG_TRUNC a datagram filling the whole buffer may have been cut.
        let (len, from) = socket.try_recv_from(scratch)?;
        Ok(Datagram {
            len,
            from,
            truncated: len == scratch.len(),
            kernel_dropped: None,
        })
    }
}
