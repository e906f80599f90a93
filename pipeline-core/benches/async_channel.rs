//! The resizable channel's async API against `tokio::sync::mpsc` (bounded, the async
//! anchor) and flume's async API, in one run.
//!
//! - `async_single_task`: one task sends `cap` values with `send_async`, then receives
//!   them with `recv_async` (no wait ever happens): the per-value cost of the futures
//!   on top of the channel.
//! - `async_2x2`: 2 producer tasks and 2 consumer tasks move `MESSAGES` values on a
//!   multi-thread runtime, at capacity 64 and 1024. tokio's receiver is single-consumer,
//!   so its two consumers share it behind a `tokio::sync::Mutex` (what a user of
//!   tokio's mpsc would do).
//! - `interleaved` (printed, not a criterion group): the single-task case run
//!   alternately 40 times each (ratio of the fastest runs), and the 2x2 cases run
//!   alternately 15 times each (median of the per-round ratios).
//!
//! Run: `cargo bench -p pipeline-core --bench async_channel`. Ratios are reported as
//! ours / theirs in time (below 1.0: faster than them).

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const MESSAGES: u64 = 100_000;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Resizable,
    Tokio,
    Flume,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Resizable => "resizable",
            Kind::Tokio => "tokio_mpsc",
            Kind::Flume => "flume",
        }
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// `rounds` rounds of: send `cap` values, then receive them, on one task.
async fn single_task(kind: Kind, cap: usize, rounds: usize) {
    match kind {
        Kind::Resizable => {
            let (tx, rx) = pipeline_core::channel::bounded(cap);
            for _ in 0..rounds {
                for i in 0..cap as u64 {
                    tx.send_async(black_box(i)).await.unwrap();
                }
                for _ in 0..cap {
                    black_box(rx.recv_async().await.unwrap());
                }
            }
        }
        Kind::Tokio => {
            let (tx, mut rx) = tokio::sync::mpsc::channel(cap);
            for _ in 0..rounds {
                for i in 0..cap as u64 {
                    tx.send(black_box(i)).await.unwrap();
                }
                for _ in 0..cap {
                    black_box(rx.recv().await.unwrap());
                }
            }
        }
        Kind::Flume => {
            let (tx, rx) = flume::bounded(cap);
            for _ in 0..rounds {
                for i in 0..cap as u64 {
                    tx.send_async(black_box(i)).await.unwrap();
                }
                for _ in 0..cap {
                    black_box(rx.recv_async().await.unwrap());
                }
            }
        }
    }
}

/// 2 producer tasks x 2 consumer tasks moving `MESSAGES` values; returns the time.
fn two_by_two(rt: &Runtime, kind: Kind, cap: usize) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        let per = MESSAGES / 2;
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        match kind {
            Kind::Resizable => {
                let (tx, rx) = pipeline_core::channel::bounded(cap);
                for p in 0..2 {
                    let tx = tx.clone();
                    producers.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send_async(p * per + i).await.unwrap();
                        }
                    }));
                }
                for _ in 0..2 {
                    let rx = rx.clone();
                    consumers.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        while rx.recv_async().await.is_ok() {
                            n += 1;
                        }
                        n
                    }));
                }
            }
            Kind::Tokio => {
                let (tx, rx) = tokio::sync::mpsc::channel(cap);
                let rx = Arc::new(tokio::sync::Mutex::new(rx));
                for p in 0..2 {
                    let tx = tx.clone();
                    producers.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send(p * per + i).await.unwrap();
                        }
                    }));
                }
                for _ in 0..2 {
                    let rx = rx.clone();
                    consumers.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        while rx.lock().await.recv().await.is_some() {
                            n += 1;
                        }
                        n
                    }));
                }
            }
            Kind::Flume => {
                let (tx, rx) = flume::bounded(cap);
                for p in 0..2 {
                    let tx = tx.clone();
                    producers.push(tokio::spawn(async move {
                        for i in 0..per {
                            tx.send_async(p * per + i).await.unwrap();
                        }
                    }));
                }
                for _ in 0..2 {
                    let rx = rx.clone();
                    consumers.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        while rx.recv_async().await.is_ok() {
                            n += 1;
                        }
                        n
                    }));
                }
            }
        }
        for p in producers {
            p.await.unwrap();
        }
        let mut received = 0;
        for c in consumers {
            received += c.await.unwrap();
        }
        assert_eq!(received, MESSAGES);
        start.elapsed()
    })
}

