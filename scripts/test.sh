#!/usr/bin/env bash
# Runs every Strata test on a Debian 12 machine, first installing whatever is
# missing (and skipping whatever is already there). CI runs it through .ci/run.
#
#   scripts/test.sh [NEXTEST_ARGS...]     e.g. scripts/test.sh -E 'test(fence)'
#
# Steps, stopping at the first failure: system packages, Rust components and
# tools (cargo-nextest, cargo-fuzz, Garage, the official Pulsar Python client
# pulsar-client 3.13.0 for the compatibility tests), cargo fmt --check, cargo
# clippy -D warnings, build of the `strata` binary (the fault and
# compatibility tests spawn it), cargo nextest, then scripts/fuzz.sh (each
# cargo-fuzz target for a bounded time).
#
# Environment:
#   CARGO_TARGET_DIR      build directory; default ~/.cache/strata/target, outside
#                         the checkout so that reruns are incremental
#   NEXTEST_TEST_THREADS  tests run at once (default 2: the fault tests start
#                         processes, and CI machines have 2 cores)
#   STRATA_SKIP_GARAGE=1  do not install Garage; for local iteration only (tests
#                         that need an S3 server then fail); refused when CI=true
#   STRATA_FUZZ_SECONDS   seconds each fuzz target runs (default 30); more
#                         settings in scripts/fuzz.sh
#
# Runs as root, or with sudo for apt when not root. The full-disk fault tests
# mount a small tmpfs and therefore need root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

started=$SECONDS
current_step="setup"

step() {
    current_step=$*
    local t=$((SECONDS - started))
    printf '\n==== [%02d:%02d] %s\n' $((t / 60)) $((t % 60)) "$current_step"
}

on_exit() {
    local rc=$?
    local t=$((SECONDS - started))
    if ((rc != 0)); then
        printf '\n==== [%02d:%02d] FAILED (exit %d) in: %s\n' $((t / 60)) $((t % 60)) "$rc" "$current_step" >&2
    fi
}
trap on_exit EXIT

die() {
    echo "test.sh: $*" >&2
    exit 1
}

# rustup installs cargo and `cargo install`ed tools here.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
    *":$cargo_bin:"*) ;;
    *) export PATH="$cargo_bin:$PATH" ;;
esac
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust 1.95 with rustup (https://rustup.rs)"

if [[ "${STRATA_SKIP_GARAGE:-}" == 1 && "${CI:-}" == true ]]; then
    die "STRATA_SKIP_GARAGE=1 is for local iteration; CI always tests against Garage"
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: not root: the full-disk fault tests (tmpfs mount) will fail" >&2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
[[ "$CARGO_TARGET_DIR" == /* ]] || CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR"
# Tools built by `cargo install` get their own build directory, removed once
# they are installed; it survives an interrupted build so a rerun resumes.
tools_target="${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools-target"

# ---------------------------------------------------------------------------
step "system packages (apt)"
extra_packages=()
# The test harness runs etcd from /usr/bin/etcd (Debian's etcd-server)
# unless STRATA_ETCD_BIN names another binary.
[[ -n "${STRATA_ETCD_BIN:-}" || -x /usr/bin/etcd ]] || extra_packages+=(etcd-server)
bash "$repo/scripts/install-deps.sh" "${extra_packages[@]}"

# ---------------------------------------------------------------------------
step "Rust components and tools"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt/clippy missing and rustup not found"
    rustup component add rustfmt clippy
fi
cargo --version
cargo fmt --version
cargo clippy --version

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked --target-dir "$tools_target"
fi
cargo nextest --version | head -n 1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --target-dir "$tools_target"
fi
cargo fuzz --version

garage_wanted=2.5.0
garage_ok() {
    # `garage --version` prints e.g. "garage cargo:2.5.0 [features: ...]".
    command -v garage >/dev/null 2>&1 || return 1
    garage --version 2>/dev/null | grep -qE "(^|[^0-9.])${garage_wanted//./\\.}([^0-9.]|$)" && return 0
    cargo install --list 2>/dev/null | grep -q "^garage v${garage_wanted}:"
}
if [[ "${STRATA_SKIP_GARAGE:-}" == 1 ]]; then
    echo "STRATA_SKIP_GARAGE=1: not checking or installing Garage; tests that need S3 will fail"
elif garage_ok; then
    echo "garage: $(garage --version 2>/dev/null | head -n 1)"
else
    echo "note: building Garage ${garage_wanted} (the S3 server of the tiered-storage tests) from source:"
    echo "      cargo install garage@${garage_wanted} --locked -- about 15-25 minutes, once per machine"
    cargo install "garage@${garage_wanted}" --locked --target-dir "$tools_target"
    garage_ok || die "garage ${garage_wanted} was installed but \`garage --version\` does not report it"
fi
# The Pulsar compatibility tests (tests/tests/pulsar_python.rs) run scripts
# with the official Python client, which wraps the Apache C++ client.
pulsar_client_wanted=3.13.0
pulsar_client_ok() {
    python3 -c "import pulsar, sys; sys.exit(pulsar.__version__ != '$pulsar_client_wanted')" 2>/dev/null
}
if pulsar_client_ok; then
    echo "pulsar-client: $pulsar_client_wanted ($(command -v python3))"
else
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        bash "$repo/scripts/install-deps.sh" python3 python3-pip
    fi
    echo "installing pulsar-client==$pulsar_client_wanted for $(command -v python3)"
    # Debian's own python3 refuses pip installs outside a venv (PEP 668)
    # unless told otherwise; a pyenv or venv python3 takes the first form.
    python3 -m pip install --quiet "pulsar-client==$pulsar_client_wanted" \
        || python3 -m pip install --quiet --break-system-packages "pulsar-client==$pulsar_client_wanted"
    pulsar_client_ok || die "pulsar-client $pulsar_client_wanted was installed but python3 does not import it"
fi

# Everything is installed: the tools' build directory is no longer needed.
rm -rf "$tools_target" || echo "note: could not remove $tools_target (in use?)"

# ---------------------------------------------------------------------------
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

# ---------------------------------------------------------------------------
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------------------
step "cargo build -p strata --bin strata"
cargo build -p strata --bin strata
# The fault tests spawn this binary.
export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
[[ -x "$STRATA_BIN" ]] || die "expected the strata binary at $STRATA_BIN"

# ---------------------------------------------------------------------------
# nextest runs unit, crate and integration tests (not doc tests).
step "cargo nextest run --workspace --no-fail-fast $*"
cargo nextest run --workspace --no-fail-fast \
    --test-threads "${NEXTEST_TEST_THREADS:-2}" "$@"

# ---------------------------------------------------------------------------
# Bounded fuzzing of the wire and disk decoders (fuzz/, cargo-fuzz with
# AddressSanitizer); fails on any crash. Its build lives in its own cached
# directory (STRATA_FUZZ_TARGET_DIR); see scripts/fuzz.sh for the settings.
step "fuzz: every target for ${STRATA_FUZZ_SECONDS:-30}s (scripts/fuzz.sh)"
bash "$repo/scripts/fuzz.sh"

current_step="done"
step "all checks and tests passed"
