//! User code that the bus runs from inside a publish (here a `tracing` subscriber that
//! sees the saturation signal) may use the same bus: remove the very subscription
//! being published to and publish again. On the fast path the route list is read under
//! a sticky hazard that the nested publish moves, freeing the old list and with it the
//! last reference to the route. That must happen only after the outer publish has
//! stopped using the route (issue 13, finding 6): before the fix the signal was raised
//! inside `Route::try_deliver_plain(&self)`, so the route was freed while a function
//! still held `&self`. Natively nothing read it afterwards, so the test passed; under
//! Miri (`cargo +nightly miri test -p pipeline-core --test bus_reentrancy`) that is
//! undefined behaviour (a protected reference deallocated) and fails.

use pipeline_core::bus::{Bus, Publisher, Subscription, SubscriptionConfig};
use std::sync::{Arc, Mutex};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the handler uses once, then drops.
type Once = Arc<Mutex<Option<(Subscription<u32>, Publisher<u32>)>>>;

/// On the first bus signal: removes the subscription and publishes again.
struct Reenter {
    state: Once,
    nested: Arc<Mutex<Vec<bool>>>,
}

impl Subscriber for Reenter {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() != "pipeline_core::signal::sender" {
            return;
        }
        let taken = self.state.lock().unwrap().take();
        if let Some((subscription, publisher)) = taken {
            subscription.unsubscribe();
            // The route list changed: this publish moves the thread's sticky hazard
            // to the new list, which frees the old one and the route it held.
            let ok = publisher.try_publish(99).is_ok();
            self.nested.lock().unwrap().push(ok);
            drop(subscription);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_signal_handler_that_removes_the_route_and_publishes() {
    let bus = Bus::<u32>::new();
    let subscription = bus
        .subscribe(SubscriptionConfig::new("only").capacity(8))
        .unwrap();
    let publisher = bus.publisher();
    let state = Arc::new(Mutex::new(Some((subscription, bus.publisher()))));
    let nested = Arc::new(Mutex::new(Vec::new()));
    let reenter = Reenter {
        state: state.clone(),
        nested: nested.clone(),
    };
    let mut accepted = 0;
    tracing::subscriber::with_default(reenter, || {
        // Fill the buffer: a sampled send crosses the saturation level and raises it.
        for i in 0..8 {
            if publisher.try_publish(i).is_ok() {
                accepted += 1;
            }
        }
    });
    assert!(
        state.lock().unwrap().is_none(),
        "no saturation signal was raised"
    );
    // The nested publish found no subscription (it was just removed): nothing to do.
    assert_eq!(*nested.lock().unwrap(), [true]);
    assert!(accepted >= 1);
}
