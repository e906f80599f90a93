//! The bus against raw crossbeam-channel and the resizable channel alone, in one run.
//!
//! - `single_thread/<n>sub`: publish `cap` events to `n` subscriptions, then receive
//!   them all, on one thread: the per-event cost of the bus, stable on a noisy machine.
//!   The baselines send the same events to `n` channels (one send per channel, as the
//!   bus does) and receive them.
//!   `bus_async` is the bus again with each event published by `publish_async`,
//!   polled once by hand (it never waits here): what the async fast path adds.
//! - `threaded/<n>sub`: one publisher thread, one receiver thread per subscription,
//!   `MESSAGES` events.
//!
//! - `interleaved` (printed, not a criterion group): the single-thread cases run
//!   alternately 40 times each, crossbeam, resizable and bus in turn; the ratios of the
//!   fastest runs (the least disturbed by a shared machine).
//!
//! Run: `cargo bench -p pipeline-core --bench bus`. What the bus adds is the ratio of
//! `bus` to `resizable`; `resizable` to `crossbeam` is the channel's own cost.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use pipeline_core::bus::{Bus, Publisher, Subscription, SubscriptionConfig};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

const MESSAGES: usize = 50_000;

/// `n` channels (or subscriptions) fed the same events, behind one interface. The
/// adapters are `#[inline(always)]`, for all three, so the measured loop is the code
/// under test and not a call into an out-of-line adapter (see benches/channel.rs).
trait FanOut: Sized {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn make(n: usize, cap: usize) -> (Self::Tx, Vec<Self::Rx>);
    fn send(tx: &Self::Tx, v: u64);
    fn try_recv(rx: &Self::Rx) -> Option<u64>;
    fn recv(rx: &Self::Rx) -> Option<u64>;
}

struct Crossbeam;
impl FanOut for Crossbeam {
    type Tx = Vec<crossbeam_channel::Sender<u64>>;
    type Rx = crossbeam_channel::Receiver<u64>;
    fn make(n: usize, cap: usize) -> (Self::Tx, Vec<Self::Rx>) {
        (0..n).map(|_| crossbeam_channel::bounded(cap)).unzip()
    }
    #[inline(always)]
    fn send(tx: &Self::Tx, v: u64) {
        tx.iter().for_each(|tx| tx.send(v).unwrap());
    }
    #[inline(always)]
    fn try_recv(rx: &Self::Rx) -> Option<u64> {
        rx.try_recv().ok()
    }
    #[inline(always)]
    fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv().ok()
    }
}

struct Resizable;
impl FanOut for Resizable {
    type Tx = Vec<pipeline_core::channel::Sender<u64>>;
    type Rx = pipeline_core::channel::Receiver<u64>;
    fn make(n: usize, cap: usize) -> (Self::Tx, Vec<Self::Rx>) {
        (0..n).map(|_| pipeline_core::channel::bounded(cap)).unzip()
    }
    #[inline(always)]
    fn send(tx: &Self::Tx, v: u64) {
        tx.iter().for_each(|tx| tx.send(v).unwrap());
    }
    #[inline(always)]
    fn try_recv(rx: &Self::Rx) -> Option<u64> {
        rx.try_recv().ok()
    }
    #[inline(always)]
    fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv().ok()
    }
}

struct BusFanOut;
impl FanOut for BusFanOut {
    /// The bus is kept alive by the publisher.
    type Tx = Publisher<u64>;
    type Rx = Subscription<u64>;
    fn make(n: usize, cap: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let bus = Bus::new();
        let subs = (0..n)
            .map(|i| {
                bus.subscribe(SubscriptionConfig::new(format!("s{i}")).capacity(cap))
                    .unwrap()
            })
            .collect();
        (bus.publisher(), subs)
    }
    #[inline(always)]
    fn send(tx: &Self::Tx, v: u64) {
        tx.publish(v).unwrap();
    }
    #[inline(always)]
    fn try_recv(rx: &Self::Rx) -> Option<u64> {
        rx.try_recv().ok()
    }
    #[inline(always)]
    fn recv(rx: &Self::Rx) -> Option<u64> {
        rx.recv().ok()
    }
}

/// The bus, publishing with `publish_async` polled once (no runtime).
struct BusAsyncFanOut;
impl FanOut for BusAsyncFanOut {
    type Tx = Publisher<u64>;
    type Rx = Subscription<u64>;
    fn make(n: usize, cap: usize) -> (Self::Tx, Vec<Self::Rx>) {
        BusFanOut::make(n, cap)
    }
    #[inline(always)]
    fn send(tx: &Self::Tx, v: u64) {
        let mut publish = tx.publish_async(v);
        match Pin::new(&mut publish).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => unreachable!("the single-thread cases always have room"),
        }
    }
    #[inline(always)]
    fn try_recv(rx: &Self::Rx) -> Option<u64> {
        BusFanOut::try_recv(rx)
    }
    #[inline(always)]
    fn recv(rx: &Self::Rx) -> Option<u64> {
        BusFanOut::recv(rx)
    }
}

