//! The UDP stage: datagrams in, X-Ray documents into the [`Buffer`]; never waits on anything
//! downstream.
//!
//! In: the bound UDP socket (bound by [`crate::app`]). Out: each wake-up's datagrams as one
//! [`Intake`] booked by the buffer: accepted documents as items, refused datagrams counted by
//! reason (with a rate-limited warning naming the sender).
//!
//! The socket is read by one thread of its own (`xray-udp`), outside the async runtime: it
//! sleeps in `poll` until datagrams arrive, then drains the socket: up to [`CALLS_PER_WAKE`]
//! system calls of [`BURST`] datagrams each (`recvmmsg` on Linux), parsed and then pushed to the
//! buffer under one lock. The runtime's thread is left to batching and uploads, so neither
//! waits for the other and no task hops between threads (measured: this and one runtime thread
//! cut the CPU per segment by a sixth and kept the receive queue drained). Shutdown wakes the
//! thread by shutting the socket's reading side.
//!
//! At moderate rates most wake-ups would find one or a few datagrams, and a wake-up costs more
//! than the datagram. So after a wake-up that emptied the socket, the thread waits
//! [`COALESCE`] before looking again, letting datagrams gather in the kernel's queue, but only
//! when the kernel granted a receive buffer of at least [`COALESCE_MIN_BUFFER`] (a sender would
//! have to fill that within the pause to lose anything). A wake-up that did not empty the socket
//! goes straight on, and an idle socket is waited on with no timer at all (but see below).
//! (Measured: at 50k segments/s a 2 ms pause cut the CPU per segment by a fifth to a quarter;
//! X-Ray batches wait up to 1 s anyway.)
//!
//! Each datagram lands in its own slot of a scratch buffer allocated once, sized to the document
//! cap plus [`MAX_HEADER_BYTES`]; a datagram longer than that is cut by the kernel, which reports
//! it (`MSG_TRUNC`), and is counted as `too_large`, like any document over the cap. The only allocation per datagram is the
//! accepted document's (see [`crate::document`]).
//!
//! After the buffer has held a backlog (over [`RELEASE_ABOVE`]), the wait has a deadline of
//! [`RELEASE_CHECK`]: once the uploads have brought the buffer nearly to empty the thread gives
//! free memory back to the OS ([`crate::memory`]) and waits without a deadline again. So while
//! a backlog waits for an endpoint that is down, the thread wakes once a second.
//!
//! On Linux the socket also reports the kernel's own count of datagrams it dropped because the
//! receive queue was full (`SO_RXQ_OVFL`); it is published in the stats.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::buffer::{Buffer, Intake};
use crate::document;
use crate::item::{Input, Item};
use crate::outcome::DropReason;
use crate::stats::Stats;

/// Room allowed for the header line on top of the document cap.
pub const MAX_HEADER_BYTES: usize = 1024;

/// Datagrams read per system call (`recvmmsg` on Linux).
pub const BURST: usize = 32;

/// Most `recvmmsg` calls per wake-up (after one plain read that also brings the kernel's drop
/// count) before the accepted documents go to the buffer together: at most
/// `1 + BURST × CALLS_PER_WAKE` datagrams per buffer lock.
pub const CALLS_PER_WAKE: usize = 4;

/// The pause after a wake-up that emptied the socket (see the module docs).
pub const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// The smallest kernel receive buffer, in bytes, with which the receiver pauses.
pub const COALESCE_MIN_BUFFER: usize = 4 * 1024 * 1024;

/// Bytes held by the buffer above which the receiver, once the buffer is nearly empty again,
/// gives free memory back to the OS ([`crate::memory`]).
pub const RELEASE_ABOVE: u64 = 16 * 1024 * 1024;

/// Bytes held by the buffer below which a backlog counts as gone.
pub const RELEASE_BELOW: u64 = RELEASE_ABOVE / 16;

/// How often the receiver looks at the buffer while a backlog drains with no datagrams coming.
pub const RELEASE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What the receiver needs besides its socket.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// Cap on a document's size in bytes.
    pub max_document: usize,
    /// The receive buffer the kernel granted the socket, in bytes.
    pub receive_buffer: usize,
    /// The trace viewer's store, which shows the latest refused datagrams (`--viewer`).
    pub refusals: Option<Arc<crate::viewer::Store>>,
}

