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
//! # Modes
//!
//! The mode is chosen once per process, when the first channel (or hazard cell) is
//! made:
//! - **expedited**: `membarrier` registered; [`light`] is a compiler barrier, [`heavy`]
//!   the system call.
//! - **fences**: both sides are `fence(SeqCst)`: correct, and slower on the hot path.
//!   Chosen where the system call is missing or refused at start (not Linux, kernel
//!   older than 4.14, a seccomp filter), under Miri (always: Miri has no `membarrier`),
//!   and when the environment variable `PIPELINE_FENCE_FALLBACK` is set to anything
//!   but empty or `0` when the first channel is made. That is the switch for
//!   ThreadSanitizer runs (TSAN models neither `membarrier` nor the IPIs it sends) and
//!   for deployments whose seccomp policy *kills* a process that calls `membarrier`
//!   instead of refusing the call. It is read once; changing it later has no effect.
//!   Under `cfg(pipeline_loom)` both sides are `fence(SeqCst)` too, which loom models.
//!
//! # Refused after registration
//!
//! `membarrier` can start failing after a successful registration: a seccomp filter
//! installed later (sandboxes do that, and a filter may cover only some threads), or
//! a transient `ENOMEM`. A [`heavy`] that finds the call refused never panics (it
//! usually runs in the middle of a resize that has already taken effect); it switches
//! the process to the fences mode for good, once, under a lock:
//!
//! 1. The mode becomes *switching*: every [`light`] that reads it from now on is a
//!    real fence, and every [`heavy`] that reads it waits for step 3.
//! 2. One process-wide barrier, so that operations already past a compiler-only
//!    [`light`] are ordered as `membarrier` would have ordered them: first
//!    `membarrier(MEMBARRIER_CMD_GLOBAL)` (needs no registration; slow, a few
//!    milliseconds, and sound on every architecture); if that is refused too, the
//!    `mprotect` trick of .NET's `FlushProcessWriteBuffers` and folly's
//!    `asymmetricHeavyBarrier`: make a resident page of ours writable, write it, make
//!    it inaccessible; the kernel must then invalidate that page's TLB entries on
//!    every CPU running one of our threads, and on x86 it does so with an
//!    inter-processor interrupt, a full barrier on each of them.
//! 3. The mode becomes *fences*, and one warning is logged.
//!
//! Why that is enough: a hot-path thread whose [`light`] read *expedited* read it
//! before step 1 was visible to it, so the barrier of step 2 falls in that thread
//! after its hazard store: either before its following pointer load (which then sees
//! any pointer moved before [`heavy`]), or after it (and the hazard is visible to any
//! scan after the barrier). A hot path that read another mode ran a real fence, which
//! pairs with the `fence(SeqCst)` every [`heavy`] runs. And no [`heavy`] relies on
//! `fence(SeqCst)` alone before step 2 is complete: one that reads *switching* waits
//! on the lock, one that reads *fences* synchronises with the store of step 3.
//!
//! Residual risk: the `mprotect` trick relies on the kernel interrupting the other
//! CPUs. Linux on arm64 (and on AMD EPYC 3 and later since Linux 6.15, for processes
//! running on four or more CPUs at once) invalidates TLBs with broadcast instructions
//! instead, which are not a barrier on the other CPUs. When `MEMBARRIER_CMD_GLOBAL`
//! is refused on such a system, or `mprotect` itself fails, no primitive is left that
//! orders the operations in flight at the switch. Since that cannot be told from
//! user space, step 2 also waits `GRACE` (10 ms) after any barrier but `GLOBAL`,
//! with the lock held, before step 3: a store buffer drains in
//! nanoseconds on real hardware (any interrupt or context switch drains it), so a
//! lost ordering needs a hazard store still unpublished that long after the
//! operation's pointer load, which no hardware does but no architecture rules out.
//! What it would cost: a generation closed or freed under a send or receive that was
//! inside it at that instant (a lost value or a use after free). Only operations in
//! flight during the switch are exposed; every later one uses real fences. The log
//! says which barrier was used (an error instead of a warning when none was).
//!
//! # fork and signal handlers
//!
//! A `membarrier` registration is part of the address space and a forked child
//! inherits it (checked on Linux 6.18: `MEMBARRIER_CMD_PRIVATE_EXPEDITED` succeeds in
//! the child of a registered parent; the kernel clears it only on `execve`), so the
//! mode chosen here stays valid in a child, and channels made in the child after the
//! fork work. Channels made *before* the fork must not be used in the child (their
//! locks and other threads' hazards are copied mid-use), and no operation may run in a
//! signal handler; docs/architecture.md ("Fork, signals and membarrier refusal") says
//! why. Nothing here can tell a channel made before the fork from one made after it,
//! so the channel detects such a use itself (its creator's pid, checked before a
//! thread sleeps).

