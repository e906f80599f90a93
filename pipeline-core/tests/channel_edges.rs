//! The channel's edges, in the style of crossbeam-channel's `tests/array.rs` and std's
//! `sync_channel` tests: linearizability, sends racing the last receiver's drop,
//! re-entrant and panicking drops of buffered values, drops of unreceived values,
//! thread-local destructors, every error variant, the stats counters and per-sender
//! FIFO.
//!
//! Every test runs twice (see `edge_suite!` at the end): as is, and with a background
//! resizer thread that keeps resizing a clone of the `Sender` through a few capacities
//! around the initial one. The resizer's clone keeps the channel connected, so a test
//! whose outcome needs every sender gone stops it (joining the thread, which drops the
//! clone) before that step: it runs only during the phases a test marks. It stops by
//! itself once the receivers are gone (`ResizeError::Disconnected`).
//!
//! Every test body runs under a watchdog: a deadlock fails the test with a message
//! after `WATCHDOG` instead of hanging the run. Timeouts are only deadlock detectors;
//! no outcome depends on the machine's speed.

use pipeline_core::channel::{
    Receiver, RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, Sender,
    TryRecvError, TrySendError, bounded,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// How long the tests may make no progress at all before a running body counts as
/// deadlocked: a hang detector, not a time limit (a slow machine only delays it).
const WATCHDOG: Duration = Duration::from_secs(30);

/// Bumped by the long tests at each step: the watchdog fires only when it stands
/// still. Shared by every test of the binary, so another test's progress can delay
/// (never cause) the detection of a hang.
static PROGRESS: AtomicUsize = AtomicUsize::new(0);

fn progress() {
    PROGRESS.fetch_add(1, SeqCst);
}

/// A timeout for a send or receive that must not wait: it only detects a hang.
const HANG: Duration = Duration::from_secs(30);

/// Set when a watchdog fires: resizers of abandoned (deadlocked) bodies stop, so they
/// do not keep allocating generations in the background for the rest of the run.
static ABANDONED: AtomicBool = AtomicBool::new(false);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The channel is never resized (except where a test resizes it itself).
    Plain,
    /// A background thread resizes the channel during the phases a test marks.
    Resizing,
}

/// A background resizer on a clone of a channel's `Sender` (nothing in `Mode::Plain`).
/// Stopped (and its `Sender` dropped) by `stop` or on drop.
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Mode {
    /// Starts resizing `tx` through capacities around its current one until stopped or
    /// until the receivers are gone.
    fn churn<T: Send + 'static>(self, tx: &Sender<T>) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (self == Mode::Resizing).then(|| {
            let tx = tx.clone();
            let stop = stop.clone();
            let base = tx.capacity();
            // Consecutive entries always differ, so every `Ok` changed the capacity.
            let capacities = [base + 3, base.saturating_sub(1).max(1), base + 1, base];
            let capacities = if base == 1 { [4, 1, 2, 1] } else { capacities };
            thread::spawn(move || {
                let mut resizes = 0;
                let mut i = 0;
                while !stop.load(SeqCst) && !ABANDONED.load(SeqCst) {
                    match tx.resize(capacities[i % capacities.len()]) {
                        Ok(()) => resizes += 1,
                        Err(ResizeError::Disconnected) => break,
                        Err(e) => panic!("resize refused: {e}"),
                    }
                    i += 1;
                    // Often enough to land between any two steps of the other
                    // threads, not so often that idle receivers let the chain of
                    // drained generations grow without bound.
                    if i % 8 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    } else {
                        thread::yield_now();
                    }
                }
                resizes
            })
        });
        Churn { stop, thread }
    }
}

impl Churn {
    /// Stops the resizer, waits for it (its `Sender` is dropped when this returns) and
    /// returns how many resizes it made (each one changed the capacity).
    fn stop(&mut self) -> u64 {
        self.stop.store(true, SeqCst);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the resizer panicked"))
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `body` on its own thread and fails if it has not returned after `WATCHDOG`
/// (a deadlock); a panic in the body fails the test with the body's message.
fn run(mode: Mode, name: &'static str, body: fn(Mode)) {
    let handle = thread::Builder::new()
        .name(format!("{name}-{mode:?}"))
        .spawn(move || body(mode))
        .expect("spawn the test body");
    let (mut seen, mut since) = (PROGRESS.load(SeqCst), Instant::now());
    while !handle.is_finished() {
        let now = PROGRESS.load(SeqCst);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= WATCHDOG {
            ABANDONED.store(true, SeqCst);
            panic!("{name} ({mode:?}): deadlock: no progress for {WATCHDOG:?}");
        }
        thread::sleep(ms(5));
    }
    if let Err(payload) = handle.join() {
        panic::resume_unwind(payload);
    }
}

/// A small xorshift generator seeded at random; tests print the seed when they fail.
struct Rng(u64);

impl Rng {
    fn new() -> (Rng, u64) {
        let seed = RandomState::new().build_hasher().finish() | 1;
        (Rng(seed), seed)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Counts the values of one test alive and records each one's drop.
#[derive(Default)]
struct Ledger {
    created: AtomicUsize,
    dropped: Mutex<Vec<usize>>,
}

impl Ledger {
    fn live(&self) -> usize {
        self.created.load(SeqCst) - self.dropped.lock().unwrap().len()
    }

    /// Every value created was dropped exactly once (ids are unique per ledger).
    fn assert_each_dropped_once(&self, context: &str) {
        let mut dropped = self.dropped.lock().unwrap().clone();
        dropped.sort_unstable();
        let before = dropped.len();
        dropped.dedup();
        assert_eq!(
            before,
            dropped.len(),
            "{context}: a value was dropped twice"
        );
        assert_eq!(
            dropped.len(),
            self.created.load(SeqCst),
            "{context}: values still alive"
        );
    }
}

/// A value with an id that registers itself in a [`Ledger`].
#[derive(Debug)]
struct Tracked {
    id: usize,
    ledger: Arc<Ledger>,
}

impl Tracked {
    fn new(id: usize, ledger: &Arc<Ledger>) -> Tracked {
        ledger.created.fetch_add(1, SeqCst);
        Tracked {
            id,
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.ledger.dropped.lock().unwrap().push(self.id);
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad("Ledger")
    }
}

// ---------------------------------------------------------------------------------
// 1. Linearizability
// ---------------------------------------------------------------------------------

/// Rounds on a fresh channel (and a fresh resizer), and iterations per thread in each.
const LINEARIZABLE_ROUNDS: usize = if cfg!(miri) { 2 } else { 40 };
const LINEARIZABLE_COUNT: usize = if cfg!(miri) { 50 } else { 2_000 };

/// crossbeam's `linearizable`: each thread sends, then `try_recv` must find a value
/// (its own or another's): a completed send is visible to any later receive.
fn linearizable(mode: Mode) {
    linearizable_with(mode, |rx, _| {
        rx.try_recv().map_err(|e| format!("try_recv: {e:?}"))
    });
}

/// The same with `recv_timeout` of zero or a microsecond: a receive that may not wait
/// must still see a completed send.
fn linearizable_recv_timeout(mode: Mode) {
    linearizable_with(mode, |rx, i| {
        let timeout = if i % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(1)
        };
        rx.recv_timeout(timeout)
            .map_err(|e| format!("recv_timeout({timeout:?}): {e:?}"))
    });
}

fn linearizable_with(mode: Mode, receive: fn(&Receiver<i32>, usize) -> Result<i32, String>) {
    const THREADS: usize = 4;
    for round in 0..LINEARIZABLE_ROUNDS {
        progress();
        let (tx, rx) = bounded(THREADS);
        let _churn = mode.churn(&tx);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (tx, rx) = (&tx, &rx);
                s.spawn(move || {
                    for i in 0..LINEARIZABLE_COUNT {
                        progress();
                        tx.send(0).unwrap();
                        if let Err(e) = receive(rx, i) {
                            panic!("round {round}, thread {t}, iteration {i}: {e} after a completed send");
                        }
                    }
                });
            }
        });
    }
}

/// One thread sends and then announces it; another, once it saw the announcement,
/// must receive the value with `try_recv` at once.
fn completed_send_is_visible_to_another_thread(mode: Mode) {
    let count = LINEARIZABLE_COUNT * 4;
    let (tx, rx) = bounded(1);
    let _churn = mode.churn(&tx);
    let announced = AtomicUsize::new(0);
    let consumed = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..count {
                tx.send(i).unwrap();
                announced.store(i + 1, SeqCst);
                while consumed.load(SeqCst) < i + 1 {
                    thread::yield_now();
                }
            }
        });
        for i in 0..count {
            progress();
            while announced.load(SeqCst) < i + 1 {
                thread::yield_now();
            }
            let received = rx.try_recv();
            // Release the sender before any assertion can fail.
            consumed.store(if received.is_ok() { i + 1 } else { usize::MAX }, SeqCst);
            match received {
                Ok(v) => assert_eq!(v, i),
                Err(e) => panic!("value {i}: try_recv after the send was announced: {e:?}"),
            }
        }
    });
}