/// Reads datagrams on the receive thread until `shutdown` is cancelled (or the socket fails);
/// returns once that thread has stopped.
pub async fn run(
    socket: std::net::UdpSocket,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    settings: ReceiverSettings,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    // The thread stops on the daemon's shutdown, and also when this future is dropped
    // (a startup error, say): `stop` is cancelled and the socket shut by the guard.
    let stop = shutdown.child_token();
    let (done_tx, mut done) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("xray-udp".into()).spawn({
        let socket = Arc::clone(&socket);
        let stop = stop.clone();
        move || {
            receive(&socket, &buffer, &stats, &settings, &stop);
            let _ = done_tx.send(());
        }
    });
    if let Err(e) = thread {
        tracing::error!("cannot start the UDP receive thread: {e}; no segments can be received");
        return;
    }
    let guard = StopGuard { stop, socket };
    tokio::select! {
        () = shutdown.cancelled() => {
            drop(guard);
            let _ = done.await;
        }
        _ = &mut done => {}
    }
}

/// Stops the receive thread when dropped: cancels its token, then wakes it.
struct StopGuard {
    stop: CancellationToken,
    socket: Arc<std::net::UdpSocket>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        recv::interrupt(&self.socket);
    }
}

/// The receive thread's loop.
fn receive(
    socket: &std::net::UdpSocket,
    buffer: &Buffer,
    stats: &Stats,
    settings: &ReceiverSettings,
    shutdown: &CancellationToken,
) {
    let mut reader = recv::Reader::new(settings.max_document + MAX_HEADER_BYTES);
    let mut intake = Intake::new(Input::Udp, 1 + BURST * CALLS_PER_WAKE);
    let error_log = crate::ratelimit::RateLimit::default();
    let pause = (settings.receive_buffer >= COALESCE_MIN_BUFFER).then_some(COALESCE);
    // Whether the buffer held a backlog since memory was last given back: then the wait has a
    // deadline, to give it back once the uploads have drained it.
    let mut backlog = false;
    loop {
        let readable = match recv::wait(socket, backlog.then_some(RELEASE_CHECK)) {
            Ok(readable) => readable,
            Err(e) => {
                tracing::error!("UDP socket failed: {e}; no more segments can be received");
                break;
            }
        };
        if shutdown.is_cancelled() {
            break;
        }
        if backlog && buffer.held_bytes() < RELEASE_BELOW {
            crate::memory::release_to_os();
            backlog = false;
        }
        if !readable {
            continue;
        }
        // What one wake-up read is booked at once: a datagram counted as received is also
        // counted as pushed or refused before a stats snapshot can see it.
        let mut failed = false;
        let mut emptied = false;
        for call in 0..=CALLS_PER_WAKE {
            let each = |datagram, bytes: &[u8]| {
                handle(datagram, bytes, settings, stats, &mut intake);
            };
            // The first read of a wake-up also brings the kernel's drop count.
            let read = if call == 0 {
                reader.read_one(socket, each)
            } else {
                reader.read(socket, each)
            };
            match read {
                // A short burst means the queue is empty for now.
                Ok(n) if call > 0 && n < BURST => {
                    emptied = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    emptied = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if error_log
                        .allow(1, crate::ratelimit::WARN_INTERVAL)
                        .is_some()
                    {
                        tracing::warn!("Reading from the UDP socket failed: {e}");
                    }
                    failed = true;
                    break;
                }
            }
        }
        if !intake.is_empty() {
            buffer.admit(&mut intake);
            backlog |= buffer.held_bytes() > RELEASE_ABOVE;
        }
        if failed {
            // An error that persists must not turn this loop into a busy one.
            std::thread::sleep(std::time::Duration::from_millis(10));
        } else if let Some(pause) = pause.filter(|_| emptied) {
            std::thread::sleep(pause);
        }
    }
}