#[cfg(not(pipeline_loom))]
mod imp {
    use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::Duration;

    /// Both sides are `fence(SeqCst)`.
    const FENCES: u8 = 0;
    /// `light` is a compiler barrier, `heavy` is `membarrier`.
    const EXPEDITED: u8 = 1;
    /// Leaving `EXPEDITED` for good: `light` is a fence, `heavy` waits for the switch.
    const SWITCHING: u8 = 2;

    /// How long the switch waits when no process-wide barrier was available (see the
    /// module's "Residual risk").
    pub(crate) const GRACE: Duration = Duration::from_millis(10);

    /// Name of the environment variable that forces the fences mode.
    const FORCE_ENV: &str = "PIPELINE_FENCE_FALLBACK";

    static MODE: AtomicU8 = AtomicU8::new(FENCES);
    static INIT: OnceLock<()> = OnceLock::new();
    /// Serialises the switch out of `EXPEDITED`.
    static SWITCH: Mutex<()> = Mutex::new(());

    /// Decides, once per process, which fences to use. Called when a channel is made,
    /// so it happens before any fence on that channel.
    pub(crate) fn init() {
        INIT.get_or_init(|| {
            let expedited = !forced_fallback() && membarrier::register();
            if expedited {
                // Map the page of the mprotect fallback now, while nothing refuses it.
                barrier::prepare();
            }
            let mode = if expedited { EXPEDITED } else { FENCES };
            MODE.store(mode, Ordering::Relaxed);
        });
    }