// ---------------------------------------------------------------------------------
// 2. Sends racing the last receiver's drop
// ---------------------------------------------------------------------------------

/// Senders (some blocked on a full channel, some starting new sends with `send`,
/// `try_send` and `send_timeout`) race the drop of the last `Receiver`. Once the drop
/// has returned, every send fails and hands its value back; a send that returned `Ok`
/// had its value dropped by the channel: after the drop and every sender thread, no
/// value is alive, though `Sender`s still exist.
fn send_races_last_receiver_drop(mode: Mode) {
    const ITERATIONS: usize = if cfg!(miri) { 5 } else { 200 };
    const SENDERS: usize = 3;
    let (mut rng, seed) = Rng::new();
    for iteration in 0..ITERATIONS {
        progress();
        let context = format!("iteration {iteration} (seed {seed:#x})");
        let ledger = Arc::new(Ledger::default());
        let (tx, rx) = bounded::<Tracked>(2);
        let mut churn = mode.churn(&tx);
        let ids = AtomicUsize::new(0);
        let next_id = || ids.fetch_add(1, SeqCst);
        // Full, so the first sends block (or spin) until the drop.
        tx.send(Tracked::new(next_id(), &ledger)).unwrap();
        tx.send(Tracked::new(next_id(), &ledger)).unwrap();
        let dropped = AtomicBool::new(false);
        let receive = if iteration % 2 == 0 {
            0
        } else {
            1 + rng.below(4)
        };
        thread::scope(|s| {
            for k in 0..SENDERS {
                let (tx, ledger, dropped, context) = (&tx, &ledger, &dropped, &context);
                let next_id = &next_id;
                s.spawn(move || {
                    let mut attempt = 0usize;
                    loop {
                        attempt += 1;
                        let after_drop = dropped.load(SeqCst);
                        let id = next_id();
                        let value = Tracked::new(id, ledger);
                        let back = match (k + attempt) % 3 {
                            0 => tx.send(value).err().map(|SendError(v)| v),
                            1 => match tx.try_send(value) {
                                Ok(()) => None,
                                Err(TrySendError::Disconnected(v)) => Some(v),
                                Err(TrySendError::Full(v)) => {
                                    assert!(
                                        !after_drop,
                                        "{context}: try_send found the channel full after the \
                                         last receiver's drop returned"
                                    );
                                    drop(v);
                                    thread::yield_now();
                                    continue;
                                }
                            },
                            _ => match tx.send_timeout(value, HANG) {
                                Ok(()) => None,
                                Err(SendTimeoutError::Disconnected(v)) => Some(v),
                                Err(SendTimeoutError::Timeout(_)) => {
                                    panic!("{context}: send_timeout hung for {HANG:?}")
                                }
                            },
                        };
                        match back {
                            None => assert!(
                                !after_drop,
                                "{context}: a send that started after the last receiver's \
                                 drop returned succeeded"
                            ),
                            Some(v) => {
                                assert_eq!(v.id, id, "{context}: another value came back");
                                break;
                            }
                        }
                    }
                    // Disconnected stays disconnected, for every kind of send.
                    let v = Tracked::new(next_id(), ledger);
                    assert!(matches!(tx.send(v), Err(SendError(_))), "{context}");
                    let v = Tracked::new(next_id(), ledger);
                    assert!(
                        matches!(tx.try_send(v), Err(TrySendError::Disconnected(_))),
                        "{context}"
                    );
                    let v = Tracked::new(next_id(), ledger);
                    assert!(
                        matches!(
                            tx.send_timeout(v, HANG),
                            Err(SendTimeoutError::Disconnected(_))
                        ),
                        "{context}"
                    );
                });
            }
            if receive == 0 {
                // Drop while a sender has found the channel full (blocked or spinning).
                while tx.stats().full_events == 0 {
                    thread::yield_now();
                }
            } else {
                // Make room and drop at once: the senders race into the room.
                for _ in 0..receive {
                    drop(rx.recv().unwrap());
                }
            }
            drop(rx);
            dropped.store(true, SeqCst);
        });
        churn.stop();
        assert_eq!(
            ledger.live(),
            0,
            "{context}: values left alive in the channel after the last receiver's drop \
             (and every sender thread) returned"
        );
        // The senders still exist, and the channel refuses them.
        let v = Tracked::new(usize::MAX, &ledger);
        match tx.try_send(v) {
            Err(TrySendError::Disconnected(v)) => assert_eq!(v.id, usize::MAX),
            other => panic!("{context}: try_send after the drop: {other:?}"),
        }
        assert_eq!(tx.resize(9), Err(ResizeError::Disconnected), "{context}");
        ledger.assert_each_dropped_once(&context);
    }
}

