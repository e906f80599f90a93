//! std or loom sync types
