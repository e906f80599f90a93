//! The single-thread send+receive loop of the channel benchmark as a plain binary, for
//! instruction counts that do not depend on the machine's load:
//!
//! ```sh
//! cargo build --release -p pipeline-core --example pair_cost
//! for kind in crossbeam resizable bus; do for n in 1000 2000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pair_cost $kind $n 2>&1 | grep -o 'refs: .*'
//! done; done
//! ```
//!
//! (`crossbeam-blocking` and `resizable-blocking` use `send`/`recv` instead of
//! `try_send`/`try_recv`.) Instructions per value pair = (refs at 2000 rounds - refs at 1000) / (1000 x 64):
//! the difference cancels start-up and teardown. Each round sends 64 values into a
//! channel of capacity 64, then receives them.

use std::hint::black_box;

const CAP: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "resizable".into());
    let rounds: usize = args.next().map_or(1000, |n| n.parse().expect("rounds"));
    match kind.as_str() {
        "crossbeam" => {
            let (tx, rx) = crossbeam_channel::bounded(CAP);
            for _ in 0..rounds {
                for i in 0..CAP {
                    tx.try_send(black_box(i)).unwrap();
                }
                for _ in 0..CAP {
                    black_box(rx.try_recv().unwrap());
                }
            }
        }
        "resizable" => {
            let (tx, rx) = pipeline_core::channel::bounded(CAP);
            for _ in 0..rounds {
                for i in 0..CAP {
                    tx.try_send(black_box(i)).unwrap();
                }
                for _ in 0..CAP {
                    black_box(rx.try_recv().unwrap());
                }
            }
        }
        "crossbeam-blocking" => {
            let (tx, rx) = crossbeam_channel::bounded(CAP);
            for _ in 0..rounds {
                for i in 0..CAP {
                    tx.send(black_box(i)).unwrap();
                }
                for _ in 0..CAP {
                    black_box(rx.recv().unwrap());
                }
            }
        }
        "resizable-blocking" => {
            let (tx, rx) = pipeline_core::channel::bounded(CAP);
            for _ in 0..rounds {
                for i in 0..CAP {
                    tx.send(black_box(i)).unwrap();
                }
                for _ in 0..CAP {
                    black_box(rx.recv().unwrap());
                }
            }
        }
        "bus" => {
            let bus = pipeline_core::bus::Bus::<usize>::new();
            let sub = bus
                .subscribe(pipeline_core::bus::SubscriptionConfig::new("s").capacity(CAP))
                .unwrap();
            let publisher = bus.publisher();
            for _ in 0..rounds {
                for i in 0..CAP {
                    publisher.try_publish(black_box(i)).unwrap();
                }
                for _ in 0..CAP {
                    black_box(sub.try_recv().unwrap());
                }
            }
        }
        other => panic!(
            "unknown kind {other:?}: crossbeam, resizable, crossbeam-blocking, resizable-blocking or bus"
        ),
    }
}
