#!/usr/bin/env bash
# Packaging checks, run by .ci/run (or alone: `bash .ci/packaging.sh`):
#   1. cargo-deny: licenses, bans (duplicate versions, wildcards) and sources, as
#      deny.toml says; then the RustSec advisories when their database can be fetched.
#   2. The declared MSRV (`rust-version` in Cargo.toml) builds the workspace.
#   3. `cargo package` of every publishable crate, verified: each .crate file builds on
#      its own, the controller and the adapters against the packaged pipeline-core
#      (cargo stages the workspace's crates in a local registry, so nothing has to be on
#      crates.io; the crates.io index must be reachable for the other dependencies).
#   4. Each package holds its licenses and README.
#   5. The docs as docs.rs builds them (nightly, `--cfg docsrs`: the feature labels),
#      where a nightly toolchain is installed (.ci/sanitizers.sh installs one).
# Everything builds under target/ (target/msrv, target/docsrs); nothing else is written
# but the tools (cargo-deny, the MSRV toolchain) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n--- packaging: %s (%ss)\n' "$1" "$SECONDS"; }

# The version a fresh install gets; a newer one already on the PATH is used as it is.
CARGO_DENY_VERSION=0.20.2
# Every crate but pipeline-tests (publish = false).
PUBLISHED=(pipeline-core pipeline-controller pipeline-adapters)

step "cargo-deny"
if ! cargo deny --version >/dev/null 2>&1; then
  # No prebuilt binary: GitHub (its releases) may be unreachable where crates.io is not.
  # About 8 minutes on 2 cores, once per machine.
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION" --target-dir target/cargo-install
  rm -rf target/cargo-install
fi
cargo deny --version
cargo deny --locked check licenses bans sources

step "advisories (RustSec)"
advisories_log=$(mktemp)
if cargo deny --locked check advisories 2>"$advisories_log"; then
  echo "advisories ok"
elif grep -q "failed to fetch advisory database" "$advisories_log"; then
  # The database is a git repository on github.com, which may be unreachable where
  # crates.io is not. A copy fetched on an earlier run still catches what it knew.
  if ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/*/ >/dev/null 2>&1; then
    echo "github.com unreachable: checking against the advisory database fetched earlier"
    cargo deny --offline --locked check advisories
  else
    echo "SKIP advisories: the RustSec advisory database (https://github.com/RustSec/advisory-db)"
    echo "     cannot be fetched from here and no earlier copy exists. Licenses, bans and"
    echo "     sources were checked; run 'cargo deny check advisories' where github.com is"
    echo "     reachable."
  fi
else
  cat "$advisories_log" >&2
  exit 1
fi
rm -f "$advisories_log"

step "MSRV"
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "no rust-version in Cargo.toml" >&2; exit 1; }
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$msrv" --profile minimal
fi
rustup run "$msrv" rustc --version
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --workspace --all-features --locked

step "cargo package (verified)"
# --allow-dirty: the check is about the manifests and the files they ship, so it runs
# on a working tree with edits too.
# Cargo verifies the controller and the adapters against the packaged pipeline-core
# from a staging registry in target/package, and extracts it under
# $CARGO_HOME/registry/src/-<hash of that path>/ once: a clone at the same path that
# packaged an older 0.1.0 would be verified against that older copy. Remove our crates'
# extractions from such local registries (their directories start with '-'; crates.io's
# are left alone). The verification builds go to a target directory of their own,
# emptied first: cargo reuses a registry crate's build by its version alone, so a
# pipeline-core 0.1.0 built by an earlier run would outlive its source.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/pipeline-{core,controller,adapters}-*
rm -rf target/package target/package-verify
CARGO_TARGET_DIR=target/package-verify \
  cargo package --workspace --exclude pipeline-tests --locked --allow-dirty
for crate in "${PUBLISHED[@]}"; do
  files=$(cargo package -p "$crate" --list --locked --allow-dirty)
  for needed in LICENSE-MIT LICENSE-APACHE README.md; do
    grep -qx "$needed" <<<"$files" || { echo "$crate: $needed missing from the package" >&2; exit 1; }
  done
  echo "$crate: $(wc -l <<<"$files") files, licenses and README included"
done

step "docs as docs.rs builds them"
if rustup run nightly rustc --version >/dev/null 2>&1; then
  RUSTDOCFLAGS="--cfg docsrs -D warnings" CARGO_TARGET_DIR=target/docsrs \
    cargo +nightly doc --workspace --no-deps --all-features --locked
else
  echo "SKIP: no nightly toolchain (rustup toolchain install nightly) for the docs.rs build"
fi

step "packaging done"
