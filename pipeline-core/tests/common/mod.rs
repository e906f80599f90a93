//! Helpers shared by the pool test files.

use std::sync::Once;

/// Keeps the induced panics (messages starting with "induced") out of the test output;
/// any other panic prints as usual.
#[allow(dead_code)] // not every test file that includes this module induces panics
pub fn quiet_induced_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let induced = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("induced"));
            if !induced {
                default(info);
            }
        }));
    });
}

/// Spins until this thread has used `cpu` of CPU time (not wall time: a busy machine
/// only makes it take longer). For the pools' CPU-time tests.
#[cfg(target_os = "linux")]
#[allow(dead_code)] // not every test file that includes this module burns CPU
pub fn burn_cpu(cpu: std::time::Duration) {
    let now = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
            0
        );
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let start = now();
    while now() - start < cpu {
        std::hint::spin_loop();
    }
}
