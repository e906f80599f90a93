//! Asymmetric fences: a free one for the hot path, an expensive one for the rare path.
//!
//! The channel's hot paths (every send and receive) publish "I am inside this
//! generation" with a plain store and then read a shared pointer; the rare paths (a
//! resize, the last thread out of a replaced generation) write that pointer and then
//! read every thread's store. That is the store-buffering pattern, which needs a full
//! fence on both sides. Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` runs a
//! full fence on every CPU that is running a thread of this process, so the hot side
//! only needs to stop the *compiler* from reordering, and pays nothing at run time.
//! A pair of [`light`] and [`heavy`] orders memory like a pair of `fence(SeqCst)`.
//!
//! Where the system call is missing or refused (not Linux, kernel older than 4.14, a
//! seccomp filter), both sides fall back to `fence(SeqCst)`: correct, and slower on
//! the hot path. Under `cfg(pipeline_loom)` both are `fence(SeqCst)`, which loom models.

#[cfg(not(pipeline_loom))]
mod imp {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering, compiler_fence, fence};

    /// Whether `membarrier` was registered; set once, before any channel exists.
    static EXPEDITED: AtomicBool = AtomicBool::new(false);
    static INIT: OnceLock<bool> = OnceLock::new();

    /// Decides, once per process, which fences to use. Called when a channel is made,
    /// so it happens before any fence on that channel.
    pub(crate) fn init() {
        INIT.get_or_init(|| {
            let ok = membarrier::register();
            EXPEDITED.store(ok, Ordering::Relaxed);
            ok
        });
    }

    /// The hot side: a compiler barrier, or a full fence when `membarrier` is missing.
    #[inline(always)]
    pub(crate) fn light() {
        if EXPEDITED.load(Ordering::Relaxed) {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The rare side: a full fence on every CPU running one of our threads.
    pub(crate) fn heavy() {
        if !(EXPEDITED.load(Ordering::Relaxed) && membarrier::expedited()) {
            fence(Ordering::SeqCst);
        }
    }

    #[cfg(target_os = "linux")]
    mod membarrier {
        // From linux/membarrier.h (not exported by the libc crate).
        const CMD_QUERY: libc::c_int = 0;
        const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

        fn call(cmd: libc::c_int) -> libc::c_long {
            // SAFETY: membarrier takes two integers and touches no memory of ours.
            unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_int) }
        }

        pub(super) fn register() -> bool {
            let supported = call(CMD_QUERY);
            let wanted = (CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED) as libc::c_long;
            supported >= 0
                && supported & wanted == wanted
                && call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        }

        /// Returns false if the call failed (it cannot, once registered; the caller
        /// then falls back to a plain fence, which is still correct for this thread
        /// but not for the others, so this is treated as a bug).
        pub(super) fn expedited() -> bool {
            let ok = call(CMD_PRIVATE_EXPEDITED) == 0;
            assert!(ok, "membarrier failed after a successful registration");
            ok
        }
    }

    #[cfg(not(target_os = "linux"))]
    mod membarrier {
        pub(super) fn register() -> bool {
            false
        }
        pub(super) fn expedited() -> bool {
            false
        }
    }
}

#[cfg(pipeline_loom)]
mod imp {
    use crate::sync::atomic::{Ordering, fence};

    pub(crate) fn init() {}

    pub(crate) fn light() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy() {
        fence(Ordering::SeqCst);
    }
}

pub(crate) use imp::{heavy, init, light};
