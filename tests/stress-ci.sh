#!/usr/bin/env bash
# The short CI profile of the stress harness: every scenario in tests/scenarios in its
# --quick form (time compressed; the memory squeezes at full length, in a real
# 256 MiB memory cgroup, with and without the controller). Exits non-zero when any
# scenario fails. Reports go to <target>/stress-report/<scenario file name>, <target>
# being $CARGO_TARGET_DIR if set, else target/ (the harness's own default).
set -u
cd "$(dirname "$0")/.."
cargo build --release -p pipeline-tests --bin pipeline-stress || exit 2
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/pipeline-stress"
failed=()
for file in tests/scenarios/*.yaml; do
    name=$(basename "$file" .yaml)
    echo "=== $name"
    if ! "$bin" "$file" --quick --no-watch --quiet --out "$target/stress-report/$name"; then
        failed+=("$name")
    fi
done
if ((${#failed[@]})); then
    echo "stress CI: FAILED: ${failed[*]}"
    exit 1
fi
echo "stress CI: all scenarios passed"