    /// Whether the fences mode is forced: always under Miri, else by the environment.
    fn forced_fallback() -> bool {
        cfg!(miri) || std::env::var_os(FORCE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
    }

    /// The hot side: a compiler barrier, or a full fence outside the expedited mode.
    #[inline(always)]
    pub(crate) fn light() {
        if MODE.load(Ordering::Relaxed) == EXPEDITED {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The rare side: a full fence on every CPU running one of our threads.
    pub(crate) fn heavy() {
        // Acquire: a `FENCES` stored by the switch comes after its barrier completed.
        match MODE.load(Ordering::Acquire) {
            FENCES => fence(Ordering::SeqCst),
            EXPEDITED => {
                if let Err(errno) = membarrier::expedited() {
                    switch_to_fences(errno);
                }
            }
            _ => switch_to_fences(0),
        }
    }

    /// Leaves the expedited mode for good (see the module docs); `errno` is why the
    /// caller's `membarrier` failed (0 if it did not call it). Ends with a full fence,
    /// which is this `heavy`'s own.
    #[cold]
    #[inline(never)]
    fn switch_to_fences(errno: i32) {
        let guard = SWITCH.lock().unwrap_or_else(PoisonError::into_inner);
        if MODE.load(Ordering::Relaxed) == FENCES {
            // Another thread switched; its barrier completed before it let the lock go.
            drop(guard);
            fence(Ordering::SeqCst);
            return;
        }
        MODE.store(SWITCHING, Ordering::Relaxed);
        // Orders the caller's writes and the mode before the barrier.
        fence(Ordering::SeqCst);
        let used = barrier::process_wide();
        if used != Barrier::Global {
            std::thread::sleep(GRACE);
        }
        fence(Ordering::SeqCst);
        MODE.store(FENCES, Ordering::Release);
        #[cfg(test)]
        tests::SWITCHED_WITH.store(used as u8, Ordering::Relaxed);
        drop(guard);
        let error = std::io::Error::from_raw_os_error(errno);
        match used {
            Barrier::Global | Barrier::Mprotect => tracing::warn!(
                %error,
                barrier = ?used,
                "pipeline-core: membarrier(PRIVATE_EXPEDITED) failed after a successful \
                 registration; every channel now uses plain fences (slower sends and \
                 receives) for the rest of the process"
            ),
            Barrier::None => tracing::error!(
                %error,
                "pipeline-core: membarrier(PRIVATE_EXPEDITED) failed after a successful \
                 registration and no process-wide barrier was available (membarrier \
                 GLOBAL and mprotect refused); every channel now uses plain fences; \
                 operations in flight at this instant were not ordered (see \
                 pipeline-core's hazard/fence.rs, \"Residual risk\")"
            ),
        }
    }

    /// What ordered the operations in flight when the expedited mode was left.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Barrier {
        None = 1,
        Global = 2,
        Mprotect = 3,
    }

    #[cfg(target_os = "linux")]
    mod membarrier {
        // From linux/membarrier.h (not exported by the libc crate).
        const CMD_QUERY: libc::c_int = 0;
        const CMD_GLOBAL: libc::c_int = 1;
        const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

        /// The system call's result, or the errno it failed with.
        fn call(cmd: libc::c_int) -> Result<libc::c_long, i32> {
            #[cfg(test)]
            if cmd != CMD_QUERY && super::tests::refused(super::tests::REFUSE_MEMBARRIER) {
                return Err(libc::EPERM);
            }
            // SAFETY: membarrier takes two integers and touches no memory of ours.
            let result = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_int) };
            if result < 0 {
                Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
            } else {
                Ok(result)
            }
        }

        pub(super) fn register() -> bool {
            let wanted = (CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED) as libc::c_long;
            call(CMD_QUERY).is_ok_and(|supported| supported & wanted == wanted)
                && call(CMD_REGISTER_PRIVATE_EXPEDITED).is_ok()
        }

        /// A full barrier on every CPU running one of our threads, or the errno.
        pub(super) fn expedited() -> Result<(), i32> {
            call(CMD_PRIVATE_EXPEDITED).map(drop)
        }

        /// A full barrier on every CPU of the system (an RCU grace period: slow).
        pub(super) fn global() -> bool {
            call(CMD_GLOBAL).is_ok()
        }
    }

    #[cfg(not(target_os = "linux"))]
    mod membarrier {
        pub(super) fn register() -> bool {
            false
        }
        pub(super) fn expedited() -> Result<(), i32> {
            Err(0)
        }
        pub(super) fn global() -> bool {
            false
        }
    }

    /// The process-wide barriers that stand in for a refused `membarrier`.
    mod barrier {
        use super::{Barrier, membarrier};

        /// Maps the page of the mprotect barrier (once; a failure is retried by
        /// [`process_wide`]).
        pub(super) fn prepare() {
            #[cfg(target_os = "linux")]
            page::get();
        }

        /// Runs the first process-wide barrier that works.
        pub(super) fn process_wide() -> Barrier {
            if membarrier::global() {
                return Barrier::Global;
            }
            #[cfg(target_os = "linux")]
            if page::mprotect_barrier() {
                return Barrier::Mprotect;
            }
            Barrier::None
        }

        #[cfg(target_os = "linux")]
        pub(super) mod page {
            use std::sync::Mutex;
            use std::sync::atomic::{AtomicUsize, Ordering};

            /// Address of the page, or 0 until it is mapped. Guarded by `LOCK` for
            /// writes; the page is never unmapped.
            static PAGE: AtomicUsize = AtomicUsize::new(0);
            static LOCK: Mutex<()> = Mutex::new(());