/// std's `send4`: two sends blocked on a full channel both fail when the receiver
/// goes, and hand their values back.
fn blocked_senders_fail_when_the_receiver_goes(mode: Mode) {
    let (tx, rx) = bounded::<i32>(1);
    let mut churn = mode.churn(&tx);
    tx.send(0).unwrap();
    thread::scope(|s| {
        let a = s.spawn(|| tx.send(1));
        let b = s.spawn(|| tx.send(2));
        if mode == Mode::Plain {
            while tx.stats().full_events < 2 {
                thread::yield_now();
            }
        }
        drop(rx);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        if mode == Mode::Plain {
            assert_eq!((a, b), (Err(SendError(1)), Err(SendError(2))));
        } else {
            // A resize may have given one room before the drop: Ok, or the value back.
            assert!(matches!(a, Ok(()) | Err(SendError(1))), "{a:?}");
            assert!(matches!(b, Ok(()) | Err(SendError(2))), "{b:?}");
        }
    });
    churn.stop();
    assert_eq!(tx.send(3), Err(SendError(3)));
}

/// std's `port_gone_concurrent_shared`: the receiver takes one value and goes; the
/// senders' loop ends.
fn sends_end_once_the_receiver_is_gone(mode: Mode) {
    const ROUNDS: usize = if cfg!(miri) { 5 } else { 100 };
    for _ in 0..ROUNDS {
        progress();
        let (tx, rx) = bounded(1);
        let _churn = mode.churn(&tx);
        let tx2 = tx.clone();
        let receiver = thread::spawn(move || {
            rx.recv().unwrap();
        });
        while tx.send(1).is_ok() && tx2.try_send(1).map_or_else(|e| e.is_full(), |()| true) {}
        receiver.join().unwrap();
        assert_eq!(tx.send(2), Err(SendError(2)));
        assert_eq!(tx2.try_send(3), Err(TrySendError::Disconnected(3)));
    }
}

/// std's `oneshot_multi_thread_send_close_stress`: a send racing the receiver's drop
/// on another thread either succeeds or hands the value back; nothing hangs, and the
/// value is dropped either way.
fn stress_send_vs_receiver_drop(mode: Mode) {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 500 };
    let ledger = Arc::new(Ledger::default());
    for round in 0..ROUNDS {
        progress();
        let (tx, rx) = bounded(1);
        let mut churn = mode.churn(&tx);
        let dropper = thread::spawn(move || drop(rx));
        let ledger2 = ledger.clone();
        let sender = thread::spawn(move || match tx.send(Tracked::new(round, &ledger2)) {
            Ok(()) => None,
            Err(SendError(v)) => Some(v.id),
        });
        dropper.join().unwrap();
        let back = sender.join().unwrap();
        assert!(back.is_none() || back == Some(round));
        churn.stop();
        assert_eq!(ledger.live(), 0, "round {round}");
    }
    ledger.assert_each_dropped_once("stress_send_vs_receiver_drop");
}

// ---------------------------------------------------------------------------------
// 3. Re-entrant drops of buffered values
// ---------------------------------------------------------------------------------

/// What a [`Reentrant`] value does with its `Sender` when it is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// `capacity`, `len`, `is_empty`, `is_full`, `stats`.
    Inspect,
    /// `try_send`, `send`, `send_timeout`: each must fail with `Disconnected` (the
    /// receivers are gone) and hand the value back.
    Send,
    /// `resize`: must fail with `ResizeError::Disconnected`.
    Resize,
    /// Clones its `Sender` and drops the clone.
    CloneAndDrop,
    /// Only drops its `Sender` (perhaps the last one).
    Nothing,
}

/// A buffered value whose `Drop` uses the channel it is buffered in. Failures are
/// recorded, not panicked (a panic in a drop run by the channel would be a test of
/// something else).
struct Reentrant {
    tx: Option<Sender<Reentrant>>,
    act: Act,
    record: Arc<Mutex<Vec<String>>>,
}

impl Reentrant {
    fn new(tx: &Sender<Reentrant>, act: Act, record: &Arc<Mutex<Vec<String>>>) -> Reentrant {
        Reentrant {
            tx: Some(tx.clone()),
            act,
            record: record.clone(),
        }
    }

    fn inert(record: &Arc<Mutex<Vec<String>>>) -> Reentrant {
        Reentrant {
            tx: None,
            act: Act::Nothing,
            record: record.clone(),
        }
    }
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let mut failures = Vec::new();
        match self.act {
            Act::Inspect => {
                let capacity = tx.capacity();
                let _ = (tx.len(), tx.is_empty(), tx.is_full());
                let stats = tx.stats();
                if capacity == 0 || stats.capacity != capacity {
                    failures.push(format!("capacity {capacity}, stats {stats:?}"));
                }
            }
            Act::Send => {
                match tx.try_send(Reentrant::inert(&self.record)) {
                    Err(TrySendError::Disconnected(_)) => {}
                    other => {
                        failures.push(format!("try_send: {:?}", other.map_err(|e| e.to_string())))
                    }
                }
                if tx.send(Reentrant::inert(&self.record)).is_ok() {
                    failures.push("send: Ok".into());
                }
                match tx.send_timeout(Reentrant::inert(&self.record), HANG) {
                    Err(SendTimeoutError::Disconnected(_)) => {}
                    other => failures.push(format!(
                        "send_timeout: {:?}",
                        other.map_err(|e| e.to_string())
                    )),
                }
            }
            Act::Resize => {
                let result = tx.resize(tx.capacity() + 1);
                if result != Err(ResizeError::Disconnected) {
                    failures.push(format!("resize: {result:?}"));
                }
            }
            Act::CloneAndDrop => drop(tx.clone()),
            Act::Nothing => {}
        }
        drop(tx);
        let mut record = self.record.lock().unwrap();
        record.push(format!("{:?} dropped", self.act));
        record.extend(failures.into_iter().map(|f| format!("{:?}: {f}", self.act)));
    }
}

/// Buffers values whose `Drop` does `act` (spread over generations when `mode`
/// resizes), then drops the last receiver: each value is dropped once, none
/// deadlocks, and each use of the channel from a drop sees it disconnected.
fn reentrant_drops(mode: Mode, act: Act, keep_a_sender: bool) {
    const VALUES: usize = 6;
    let record = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = bounded(VALUES);
    let mut churn = mode.churn(&tx);
    for _ in 0..VALUES {
        tx.send(Reentrant::new(&tx, act, &record)).unwrap();
    }
    churn.stop();
    // Without `keep_a_sender`, the values hold the only senders left.
    let kept = keep_a_sender.then_some(tx);
    drop(rx);
    let record = record.lock().unwrap().clone();
    let expected = vec![format!("{act:?} dropped"); VALUES];
    assert_eq!(
        record, expected,
        "each value dropped once, every use of the channel as expected"
    );
    if let Some(tx) = kept {
        assert!(tx.send(Reentrant::inert(&Arc::default())).is_err());
    }
}

