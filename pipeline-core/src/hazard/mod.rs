//! Per-thread hazard slots and asymmetric fences: how the hot paths of the channel and
//! the bus publish "I am using this" and count without any locked instruction.
//!
//! - [`slots`]: a [`Registry`] per shared object (a channel, a bus) holds one
//!   [`Slot`] per thread that uses it: a few *hazards* (the address of what the thread
//!   is inside, or 0) and a few counters that only the owning thread writes. Rare
//!   paths scan the hazards; readers add the counters up.
//! - [`fence`]: [`light`] for the hot side (free where Linux's `membarrier` works) and
//!   [`heavy`] for the rare side; together they order memory like two `fence(SeqCst)`.
//!
//! The pattern, on the hot side: store the address in a hazard, [`light`], read the
//! shared pointer again (equal: protected; else withdraw and retry); leave by storing 0,
//! [`light`], and reading a "work pending" word. On the rare side: change the pointer
//! (or record pending work), [`heavy`], scan the hazards. Either the scan sees the
//! hazard, or the hot side sees the change. docs/architecture.md walks through it for
//! the channel.

pub(crate) mod cell;
pub(crate) mod fence;
pub(crate) mod slots;

pub(crate) use fence::{heavy, light};
pub(crate) use slots::{Registry, Slot};
