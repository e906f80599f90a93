//! A forked child that waits on a channel made before the fork fails loudly instead of
//! sleeping forever (the threads that would wake it were not copied). Its own binary:
//! the fork copies only the calling thread, and fewer threads means fewer locks a
//! child could find held.

use pipeline_core::channel::bounded;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Exit status of a child whose wait panicked, as it must.
const PANICKED: i32 = 42;

#[test]
fn a_forked_child_that_blocks_on_an_inherited_channel_panics() {
    let (tx, rx) = bounded::<u32>(1);
    // SAFETY: the child only receives, catches the panic and leaves with `_exit`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // Nothing will ever be sent: without the check this would sleep forever.
        let outcome = catch_unwind(AssertUnwindSafe(|| rx.recv()));
        let code = if outcome.is_err() { PANICKED } else { 1 };
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // A hang detector, not a time limit: the child needs no time to fail.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if done == child {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!("the child hung waiting on a channel made before the fork");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), PANICKED);
    // The parent's channel is untouched.
    tx.send(7).unwrap();
    assert_eq!(rx.recv(), Ok(7));
}