fn reentrant_drop_inspects_the_channel(mode: Mode) {
    reentrant_drops(mode, Act::Inspect, true);
}

fn reentrant_drop_sends(mode: Mode) {
    reentrant_drops(mode, Act::Send, true);
}

fn reentrant_drop_resizes(mode: Mode) {
    reentrant_drops(mode, Act::Resize, true);
}

fn reentrant_drop_clones_a_sender(mode: Mode) {
    reentrant_drops(mode, Act::CloneAndDrop, true);
}

/// The buffered values hold the only `Sender`s: the last one is dropped from inside
/// the receiver's drop.
fn reentrant_drop_holds_the_last_sender(mode: Mode) {
    reentrant_drops(mode, Act::Nothing, false);
}

/// The values hold the last senders and inspect the channel before dropping them.
fn reentrant_drop_inspects_then_drops_the_last_sender(mode: Mode) {
    reentrant_drops(mode, Act::Inspect, false);
}

// ---------------------------------------------------------------------------------
// 4. A panicking drop of a buffered value
// ---------------------------------------------------------------------------------

/// A value whose first drop panics with "first drop" (crossbeam's `Msg2`) when
/// `panics`; it sets `dropped` either way.
struct Bomb {
    panics: bool,
    dropped: Arc<AtomicBool>,
}

impl Bomb {
    fn new(panics: bool) -> (Bomb, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (
            Bomb {
                panics,
                dropped: dropped.clone(),
            },
            dropped,
        )
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.dropped.swap(true, SeqCst) {
            panic!("double drop");
        }
        if self.panics {
            panic!("first drop");
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    pipeline_core::pool::panic_message(payload.as_ref())
}

/// The first buffered value's drop panics while the last receiver is dropped: the
/// panic reaches the caller of `drop(receiver)`, the process does not abort, and the
/// senders still see the channel disconnected (every kind of send, and resize).
fn panicking_drop_reaches_the_receivers_drop(mode: Mode) {
    let (tx, rx) = bounded(4);
    let mut churn = mode.churn(&tx);
    let (first, first_dropped) = Bomb::new(true);
    tx.send(first).unwrap();
    // Spread over generations: the bomb stays in the oldest.
    tx.resize(tx.capacity() + 2).unwrap();
    for _ in 0..3 {
        tx.send(Bomb::new(false).0).unwrap();
    }
    let caught = panic::catch_unwind(AssertUnwindSafe(move || drop(rx)));
    let payload = caught.expect_err("the panic of the value's drop reaches drop(receiver)");
    assert_eq!(panic_message(payload), "first drop");
    assert!(first_dropped.load(SeqCst));
    churn.stop();
    // The other values may leak; the senders see the channel disconnected.
    let (v, _) = Bomb::new(false);
    match tx.send(v) {
        Err(SendError(v)) => assert!(!v.panics),
        Ok(()) => panic!("send after the receiver's drop succeeded"),
    }
    assert!(matches!(
        tx.try_send(Bomb::new(false).0),
        Err(TrySendError::Disconnected(_))
    ));
    assert!(matches!(
        tx.send_timeout(Bomb::new(false).0, HANG),
        Err(SendTimeoutError::Disconnected(_))
    ));
    assert_eq!(tx.resize(16), Err(ResizeError::Disconnected));
    // The last handle goes quietly.
    drop(tx);
}

/// crossbeam's `panic_on_drop`: the senders are gone first, so the receiver is the
/// channel's last handle; every value panics on its first drop. The first panic
/// reaches `drop(receiver)`, the rest leak (dropping one while unwinding would abort).
fn panicking_drop_with_the_receiver_as_last_handle(mode: Mode) {
    // Normal: both values dropped.
    let (tx, rx) = bounded(2);
    let (a, a_dropped) = Bomb::new(false);
    let (b, b_dropped) = Bomb::new(false);
    tx.send(a).unwrap();
    tx.send(b).unwrap();
    drop(tx);
    drop(rx);
    assert!(a_dropped.load(SeqCst) && b_dropped.load(SeqCst));

    // Every value panics on its first drop.
    let (tx, rx) = bounded(2);
    let mut churn = mode.churn(&tx);
    let (a, a_dropped) = Bomb::new(true);
    let (b, _b_dropped) = Bomb::new(true);
    tx.send(a).unwrap();
    tx.resize(3).unwrap();
    tx.send(b).unwrap();
    let (c, _c_dropped) = Bomb::new(true);
    tx.send(c).unwrap();
    churn.stop();
    drop(tx);
    let caught = panic::catch_unwind(AssertUnwindSafe(move || drop(rx)));
    let payload = caught.expect_err("the panic of the value's drop reaches drop(receiver)");
    assert_eq!(panic_message(payload), "first drop");
    assert!(a_dropped.load(SeqCst));
}

/// As above with a `try_send` in progress on another thread while the last receiver
/// drops: the first panic still reaches the caller of `drop(receiver)`, and no send
/// panics (one that pushed its value returns `Ok`, one that did not hands it back).
fn panicking_drop_races_a_send(mode: Mode) {
    const ROUNDS: usize = if cfg!(miri) { 5 } else { 200 };
    for round in 0..ROUNDS {
        progress();
        let (tx, rx) = bounded(64);
        let mut churn = mode.churn(&tx);
        let (bomb, bomb_dropped) = Bomb::new(true);
        tx.send(bomb).unwrap();
        let started = AtomicBool::new(false);
        let (at_drop, at_sender) = thread::scope(|s| {
            let sender = s.spawn(|| {
                let mut panics = Vec::new();
                loop {
                    started.store(true, SeqCst);
                    let (quiet, _) = Bomb::new(false);
                    match panic::catch_unwind(AssertUnwindSafe(|| tx.try_send(quiet))) {
                        Err(payload) => panics.push(panic_message(payload)),
                        Ok(Err(TrySendError::Disconnected(_))) => break,
                        Ok(Ok(()) | Err(TrySendError::Full(_))) => {}
                    }
                }
                panics
            });
            while !started.load(SeqCst) {
                thread::yield_now();
            }
            let at_drop = panic::catch_unwind(AssertUnwindSafe(move || drop(rx)))
                .err()
                .map(panic_message);
            (at_drop, sender.join().unwrap())
        });
        churn.stop();
        assert!(bomb_dropped.load(SeqCst), "round {round}");
        assert!(
            at_drop.as_deref() == Some("first drop") && at_sender.is_empty(),
            "round {round}: the panic of a buffered value's drop should reach drop(receiver); \
             drop(receiver) gave {at_drop:?}, the concurrent try_send panicked with {at_sender:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 5. Drops of unreceived values
// ---------------------------------------------------------------------------------

/// crossbeam's `drops`, with random counts: every value sent and not received is
/// dropped exactly once when the channel goes, none before.
fn drops(mode: Mode) {
    const RUNS: usize = if cfg!(miri) { 5 } else { 30 };
    const STEPS: usize = if cfg!(miri) { 100 } else { 3_000 };
    let (mut rng, seed) = Rng::new();
    for run in 0..RUNS {
        let steps = rng.below(STEPS);
        // Below every capacity the resizer uses (49 at the least), so the last sends
        // never wait for a receiver.
        let additional = rng.below(49);
        let context = format!("run {run}, steps {steps}, additional {additional} (seed {seed:#x})");
        let ledger = Arc::new(Ledger::default());
        let (s, r) = bounded::<Tracked>(50);
        let mut churn = mode.churn(&s);
        thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..steps {
                    r.recv().unwrap();
                }
            });
            scope.spawn(|| {
                for i in 0..steps {
                    s.send(Tracked::new(i, &ledger)).unwrap();
                }
            });
        });
        for i in 0..additional {
            s.send(Tracked::new(steps + i, &ledger)).unwrap();
        }
        churn.stop();
        assert_eq!(ledger.dropped.lock().unwrap().len(), steps, "{context}");
        drop(s);
        drop(r);
        ledger.assert_each_dropped_once(&context);
    }
}

/// Unreceived values spread over several generations (resized between sends, some
/// received) are each dropped exactly once by the last receiver's drop, while a
/// sender is still alive; the last sender's drop after that drops nothing twice.
fn drops_across_generations(mode: Mode) {
    let ledger = Arc::new(Ledger::default());
    let (tx, rx) = bounded::<Tracked>(3);
    let mut churn = mode.churn(&tx);
    let mut id = 0;
    for capacity in [5, 2, 7, 1, 4] {
        for _ in 0..3 {
            // A full generation just refuses a value (we drop it ourselves).
            if let Err(e) = tx.try_send(Tracked::new(id, &ledger)) {
                assert!(e.is_full());
            }
            id += 1;
        }
        tx.resize(capacity).unwrap();
        drop(rx.try_recv().unwrap());
    }
    churn.stop();
    let left = ledger.live();
    assert!(left > 0);
    assert_eq!(
        tx.len(),
        left,
        "every live value is buffered, over all generations"
    );
    drop(rx);
    assert_eq!(
        ledger.live(),
        0,
        "unreceived values not dropped by the receiver's drop"
    );
    drop(tx);
    ledger.assert_each_dropped_once("drops_across_generations");
}

/// Values received by several threads and the rest dropped with the channel: each
/// value's destructor runs exactly once.
fn destructors(mode: Mode) {
    const COUNT: usize = if cfg!(miri) { 100 } else { 2_000 };
    const RECEIVERS: usize = 4;
    const PER_RECEIVER: usize = COUNT / 2 / RECEIVERS;
    let ledger = Arc::new(Ledger::default());
    // Room for what is not received, whatever the resizer does (COUNT / 2 + 1 at least).
    let (tx, rx) = bounded::<Tracked>(COUNT / 2 + 2);
    let mut churn = mode.churn(&tx);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..COUNT {
                progress();
                tx.send(Tracked::new(i, &ledger)).unwrap();
            }
        });
        for _ in 0..RECEIVERS {
            s.spawn(|| {
                for _ in 0..PER_RECEIVER {
                    rx.recv().unwrap();
                }
            });
        }
    });
    churn.stop();
    assert_eq!(ledger.live(), COUNT - RECEIVERS * PER_RECEIVER);
    assert_eq!(rx.len(), ledger.live());
    drop(rx);
    assert_eq!(ledger.live(), 0);
    drop(tx);
    ledger.assert_each_dropped_once("destructors");
}

