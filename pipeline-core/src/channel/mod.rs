//! A bounded MPMC channel whose capacity changes while it is in use.