            fn size() -> usize {
                // SAFETY: sysconf reads a constant of the system.
                let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
                usize::try_from(size).unwrap_or(4096)
            }

            /// The page, mapped on first use (inaccessible, so it holds no memory until
            /// a barrier writes it); `None` if the mapping is refused.
            pub(in super::super) fn get() -> Option<usize> {
                let _lock = LOCK
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let page = PAGE.load(Ordering::Relaxed);
                if page != 0 {
                    return Some(page);
                }
                // SAFETY: a new private anonymous mapping; it aliases nothing of ours.
                let page = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        size(),
                        libc::PROT_NONE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if page == libc::MAP_FAILED {
                    return None;
                }
                PAGE.store(page as usize, Ordering::Relaxed);
                Some(page as usize)
            }

            /// Downgrades the protection of a resident, written page, which makes the
            /// kernel invalidate its TLB entries on every CPU running one of our
            /// threads: on x86 with an interrupt, a full barrier on each. (Had the page
            /// been swapped out between the write and the downgrade, the swap-out
            /// did the same.) False if the page or a protection change was refused.
            pub(in super::super) fn mprotect_barrier() -> bool {
                #[cfg(test)]
                if super::super::tests::refused(super::super::tests::REFUSE_MPROTECT) {
                    return false;
                }
                let Some(page) = get() else {
                    return false;
                };
                // One barrier at a time: another one's downgrade between our upgrade
                // and our write would leave us writing an inaccessible page.
                let _lock = LOCK
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let page = page as *mut libc::c_void;
                // SAFETY: our own mapping, of one page; nothing else uses it.
                unsafe {
                    if libc::mprotect(page, size(), libc::PROT_READ | libc::PROT_WRITE) != 0 {
                        return false;
                    }
                    // Dirty and resident, so the downgrade cannot skip the flush.
                    (*(page as *const AtomicUsize)).fetch_add(1, Ordering::SeqCst);
                    libc::mprotect(page, size(), libc::PROT_NONE) == 0
                }
            }
        }
    }

    /// Test hooks and tests. The switch is one-way for the whole process, so the tests
    /// that make it run in a child process (this test binary, re-run on one test).
    #[cfg(test)]
    pub(crate) mod tests {
        use super::*;
        use std::process::Command;
        use std::sync::atomic::AtomicU8;

        /// Bits of [`REFUSE`].
        pub(crate) const REFUSE_MEMBARRIER: u8 = 1;
        pub(crate) const REFUSE_MPROTECT: u8 = 2;
        /// What the hooks refuse from now on, as a seccomp filter installed late would.
        static REFUSE: AtomicU8 = AtomicU8::new(0);
        /// `Barrier as u8` the switch used, 0 before it.
        pub(crate) static SWITCHED_WITH: AtomicU8 = AtomicU8::new(0);

        pub(crate) fn refused(what: u8) -> bool {
            REFUSE.load(Ordering::Relaxed) & what != 0
        }

        /// Makes every later `membarrier` call (and, with `REFUSE_MPROTECT`, the mprotect
        /// barrier) fail, for this process.
        pub(crate) fn refuse(what: u8) {
            REFUSE.fetch_or(what, Ordering::Relaxed);
        }

        const CHILD_ENV: &str = "PIPELINE_FENCE_TEST_CHILD";

        /// In the parent: runs test `name` of this module alone in a child process (a
        /// fresh fence mode) and checks that it passed; returns false. In the child:
        /// returns true (run the body).
        fn in_child(name: &str) -> bool {
            if std::env::var_os(CHILD_ENV).is_some() {
                return true;
            }
            let path = module_path!().split_once("::").map_or("", |(_, rest)| rest);
            let test = format!("{path}::{name}");
            let output = Command::new(std::env::current_exe().unwrap())
                .args([test.as_str(), "--exact", "--test-threads=1", "--nocapture"])
                .env(CHILD_ENV, "1")
                .output()
                .expect("re-running the test binary");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{test} in a child process: {}\n{stdout}\n{stderr}",
                output.status
            );
            print!("{stdout}");
            false
        }