/// std's `drop_unreceived`: a value is dropped as soon as the last receiver goes, not
/// when the senders go.
fn drop_unreceived_at_receiver_drop(mode: Mode) {
    let (tx, rx) = bounded(1);
    let mut churn = mode.churn(&tx);
    let msg = Arc::new(());
    let weak = Arc::downgrade(&msg);
    tx.send(msg).unwrap();
    drop(rx);
    assert!(
        weak.upgrade().is_none(),
        "the value outlived the last receiver"
    );
    churn.stop();
    drop(tx);
}

// ---------------------------------------------------------------------------------
// 6. Thread-local destructors that use the channel
// ---------------------------------------------------------------------------------

/// Runs a closure when the thread's thread-locals are destroyed.
struct OnExit(Option<Box<dyn FnOnce()>>);

impl Drop for OnExit {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

thread_local! {
    static ON_EXIT: RefCell<Vec<OnExit>> = const { RefCell::new(Vec::new()) };
}

/// Registers `f` to run as this thread ends, from a thread-local's destructor. Called
/// before the thread first uses a channel, it runs after the channel's own
/// thread-locals are gone (destructors run in reverse order of registration); after,
/// it runs while they are still there. The closure records results rather than
/// panicking: a panic in a thread-local destructor aborts.
fn on_thread_exit(f: impl FnOnce() + 'static) {
    ON_EXIT.with(|v| v.borrow_mut().push(OnExit(Some(Box::new(f)))));
}

/// A send from a thread-local destructor, registered before and after the thread
/// first used the channel, arrives after the thread's own sends.
fn send_from_thread_local_destructor(mode: Mode) {
    let (tx, rx) = bounded(4);
    let mut churn = mode.churn(&tx);
    let results = Arc::new(Mutex::new(Vec::new()));
    for register_first in [true, false] {
        let (late, tx, results) = (tx.clone(), tx.clone(), results.clone());
        thread::spawn(move || {
            let exit = move || results.lock().unwrap().push(late.send(7));
            if register_first {
                on_thread_exit(exit);
                tx.send(1).unwrap();
            } else {
                tx.send(1).unwrap();
                on_thread_exit(exit);
            }
        })
        .join()
        .unwrap();
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [1, 7],
            "registered first: {register_first}"
        );
    }
    assert_eq!(*results.lock().unwrap(), [Ok(()), Ok(())]);
    churn.stop();
    drop(tx);
    assert_eq!(rx.recv(), Err(RecvError));
    let stats = rx.stats();
    assert_eq!((stats.sent, stats.received), (4, 4));
}

/// Receives from a thread-local destructor: a buffered value, `Empty`, then a value
/// sent while the destructor waits for it in `recv`, then `Timeout`.
fn recv_from_thread_local_destructor(mode: Mode) {
    for register_first in [true, false] {
        let (tx, rx) = bounded(4);
        let mut churn = mode.churn(&tx);
        tx.send(1).unwrap();
        let results = Arc::new(Mutex::new(Vec::new()));
        let waiting = Arc::new(AtomicBool::new(false));
        let thread = {
            let (rx, results, waiting) = (rx.clone(), results.clone(), waiting.clone());
            thread::spawn(move || {
                let probe = rx.clone();
                let exit = move || {
                    let mut r = vec![format!("{:?}", rx.try_recv())];
                    r.push(format!("{:?}", rx.try_recv()));
                    waiting.store(true, SeqCst);
                    r.push(format!("{:?}", rx.recv_timeout(HANG)));
                    r.push(format!("{:?}", rx.recv_timeout(ms(1))));
                    *results.lock().unwrap() = r;
                    // and drops its Receiver clone
                };
                // `len` is the thread's first use of the channel.
                if register_first {
                    on_thread_exit(exit);
                    assert_eq!(probe.len(), 1);
                } else {
                    assert_eq!(probe.len(), 1);
                    on_thread_exit(exit);
                }
            })
        };
        while !waiting.load(SeqCst) {
            thread::sleep(ms(1));
        }
        tx.send(2).unwrap();
        thread.join().unwrap();
        assert_eq!(
            *results.lock().unwrap(),
            ["Ok(1)", "Err(Empty)", "Ok(2)", "Err(Timeout)"],
            "registered first: {register_first}"
        );
        churn.stop();
        tx.send(3).unwrap();
        assert_eq!(rx.recv(), Ok(3));
    }
}

