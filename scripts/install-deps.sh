#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build Strata, skipping whatever is
# already present; a no-op (no apt, no sudo) when nothing is missing.
#
#   scripts/install-deps.sh [EXTRA_APT_PACKAGE...]
#
# Build prerequisites: clang + libclang-dev (bindgen in the rocksdb crate),
# protobuf-compiler (protoc, for proto/) with libprotobuf-dev (its
# well-known types), and a C/C++ toolchain (cc, c++,
# make) for the bundled C/C++ libraries. Extra packages named on the command
# line (scripts/test.sh passes etcd-server when /usr/bin/etcd is missing) are
# installed in the same apt-get run, so `apt-get update` runs at most once.
#
# Runs apt as root, or through sudo when not root. Rust itself (1.95, via
# rustup) must already be installed.
set -euo pipefail

missing=()

# command -v NAME, or the package that provides it goes on the list.
need_command() {
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}

need_command clang clang
# libclang-dev provides the unversioned libclang.so that bindgen loads.
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || missing+=(libclang-dev)
need_command protoc protobuf-compiler
# The well-known types (google/protobuf/descriptor.proto...) that etcd-client's
# protos import: only a recommendation of protobuf-compiler, which
# --no-install-recommends leaves out.
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1 \
    || ! command -v make >/dev/null 2>&1; then
    missing+=(build-essential)
fi
missing+=("$@")

if ((${#missing[@]} == 0)); then
    echo "install-deps: build prerequisites present (clang, libclang-dev, protoc, C/C++ toolchain)"
else
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x "$cargo_bin/cargo" ]]; then
    echo "install-deps: cargo not found; install Rust 1.95 with rustup (https://rustup.rs)" >&2
    exit 1
fi