const KINDS: [Kind; 3] = [Kind::Resizable, Kind::Tokio, Kind::Flume];

fn bench_single_task(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("async_single_task");
    for cap in [64usize, 1024] {
        group.throughput(Throughput::Elements(cap as u64));
        for kind in KINDS {
            group.bench_with_input(BenchmarkId::new(kind.name(), cap), &cap, |b, &cap| {
                b.iter(|| rt.block_on(single_task(kind, cap, 1)))
            });
        }
    }
    group.finish();
}

fn bench_two_by_two(c: &mut Criterion) {
    let rt = multi_thread();
    let mut group = c.benchmark_group("async_2x2");
    group.sample_size(10);
    group.throughput(Throughput::Elements(MESSAGES));
    for cap in [64usize, 1024] {
        for kind in KINDS {
            group.bench_with_input(BenchmarkId::new(kind.name(), cap), &cap, |b, &cap| {
                b.iter_custom(|iters| (0..iters).map(|_| two_by_two(&rt, kind, cap)).sum())
            });
        }
    }
    group.finish();
}

/// The single-task case, the three channels alternately, `rounds` times each; prints
/// the fastest run of each and the ratios of the fastest runs.
fn interleaved_single_task(rounds: usize) {
    let rt = current_thread();
    for cap in [64usize, 1024] {
        let per_run = (1 << 20) / cap;
        let time = |kind| {
            let start = Instant::now();
            rt.block_on(single_task(kind, cap, per_run));
            start.elapsed().as_secs_f64() / (per_run * cap) as f64 * 1e9
        };
        let mut best = [f64::MAX; 3];
        for _ in 0..rounds {
            for (i, kind) in KINDS.into_iter().enumerate() {
                best[i] = best[i].min(time(kind));
            }
        }
        println!(
            "interleaved/async_single_task/cap{cap}: resizable {:.1} ns, tokio mpsc {:.1} ns, flume {:.1} ns per value pair; resizable/tokio {:.2}, resizable/flume {:.2}",
            best[0],
            best[1],
            best[2],
            best[0] / best[1],
            best[0] / best[2]
        );
    }
}

/// The 2x2 cases, the three channels alternately, `rounds` times each; prints the
/// median of the per-round time ratios.
fn interleaved_two_by_two(rounds: usize) {
    let rt = multi_thread();
    for cap in [64usize, 1024] {
        for kind in KINDS {
            two_by_two(&rt, kind, cap); // warm-up, discarded
        }
        let (mut vs_tokio, mut vs_flume, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let times: Vec<f64> = KINDS
                .into_iter()
                .map(|kind| two_by_two(&rt, kind, cap).as_secs_f64())
                .collect();
            ours.push(times[0]);
            vs_tokio.push(times[0] / times[1]);
            vs_flume.push(times[0] / times[2]);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let per_value = median(&mut ours) / MESSAGES as f64 * 1e9;
        println!(
            "interleaved/async_2x2/cap{cap}: resizable {per_value:.0} ns per value (median); median time ratio resizable/tokio {:.2}, resizable/flume {:.2}",
            median(&mut vs_tokio),
            median(&mut vs_flume)
        );
    }
}

criterion_group!(benches, bench_single_task, bench_two_by_two);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Some(test_mode) = common::interleaved_mode() {
        interleaved_single_task(if test_mode { 1 } else { 40 });
        interleaved_two_by_two(if test_mode { 1 } else { 15 });
    }
}