/// The last `Sender` is dropped by a thread-local destructor (after one more send):
/// the receiver gets everything, then sees the disconnect.
fn last_sender_dropped_by_thread_local_destructor(mode: Mode) {
    for register_first in [true, false] {
        let (tx, rx) = bounded(8);
        let mut churn = mode.churn(&tx);
        let go = Arc::new(Barrier::new(2));
        let result = Arc::new(Mutex::new(None));
        let thread = {
            let (go, result) = (go.clone(), result.clone());
            thread::spawn(move || {
                let sender = tx.clone();
                let exit = move || {
                    *result.lock().unwrap() = Some(sender.send(3));
                    drop(sender);
                };
                let mut exit = Some(exit);
                if register_first {
                    on_thread_exit(exit.take().unwrap());
                }
                for i in 0..3 {
                    tx.send(i).unwrap();
                }
                if let Some(exit) = exit {
                    on_thread_exit(exit);
                }
                drop(tx);
                // The resizer stops before this thread ends: then the destructor
                // holds the last Sender.
                go.wait();
            })
        };
        churn.stop();
        go.wait();
        assert_eq!(
            rx.iter().collect::<Vec<_>>(),
            [0, 1, 2, 3],
            "registered first: {register_first}"
        );
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        thread.join().unwrap();
        assert_eq!(*result.lock().unwrap(), Some(Ok(())));
    }
}

/// The last `Receiver` is dropped by a thread-local destructor while a sender waits
/// on the full channel: the send fails (or, if a resize gave it room first, its value
/// is dropped with the rest), the buffered values are dropped, later sends fail.
fn last_receiver_dropped_by_thread_local_destructor(mode: Mode) {
    for register_first in [true, false] {
        let ledger = Arc::new(Ledger::default());
        let (tx, rx) = bounded::<Tracked>(3);
        let mut churn = mode.churn(&tx);
        for i in 0..3 {
            tx.send(Tracked::new(i, &ledger)).unwrap();
        }
        let blocked = {
            let (tx, ledger) = (tx.clone(), ledger.clone());
            thread::spawn(move || {
                tx.send(Tracked::new(3, &ledger))
                    .map_err(|SendError(v)| v.id)
            })
        };
        if mode == Mode::Plain {
            while tx.stats().full_events == 0 {
                thread::yield_now();
            }
        }
        thread::spawn(move || {
            if register_first {
                on_thread_exit(move || drop(rx));
            } else {
                let _ = rx.len(); // the channel's thread-locals first
                on_thread_exit(move || drop(rx));
            }
        })
        .join()
        .unwrap();
        let sent = blocked.join().unwrap();
        if mode == Mode::Plain {
            assert_eq!(sent, Err(3));
        } else {
            assert!(matches!(sent, Ok(()) | Err(3)), "{sent:?}");
        }
        churn.stop();
        assert_eq!(ledger.live(), 0, "registered first: {register_first}");
        assert!(matches!(
            tx.try_send(Tracked::new(4, &ledger)),
            Err(TrySendError::Disconnected(_))
        ));
        ledger.assert_each_dropped_once("last_receiver_dropped_by_thread_local_destructor");
    }
}

// ---------------------------------------------------------------------------------
// 7. Every error variant, with values handed back and crossbeam's messages
// ---------------------------------------------------------------------------------

/// The receive-side errors and the send-side `Full`/`Timeout`.
fn receive_errors_and_full(mode: Mode) {
    let (tx, rx) = bounded::<String>(2);
    {
        // Outcomes that do not depend on the capacity, under resizes.
        let _churn = mode.churn(&tx);
        let e = rx.try_recv().unwrap_err();
        assert_eq!(e, TryRecvError::Empty);
        assert!(e.is_empty() && !e.is_disconnected());
        assert_eq!(e.to_string(), "receiving on an empty channel");
        let e = rx.recv_timeout(ms(1)).unwrap_err();
        assert_eq!(e, RecvTimeoutError::Timeout);
        assert!(e.is_timeout() && !e.is_disconnected());
        assert_eq!(e.to_string(), "timed out waiting on receive operation");
        tx.send("a".into()).unwrap();
        tx.send_timeout("b".into(), HANG).unwrap();
        assert_eq!(rx.try_recv().as_deref(), Ok("a"));
        assert_eq!(rx.recv_timeout(HANG).as_deref(), Ok("b"));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }
    // The resizer is gone: fill up to the capacity it left.
    let capacity = tx.capacity();
    for i in 0..capacity {
        tx.try_send(i.to_string()).unwrap();
    }
    assert!(tx.is_full());
    let e = tx.try_send("full".to_string()).unwrap_err();
    assert_eq!(e, TrySendError::Full("full".to_string()));
    assert!(e.is_full() && !e.is_disconnected());
    assert_eq!(e.to_string(), "sending on a full channel");
    assert!(
        !format!("{e:?}").contains("full"),
        "Debug does not show the value"
    );
    assert_eq!(e.into_inner(), "full");
    let e = tx.send_timeout("late".to_string(), ms(1)).unwrap_err();
    assert_eq!(e, SendTimeoutError::Timeout("late".to_string()));
    assert!(e.is_timeout() && !e.is_disconnected());
    assert_eq!(e.to_string(), "timed out waiting on send operation");
    assert!(
        !format!("{e:?}").contains("late"),
        "Debug does not show the value"
    );
    assert_eq!(e.into_inner(), "late");
    // The senders go: what is buffered comes out, then the disconnect, every way.
    drop(tx);
    let buffered: Vec<String> = rx.try_iter().collect();
    assert_eq!(
        buffered,
        (0..capacity).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e, TryRecvError::Disconnected);
    assert!(e.is_disconnected() && !e.is_empty());
    assert_eq!(
        e.to_string(),
        "receiving on an empty and disconnected channel"
    );
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(
        RecvError.to_string(),
        "receiving on an empty and disconnected channel"
    );
    let e = rx.recv_timeout(HANG).unwrap_err();
    assert_eq!(e, RecvTimeoutError::Disconnected);
    assert!(e.is_disconnected() && !e.is_timeout());
    assert_eq!(e.to_string(), "channel is empty and disconnected");
    assert_eq!(rx.iter().next(), None);
}