        /// Whether this (child) process starts in the expedited mode; prints why not.
        fn expedited_at_start() -> bool {
            init();
            let expedited = MODE.load(Ordering::Relaxed) == EXPEDITED;
            if !expedited {
                println!("membarrier unavailable or the fallback is forced: nothing to switch");
            }
            expedited
        }

        /// Senders, a receiver and a resizer at work while `membarrier` starts being
        /// refused halfway through (`refuse` is applied then): no panic, every value
        /// arrives once and in order, and the process ends in the fences mode.
        fn traffic_across_the_switch(refuse_what: u8) {
            use crate::channel::bounded;
            const SENDERS: u64 = 3;
            const PER_SENDER: u64 = 20_000;
            let (tx, rx) = bounded::<(u64, u64)>(4);
            std::thread::scope(|s| {
                for id in 0..SENDERS {
                    let tx = tx.clone();
                    s.spawn(move || {
                        for seq in 0..PER_SENDER {
                            tx.send((id, seq)).unwrap();
                        }
                    });
                }
                let receiver = s.spawn(move || {
                    let mut next = [0u64; SENDERS as usize];
                    for (id, seq) in rx.iter() {
                        assert_eq!(seq, next[id as usize], "sender {id} out of order");
                        next[id as usize] += 1;
                    }
                    next
                });
                for round in 0..200usize {
                    if round == 100 {
                        refuse(refuse_what);
                    }
                    tx.resize(1 + round % 7).unwrap();
                    std::thread::yield_now();
                }
                drop(tx);
                assert_eq!(receiver.join().unwrap(), [PER_SENDER; SENDERS as usize]);
            });
            assert_eq!(MODE.load(Ordering::Relaxed), FENCES);
        }

        /// The case: membarrier refused after registration (a seccomp filter
        /// applied later). The resize that finds it refused switches to fences through
        /// the GLOBAL command or the mprotect barrier, without panicking.
        #[test]
        #[cfg_attr(miri, ignore = "spawns a process; Miri always uses the fences mode")]
        fn refused_membarrier_switches_to_fences_without_panicking() {
            if !in_child("refused_membarrier_switches_to_fences_without_panicking")
                || !expedited_at_start()
            {
                return;
            }
            traffic_across_the_switch(REFUSE_MEMBARRIER);
            // Every membarrier command is refused, so the mprotect barrier ran.
            assert_eq!(
                SWITCHED_WITH.load(Ordering::Relaxed),
                Barrier::Mprotect as u8
            );
            // Later resizes use plain fences (the hook still refuses membarrier).
            let (tx, rx) = crate::channel::bounded(1);
            tx.send(1).unwrap();
            tx.resize(3).unwrap();
            tx.send(2).unwrap();
            assert_eq!((rx.recv(), rx.recv()), (Ok(1), Ok(2)));
        }

        /// The last resort: membarrier and mprotect both refused. Still no panic, a
        /// correct result, and the switch records that no barrier was available.
        #[test]
        #[cfg_attr(miri, ignore = "spawns a process; Miri always uses the fences mode")]
        fn refused_membarrier_and_mprotect_still_switch_without_panicking() {
            if !in_child("refused_membarrier_and_mprotect_still_switch_without_panicking")
                || !expedited_at_start()
            {
                return;
            }
            traffic_across_the_switch(REFUSE_MEMBARRIER | REFUSE_MPROTECT);
            assert_eq!(SWITCHED_WITH.load(Ordering::Relaxed), Barrier::None as u8);
        }

        /// The mprotect barrier works here (the page maps, both protection changes
        /// succeed), and can run again.
        #[test]
        #[cfg(target_os = "linux")]
        #[cfg_attr(miri, ignore = "mmap and mprotect are system calls")]
        fn mprotect_barrier_runs() {
            assert!(barrier::page::mprotect_barrier());
            assert!(barrier::page::mprotect_barrier());
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
