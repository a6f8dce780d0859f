#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time, starting from the
# committed seed corpus, and fails on the first crash, panic, leak, timeout or
# out-of-memory. scripts/test.sh calls it last; it also runs on its own:
#
#   scripts/fuzz.sh [TARGET...]          default: every target (cargo fuzz list)
#
# Steps: install cargo-fuzz if missing, cargo fmt --check and cargo clippy
# -D warnings on the fuzz crate, one instrumented build of all targets, then
# each target for STRATA_FUZZ_SECONDS.
#
# The toolchain is stable (1.95). cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address for AddressSanitizer); RUSTC_BOOTSTRAP=1 makes the same
# stable compiler accept them. STRATA_FUZZ_SANITIZER=none builds without
# ASan (libFuzzer's coverage instrumentation needs no -Z flag).
#
# Environment:
#   STRATA_FUZZ_SECONDS     seconds per target (default 30)
#   STRATA_FUZZ_SANITIZER   address (default) or none
#   STRATA_FUZZ_TARGET_DIR  instrumented build directory; default
#                           ~/.cache/strata/target-fuzz (kept between runs:
#                           the first build, RocksDB included, takes a while)
#   STRATA_FUZZ_CORPUS_DIR  where the inputs each run finds are kept, so later
#                           runs start from them; default ~/.cache/strata/fuzz-corpus
#                           (the committed seeds in fuzz/corpus stay untouched)
#   CARGO_TARGET_DIR        build directory of the clippy check (default
#                           ~/.cache/strata/target, shared with test.sh)
#
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# then fix the code and add the input as a regression unit test next to it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

die() {
    echo "fuzz.sh: $*" >&2
    exit 1
}

cache="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
seconds="${STRATA_FUZZ_SECONDS:-30}"
sanitizer="${STRATA_FUZZ_SANITIZER:-address}"
fuzz_target_dir="${STRATA_FUZZ_TARGET_DIR:-$cache/target-fuzz}"
corpus_root="${STRATA_FUZZ_CORPUS_DIR:-$cache/fuzz-corpus}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || die "STRATA_FUZZ_SECONDS must be a positive integer, got '$seconds'"
case "$sanitizer" in
    address | none) ;;
    *) die "STRATA_FUZZ_SANITIZER must be address or none, got '$sanitizer'" ;;
esac

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
    *":$cargo_bin:"*) ;;
    *) export PATH="$cargo_bin:$PATH" ;;
esac
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust 1.95 with rustup (https://rustup.rs)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    tools_target="$cache/tools-target"
    cargo install cargo-fuzz --locked --target-dir "$tools_target"
    rm -rf "$tools_target" || true
fi
cargo fuzz --version

# Lint the fuzz crate like the rest of the repository (it is a workspace of
# its own, so the root checks do not see it). Its dev profile matches the
# root's, so this reuses the dependencies test.sh built.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --workspace --all-targets -- -D warnings

export CARGO_TARGET_DIR="$fuzz_target_dir"
export RUSTC_BOOTSTRAP=1
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
((${#targets[@]} > 0)) || die "no fuzz targets found"

# One build of all targets (they share every dependency).
cargo fuzz build --sanitizer "$sanitizer"

for target in "${targets[@]}"; do
    seeds="fuzz/corpus/$target"
    [[ -d "$seeds" ]] || die "no seed corpus at $seeds"
    corpus="$corpus_root/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    echo
    echo "==== fuzz $target for ${seconds}s (sanitizer: $sanitizer)"
    # New inputs go to the first directory (the cache), the seeds are only
    # read. -timeout: an input running that long is a hang, not slowness.
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        || die "$target failed; the input is in fuzz/artifacts/$target/"
done
echo
echo "fuzz.sh: ${#targets[@]} targets ran ${seconds}s each without a failure"