/// The send-side `Disconnected` errors (every kind of send hands the value back) and
/// both resize errors.
fn send_errors_and_resize_errors(mode: Mode) {
    let (tx, rx) = bounded::<String>(2);
    let mut churn = mode.churn(&tx);
    let e = tx.resize(0).unwrap_err();
    assert_eq!(e, ResizeError::ZeroCapacity);
    assert_eq!(
        e.to_string(),
        "cannot resize a channel to capacity 0: the capacity must be at least 1"
    );
    if mode == Mode::Plain {
        assert_eq!(tx.capacity(), 2, "a refused resize leaves the capacity");
    }
    for v in ["1", "2"] {
        tx.try_send(v.into())
            .unwrap_or_else(|e| assert!(e.is_full()));
    }
    // crossbeam's `send_after_disconnect`.
    drop(rx);
    let e = tx.send("x".into()).unwrap_err();
    assert_eq!(e, SendError("x".to_string()));
    assert_eq!(e.to_string(), "sending on a disconnected channel");
    assert!(
        !format!("{e:?}").contains('x'),
        "Debug does not show the value"
    );
    assert_eq!(e.into_inner(), "x");
    let e = tx.try_send("y".into()).unwrap_err();
    assert_eq!(e, TrySendError::Disconnected("y".to_string()));
    assert!(e.is_disconnected() && !e.is_full());
    assert_eq!(e.to_string(), "sending on a disconnected channel");
    assert!(
        !format!("{e:?}").contains('y'),
        "Debug does not show the value"
    );
    assert_eq!(e.into_inner(), "y");
    let e = tx.send_timeout("z".into(), HANG).unwrap_err();
    assert_eq!(e, SendTimeoutError::Disconnected("z".to_string()));
    assert!(e.is_disconnected() && !e.is_timeout());
    assert_eq!(e.to_string(), "sending on a disconnected channel");
    assert_eq!(e.into_inner(), "z");
    // The resizer saw the receivers go and stopped by itself.
    churn.stop();
    let e = tx.resize(8).unwrap_err();
    assert_eq!(e, ResizeError::Disconnected);
    assert_eq!(
        e.to_string(),
        "cannot resize a channel whose receivers are all gone"
    );
    assert_eq!(tx.resize(0), Err(ResizeError::ZeroCapacity));
}

/// The same script on a crossbeam bounded channel and on ours gives equal results
/// (the error types are crossbeam's; this checks the outcomes too).
fn outcomes_equal_crossbeams(mode: Mode) {
    let (cs, cr) = crossbeam_channel::bounded::<u8>(1);
    let (tx, rx) = bounded::<u8>(1);
    let mut churn = mode.churn(&tx);
    assert_eq!(rx.try_recv(), cr.try_recv());
    assert_eq!(rx.recv_timeout(ms(1)), cr.recv_timeout(ms(1)));
    churn.stop();
    tx.resize(1).unwrap(); // back to crossbeam's capacity
    assert_eq!(tx.try_send(1), cs.try_send(1));
    assert_eq!(tx.try_send(2), cs.try_send(2));
    assert_eq!(tx.send_timeout(3, ms(1)), cs.send_timeout(3, ms(1)));
    assert_eq!(rx.recv(), cr.recv());
    let (tx2, cs2) = (tx.clone(), cs.clone());
    drop((tx, cs));
    assert_eq!(tx2.send(4), cs2.send(4));
    drop((tx2, cs2));
    assert_eq!(rx.try_recv(), cr.try_recv());
    assert_eq!(rx.recv(), cr.recv());
    assert_eq!(rx.recv_timeout(ms(1)), cr.recv_timeout(ms(1)));

    let (cs, cr) = crossbeam_channel::bounded::<u8>(1);
    let (tx, rx) = bounded::<u8>(1);
    let mut churn = mode.churn(&tx);
    drop((rx, cr));
    assert_eq!(tx.send(5), cs.send(5));
    assert_eq!(tx.try_send(6), cs.try_send(6));
    assert_eq!(tx.send_timeout(7, ms(1)), cs.send_timeout(7, ms(1)));
    churn.stop();
}

// ---------------------------------------------------------------------------------
// 8. Stats counters
// ---------------------------------------------------------------------------------

/// `sent`, `received` (and `resizes`) never go backwards while values flow and the
/// channel is resized, as sampled from a third thread; at the end they are exact.
fn stats_counters_never_go_backwards(mode: Mode) {
    const PER_SENDER: usize = if cfg!(miri) { 100 } else { 20_000 };
    const SENDERS: usize = 2;
    let total = (PER_SENDER * SENDERS) as u64;
    let (tx, rx) = bounded(4);
    let mut churn = mode.churn(&tx);
    let done = AtomicBool::new(false);
    let resizes = thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut last = rx.stats();
            let mut samples = 0u64;
            while !done.load(SeqCst) {
                let now = rx.stats();
                samples += 1;
                assert!(
                    now.sent >= last.sent,
                    "sent went back from {} to {} (sample {samples}: {last:?} then {now:?})",
                    last.sent,
                    now.sent
                );
                assert!(
                    now.received >= last.received,
                    "received went back from {} to {} (sample {samples})",
                    last.received,
                    now.received
                );
                assert!(now.resizes >= last.resizes, "resizes went back");
                assert!(now.sent <= total && now.received <= total, "{now:?}");
                last = now;
                // Let the others run on a machine with few cores (samples stay many).
                if samples.is_multiple_of(256) {
                    thread::yield_now();
                }
            }
            samples
        });
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let tx = tx.clone();
                s.spawn(move || (0..PER_SENDER).for_each(|i| tx.send(i).unwrap()))
            })
            .collect();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || rx.iter().count())
            })
            .collect();
        senders.into_iter().for_each(|h| h.join().unwrap());
        let resizes = churn.stop();
        drop(tx);
        let received: usize = receivers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(received as u64, total);
        done.store(true, SeqCst);
        sampler.join().unwrap();
        resizes
    });
    let end = rx.stats();
    assert_eq!(
        (end.sent, end.received, end.len),
        (total, total, 0),
        "{end:?}"
    );
    assert_eq!(
        end.resizes, resizes,
        "every resize that changed the capacity, counted"
    );
}

/// The high-water mark is the most values ever buffered at once: it never goes
/// down, also when a `stats()` call is what measured the peak.
fn high_water_mark_never_goes_backwards(mode: Mode) {
    let (tx, rx) = bounded(64);
    let _churn = mode.churn(&tx);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    let peak = tx.stats().high_water_mark;
    assert_eq!(peak, 5);
    for _ in 0..4 {
        rx.recv().unwrap();
    }
    let later = tx.stats().high_water_mark;
    assert!(
        later >= peak,
        "high_water_mark went back from {peak} to {later} after values were received"
    );
}