/// Accounts for one datagram and parses it into `intake`: accepted as an item, or refused with
/// its reason (and a rate-limited warning naming the sender).
fn handle(
    datagram: Datagram,
    bytes: &[u8],
    settings: &ReceiverSettings,
    stats: &Stats,
    intake: &mut Intake,
) {
    if let Some(dropped) = datagram.kernel_dropped {
        stats.set_kernel_dropped(dropped);
    }
    if datagram.len == 0 {
        // Ignored, as the original does: not an item, so not `received`.
        stats.empty_datagram();
        return;
    }
    intake.received(datagram.len);
    if datagram.truncated {
        // Longer than the receive buffer (the cap plus a header), so over the cap: one rule for
        // every document over the cap, however far over (`too_large`).
        intake.refused(DropReason::TooLarge);
        let why = format!(
            "datagram of {} bytes is over the {}-byte document limit (--max-segment-size)",
            datagram.len, settings.max_document
        );
        stats.warn_refused(DropReason::TooLarge, datagram.from, &why);
        if let Some(store) = &settings.refusals {
            store.refused(
                DropReason::TooLarge.as_str(),
                why,
                datagram.from.to_string(),
                bytes,
            );
        }
        return;
    }
    match document::parse(bytes, settings.max_document) {
        Ok(seg) => {
            if tracing::enabled!(tracing::Level::TRACE) {
                let ids = seg.ids();
                tracing::trace!(
                    "Segment {} of trace {} from {}",
                    ids.id.as_deref().unwrap_or("-"),
                    ids.trace_id.as_deref().unwrap_or("-"),
                    datagram.from
                );
            }
            intake.accepted(Item::XrayDocument(seg));
        }
        Err(why) => {
            intake.refused(why.reason());
            stats.warn_refused(why.reason(), datagram.from, &why);
            if let Some(store) = &settings.refusals {
                let sender = datagram.from.to_string();
                store.refused(why.reason().as_str(), why.to_string(), sender, bytes);
            }
        }
    }
}

/// One datagram as read.
#[derive(Debug)]
struct Datagram {
    /// Its length in bytes (the full length when truncated, where the OS says it).
    len: usize,
    /// The sender.
    from: SocketAddr,
    /// The datagram did not fit its receive slot.
    truncated: bool,
    /// The kernel's cumulative count of datagrams dropped on this socket, when reported.
    kernel_dropped: Option<u32>,
}

