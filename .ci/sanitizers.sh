#!/usr/bin/env bash
# Miri and ThreadSanitizer over pipeline-core's channel, hazard, bus and pool tests.
# Fails on any report: Miri stops a test at the first undefined behaviour (or leak) and
# fails it; ThreadSanitizer makes a test binary exit with 66 if it reported anything.
#
# Needs a nightly toolchain with miri and rust-src (installed below when missing; an
# installed nightly is used as it is, not updated). Set PIPELINE_NIGHTLY to pin another
# one (for example nightly-2026-05-19). Each phase is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n=== %s (%ss since start)\n' "$1" "$SECONDS"; }
NIGHTLY=${PIPELINE_NIGHTLY:-nightly}
HOST=$(rustc -vV | sed -n 's/^host: //p')
# Where the two builds go (each its own directory: different flags, different std).
OUT=${PIPELINE_SANITIZER_TARGET:-target}

step "sanitizers: install $NIGHTLY with miri and rust-src"
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$NIGHTLY" --profile minimal
fi
rustup component add miri rust-src --toolchain "$NIGHTLY"
rustc +"$NIGHTLY" --version
cargo +"$NIGHTLY" miri --version

# ---------------------------------------------------------------------------------
# Miri: the unit tests (channel, hazard, bus, pool internals) and the integration tests
# that finish in reasonable time under the interpreter (the stress tests shrink their
# sizes under cfg(miri)). The fences are always plain `fence(SeqCst)` under Miri
# (hazard/fence.rs). Permissive provenance: the hazard protocol keeps addresses in
# `AtomicUsize` words and turns them back into pointers, which Miri accepts but warns
# about once per site; it then cannot check provenance through those casts.
# Miri's clock is virtual under isolation (5 us per basic block, any thread), so
# timeouts are not a machine-speed problem there, only a work-size one.
# Not run: channel_edges (8 min), pool and pool_stress (7 min, and their shutdown
# deadlines pass in virtual time). Skipped, too slow or not meaningful under Miri:
MIRI_SKIP=(
  --skip mpmc_every_value_once                   # channel_contract: 20 000 values, 8 threads
  --skip send_blocks_until_room                  # channel_contract: reads /proc (isolation)
  --skip block_policy_is_lossless_back_pressure  # bus: 2/3 of the file's time
  --skip admissions_match_the_rate_exactly_over_ten_simulated_seconds  # bus_rate: 10 001 rounds
  --skip a_stalled_signal_receiver_never_holds_publishing_up  # bus_signals: 30 s watchdog
)
step "miri: pipeline-core unit tests and the channel and bus integration tests"
MIRIFLAGS="-Zmiri-permissive-provenance" CARGO_TARGET_DIR="$OUT/miri" \
  timeout 12m cargo +"$NIGHTLY" miri test -p pipeline-core \
  --lib --test channel_contract --test channel_resize --test channel_stress \
  --test bus --test bus_rate --test bus_signals --test bus_stress --test bus_reentrancy \
  -- "${MIRI_SKIP[@]}"

# ---------------------------------------------------------------------------------
# ThreadSanitizer: std rebuilt with the sanitizer (-Zbuild-std), every test of
# pipeline-core (with the tokio feature: the async pool's tests too) but the doc tests
# and the loom models (empty without their cfg), with
# the fences forced to `fence(SeqCst)` (TSAN models neither membarrier nor its IPIs).
# halt_on_error=0 prints every report; the binary still exits with 66 if there was one.
step "thread sanitizer: pipeline-core tests (fence fallback)"
# No suppressions: std and crossbeam-channel, rebuilt with the sanitizer, report nothing.
RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR="$OUT/tsan" \
  PIPELINE_FENCE_FALLBACK=1 TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1" \
  timeout 18m cargo +"$NIGHTLY" test -Zbuild-std --target "$HOST" -p pipeline-core \
  --features tokio --lib --tests

step "sanitizers: done"
