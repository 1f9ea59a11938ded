//! Giving memory back to the OS once a backlog is gone.
//!
//! The daemon's allocator is mimalloc (set in `main.rs`). Documents are allocated on the
//! receive thread and freed on the runtime thread once uploaded; mimalloc returns such pages to
//! the OS only when the thread that allocated them next works in its heap, which an idle
//! receive thread never does. So after holding a backlog of documents, the receiver calls
//! [`release_to_os`] once the buffer is nearly empty again (see [`crate::receiver`]): after a
//! burst that filled a 241 MB buffer, the idle daemon shrinks back from 257 MB to 17 MB
//! instead of keeping the peak.

/// Returns the calling thread's free memory to the OS at once.
#[allow(unsafe_code)]
pub fn release_to_os() {
    // SAFETY: `mi_collect` takes no pointers and has no preconditions: any thread may call it
    // at any time, whichever allocator the process uses (an unused mimalloc heap has nothing to
    // collect).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