fn single_thread<F: FanOut>(n: usize, cap: usize) -> impl FnMut() {
    let (tx, rxs) = F::make(n, cap);
    move || {
        for i in 0..cap as u64 {
            F::send(&tx, i);
        }
        for rx in &rxs {
            for _ in 0..cap {
                black_box(F::try_recv(rx).unwrap());
            }
        }
    }
}

/// One sending thread, one receiving thread per channel; returns the elapsed time.
fn threaded<F: FanOut>(n: usize, cap: usize) -> Duration {
    let (tx, rxs) = F::make(n, cap);
    let start = Instant::now();
    thread::scope(|s| {
        for rx in rxs {
            s.spawn(move || {
                for _ in 0..MESSAGES {
                    black_box(F::recv(&rx).unwrap());
                }
            });
        }
        s.spawn(move || (0..MESSAGES as u64).for_each(|i| F::send(&tx, i)));
    });
    start.elapsed()
}

fn bench_single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("single_thread");
    for n in [1, 4] {
        for cap in [64, 1024] {
            group.throughput(Throughput::Elements(cap as u64));
            let id = |name| BenchmarkId::new(name, format!("{n}sub/cap{cap}"));
            group.bench_function(id("crossbeam"), |b| {
                b.iter(single_thread::<Crossbeam>(n, cap))
            });
            group.bench_function(id("resizable"), |b| {
                b.iter(single_thread::<Resizable>(n, cap))
            });
            group.bench_function(id("bus"), |b| b.iter(single_thread::<BusFanOut>(n, cap)));
            group.bench_function(id("bus_async"), |b| {
                b.iter(single_thread::<BusAsyncFanOut>(n, cap))
            });
        }
    }
    group.finish();
}

fn bench_threaded(c: &mut Criterion) {
    let mut group = c.benchmark_group("threaded");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    for n in [1, 4] {
        let cap = 1024;
        let id = |name| BenchmarkId::new(name, format!("{n}sub/cap{cap}"));
        group.bench_function(id("crossbeam"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| threaded::<Crossbeam>(n, cap)).sum())
        });
        group.bench_function(id("resizable"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| threaded::<Resizable>(n, cap)).sum())
        });
        group.bench_function(id("bus"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| threaded::<BusFanOut>(n, cap)).sum())
        });
    }
    group.finish();
}

/// The single-thread cases again, the four alternately, `rounds` times each; prints
/// the per-event times of the fastest runs and their ratios to crossbeam (and of
/// `bus_async` to `bus`).
fn interleaved_single_thread(rounds: usize) {
    for n in [1, 4] {
        for cap in [64usize, 1024] {
            let per_run = (1 << 20) / (cap * n);
            let time = |mut f: Box<dyn FnMut()>| {
                let start = Instant::now();
                (0..per_run).for_each(|_| f());
                start.elapsed().as_secs_f64() / (per_run * cap) as f64 * 1e9
            };
            let mut best = [f64::MAX; 4];
            for _ in 0..rounds {
                best[0] = best[0].min(time(Box::new(single_thread::<Crossbeam>(n, cap))));
                best[1] = best[1].min(time(Box::new(single_thread::<Resizable>(n, cap))));
                best[2] = best[2].min(time(Box::new(single_thread::<BusFanOut>(n, cap))));
                best[3] = best[3].min(time(Box::new(single_thread::<BusAsyncFanOut>(n, cap))));
            }
            let [raw, channel, bus, bus_async] = best;
            println!(
                "interleaved/single_thread/{n}sub/cap{cap}: per event crossbeam {raw:.1} ns, \
                 resizable {channel:.1} ns, bus {bus:.1} ns, bus_async {bus_async:.1} ns; \
                 ratio to crossbeam: resizable {:.2}, bus {:.2}, bus_async {:.2}; \
                 bus_async to bus {:.2}",
                channel / raw,
                bus / raw,
                bus_async / raw,
                bus_async / bus
            );
        }
    }
}

criterion_group!(benches, bench_single_thread, bench_threaded);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Some(test_mode) = common::interleaved_mode() {
        interleaved_single_thread(if test_mode { 1 } else { 40 });
    }
}