/// Linux: one `recvmsg` with its `SO_RXQ_OVFL` control message per wake-up (the kernel's drop
/// count is cumulative, so once per wake-up is enough), then [`BURST`] datagrams per `recvmmsg`
/// call, each into its own slot of one scratch buffer; `MSG_TRUNC` makes the kernel report a
/// cut datagram's real length.
///
/// Why the burst calls ask for no control messages: the kernel shrinks each header's control
/// length to what it used (zero when nothing was dropped yet), and `nix` does not restore it
/// between calls on reused headers, so the count would silently stop arriving. (The sender's
/// address length is shrunk the same way; that is harmless, since every sender on one socket has
/// the same address family: IPv4, or IPv6 with IPv4 mapped on a dual-stack socket.)
#[cfg(target_os = "linux")]
mod recv {
    use std::io::IoSliceMut;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::{AsFd, AsRawFd};

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, MultiHeaders, Shutdown, SockaddrStorage, recvmmsg, recvmsg,
        shutdown,
    };

    use super::{BURST, Datagram};

    /// Sleeps until the socket has something to read (or has been shut, or failed): `true`; or
    /// until `deadline` passed first: `false`.
    pub(super) fn wait(
        socket: &UdpSocket,
        deadline: Option<std::time::Duration>,
    ) -> std::io::Result<bool> {
        let timeout = deadline.map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Wakes the receive thread for good: shuts the socket's reading side, which Linux does
    /// even on an unconnected UDP socket (while answering `ENOTCONN`, which is expected).
    pub(super) fn interrupt(socket: &UdpSocket) {
        let _ = shutdown(socket.as_raw_fd(), Shutdown::Read);
    }

    /// Receive slots, allocated once, and the message headers `recvmmsg` fills. Slots are
    /// zeroed lazily by the OS, so only the bytes datagrams actually fill become resident
    /// memory. (The headers hold raw pointers: a reader stays on the thread that made it.)
    pub(super) struct Reader {
        slot: usize,
        slots: Vec<u8>,
        headers: MultiHeaders<SockaddrStorage>,
    }

    impl Reader {
        /// A reader whose slots hold `slot` bytes each.
        pub(super) fn new(slot: usize) -> Self {
            Reader {
                slot,
                slots: vec![0u8; slot * BURST],
                headers: MultiHeaders::preallocate(BURST, None),
            }
        }

        /// Reads up to [`BURST`] datagrams without waiting, calling `each` for every one;
        /// returns how many were read (`WouldBlock` when none).
        pub(super) fn read(
            &mut self,
            socket: &UdpSocket,
            mut each: impl FnMut(Datagram, &[u8]),
        ) -> std::io::Result<usize> {
            let mut chunks = self.slots.chunks_exact_mut(self.slot);
            let mut iovs: [[IoSliceMut<'_>; 1]; BURST] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            let results = recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
                None,
            )
            .map_err(std::io::Error::from)?;
            let mut n = 0;
            for msg in results {
                n += 1;
                let from = msg.address.as_ref().map_or(UNKNOWN, sockaddr);
                let bytes = msg.iovs().next().unwrap_or_default();
                each(
                    Datagram {
                        len: msg.bytes,
                        from,
                        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                        kernel_dropped: None,
                    },
                    bytes,
                );
            }
            Ok(n)
        }

        /// Reads one datagram without waiting, with the kernel's drop count, into the first
        /// slot; returns 1 (`WouldBlock` when none).
        pub(super) fn read_one(
            &mut self,
            socket: &UdpSocket,
            mut each: impl FnMut(Datagram, &[u8]),
        ) -> std::io::Result<usize> {
            let slot = &mut self.slots[..self.slot];
            let mut cmsg = nix::cmsg_space!(u32);
            let mut iov = [IoSliceMut::new(slot)];
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
                    if let ControlMessageOwned::RxqOvfl(d) = c {
                        kernel_dropped = Some(d);
                    }
                }
            }
            let datagram = Datagram {
                len: msg.bytes,
                from: msg.address.as_ref().map_or(UNKNOWN, sockaddr),
                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                kernel_dropped,
            };
            let len = msg.bytes.min(self.slot);
            each(datagram, &self.slots[..len]);
            Ok(1)
        }
    }

    /// Stands for a sender the OS did not name.
    const UNKNOWN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

    fn sockaddr(a: &SockaddrStorage) -> SocketAddr {
        if let Some(v4) = a.as_sockaddr_in() {
            SocketAddr::V4((*v4).into())
        } else if let Some(v6) = a.as_sockaddr_in6() {
            SocketAddr::V6((*v6).into())
        } else {
            UNKNOWN
        }
    }
}

/// Elsewhere: one `recv_from` per datagram into one slot; the wait is a short sleep (this
/// fallback is for development machines, not for production).
#[cfg(not(target_os = "linux"))]
mod recv {
    use std::net::UdpSocket;

    use super::Datagram;

    pub(super) fn wait(
        _socket: &UdpSocket,
        _deadline: Option<std::time::Duration>,
    ) -> std::io::Result<bool> {
        std::thread::sleep(std::time::Duration::from_millis(1));
        Ok(true)
    }

    pub(super) fn interrupt(_socket: &UdpSocket) {}

    #[derive(Debug)]
    pub(super) struct Reader {
        slot: Vec<u8>,
    }

    impl Reader {
        pub(super) fn new(slot: usize) -> Self {
            Reader {
                slot: vec![0u8; slot],
            }
        }

        pub(super) fn read(
            &mut self,
            socket: &UdpSocket,
            mut each: impl FnMut(Datagram, &[u8]),
        ) -> std::io::Result<usize> {
            // Without MSG_TRUNC a datagram filling the whole slot may have been cut.
            let (len, from) = socket.recv_from(&mut self.slot)?;
            each(
                Datagram {
                    len,
                    from,
                    truncated: len == self.slot.len(),
                    kernel_dropped: None,
                },
                &self.slot[..len],
            );
            // One at a time: report a full burst so the caller keeps reading.
            Ok(super::BURST)
        }

        pub(super) fn read_one(
            &mut self,
            socket: &UdpSocket,
            each: impl FnMut(Datagram, &[u8]),
        ) -> std::io::Result<usize> {
            self.read(socket, each)
        }
    }
}