/// The documented sampling: "measured on the first ... send of each thread": one
/// value sent and received leaves a high-water mark of 1.
fn high_water_mark_counts_the_first_send(mode: Mode) {
    let (tx, rx) = bounded(8);
    let _churn = mode.churn(&tx);
    tx.send(()).unwrap();
    rx.recv().unwrap();
    assert_eq!(tx.stats().high_water_mark, 1);
}

// ---------------------------------------------------------------------------------
// 9. Per-sender FIFO
// ---------------------------------------------------------------------------------

/// Several senders and receivers under resizes: each value arrives exactly once, and
/// each receiver sees each sender's values in send order.
fn per_sender_fifo(mode: Mode) {
    const PER_SENDER: usize = if cfg!(miri) { 100 } else { 8_000 };
    const SENDERS: usize = 3;
    const RECEIVERS: usize = 3;
    let (tx, rx) = bounded::<(usize, usize)>(2);
    let mut churn = mode.churn(&tx);
    let streams = thread::scope(|s| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|id| {
                let tx = tx.clone();
                s.spawn(move || (0..PER_SENDER).for_each(|seq| tx.send((id, seq)).unwrap()))
            })
            .collect();
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|r| {
                let rx = rx.clone();
                s.spawn(move || {
                    let mut last = [None::<usize>; SENDERS];
                    let mut got = Vec::new();
                    for (id, seq) in rx.iter() {
                        if let Some(prev) = last[id] {
                            assert!(
                                seq > prev,
                                "receiver {r}: sender {id}'s value {seq} after {prev}"
                            );
                        }
                        last[id] = Some(seq);
                        got.push((id, seq));
                    }
                    got
                })
            })
            .collect();
        senders.into_iter().for_each(|h| h.join().unwrap());
        churn.stop();
        drop(tx);
        receivers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut all: Vec<_> = streams.into_iter().flatten().collect();
    all.sort_unstable();
    let expected: Vec<_> = (0..SENDERS)
        .flat_map(|id| (0..PER_SENDER).map(move |seq| (id, seq)))
        .collect();
    assert!(all == expected, "values lost or duplicated");
}

// ---------------------------------------------------------------------------------
// Smaller patterns from crossbeam and std
// ---------------------------------------------------------------------------------

/// crossbeam's `recv_in_send`: the value of a send is computed by receiving from the
/// same full channel, which makes the room the send needs.
fn recv_in_send(mode: Mode) {
    let (tx, rx) = bounded(1);
    let _churn = mode.churn(&tx);
    tx.send(1).unwrap();
    tx.send({
        assert_eq!(rx.recv(), Ok(1));
        2
    })
    .unwrap();
    assert_eq!(rx.recv(), Ok(2));
}

/// crossbeam's `channel_through_channel`: each channel carries the receiver of the
/// next (and, resizing, is resized before it is used).
fn channel_through_channel(mode: Mode) {
    const COUNT: usize = if cfg!(miri) { 50 } else { 500 };
    type T = Box<dyn Any + Send>;
    let (s, r) = bounded::<T>(1);
    let mut churn = mode.churn(&s);
    thread::scope(|scope| {
        scope.spawn(move || {
            let mut s = s;
            for _ in 0..COUNT {
                progress();
                let (new_s, new_r) = bounded::<T>(1);
                if mode == Mode::Resizing {
                    new_s.resize(2).unwrap();
                    new_s.resize(1).unwrap();
                }
                let new_r: T = Box::new(Some(new_r));
                s.send(new_r).unwrap();
                s = new_s;
            }
        });
        scope.spawn(move || {
            let mut r = r;
            for _ in 0..COUNT {
                progress();
                r = r
                    .recv()
                    .unwrap()
                    .downcast_mut::<Option<Receiver<T>>>()
                    .unwrap()
                    .take()
                    .unwrap();
            }
        });
    });
    churn.stop();
}

/// crossbeam's `stress_oneshot`: a fresh channel, one send and one receive on two
/// threads, many times.
fn stress_oneshot(mode: Mode) {
    let count = match (cfg!(miri), mode) {
        (true, _) => 20,
        (false, Mode::Plain) => 2_000,
        (false, Mode::Resizing) => 300,
    };
    for _ in 0..count {
        progress();
        let (s, r) = bounded(1);
        let _churn = mode.churn(&s);
        thread::scope(|scope| {
            scope.spawn(|| r.recv().unwrap());
            scope.spawn(|| s.send(0).unwrap());
        });
    }
}

/// crossbeam's `recv_after_disconnect` with the values spread over generations.
fn recv_after_disconnect(mode: Mode) {
    let (s, r) = bounded(100);
    let mut churn = mode.churn(&s);
    s.send(1).unwrap();
    s.send(2).unwrap();
    s.send(3).unwrap();
    churn.stop();
    drop(s);
    assert_eq!(r.recv(), Ok(1));
    assert_eq!(r.recv(), Ok(2));
    assert_eq!(r.recv(), Ok(3));
    assert_eq!(r.recv(), Err(RecvError));
}

// ---------------------------------------------------------------------------------
// Every test, twice
// ---------------------------------------------------------------------------------

macro_rules! edge_suite {
    ($($name:ident),* $(,)?) => {
        mod plain {
            $(
                #[test]
                fn $name() {
                    super::run(super::Mode::Plain, stringify!($name), super::$name);
                }
            )*
        }
        mod resizing {
            $(
                #[test]
                fn $name() {
                    super::run(super::Mode::Resizing, stringify!($name), super::$name);
                }
            )*
        }
    };
}

edge_suite!(
    linearizable,
    linearizable_recv_timeout,
    completed_send_is_visible_to_another_thread,
    send_races_last_receiver_drop,
    blocked_senders_fail_when_the_receiver_goes,
    sends_end_once_the_receiver_is_gone,
    stress_send_vs_receiver_drop,
    reentrant_drop_inspects_the_channel,
    reentrant_drop_sends,
    reentrant_drop_resizes,
    reentrant_drop_clones_a_sender,
    reentrant_drop_holds_the_last_sender,
    reentrant_drop_inspects_then_drops_the_last_sender,
    panicking_drop_reaches_the_receivers_drop,
    panicking_drop_with_the_receiver_as_last_handle,
    panicking_drop_races_a_send,
    drops,
    drops_across_generations,
    destructors,
    drop_unreceived_at_receiver_drop,
    send_from_thread_local_destructor,
    recv_from_thread_local_destructor,
    last_sender_dropped_by_thread_local_destructor,
    last_receiver_dropped_by_thread_local_destructor,
    receive_errors_and_full,
    send_errors_and_resize_errors,
    outcomes_equal_crossbeams,
    stats_counters_never_go_backwards,
    high_water_mark_never_goes_backwards,
    high_water_mark_counts_the_first_send,
    per_sender_fifo,
    recv_in_send,
    channel_through_channel,
    stress_oneshot,
    recv_after_disconnect,
);
