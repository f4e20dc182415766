#!/usr/bin/env bash
# Installs what building and testing idgard needs, and nothing else. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: rustup is needed (https://rustup.rs); the toolchain itself is pinned in rust-toolchain.toml" >&2
    exit 1
fi
# rust-toolchain.toml pins the toolchain; make sure it and its WebAssembly target are present.
rustup show active-toolchain >/dev/null
rustup target add wasm32-wasip2 >/dev/null
echo "setup: $(rustc --version), targets: $(rustup target list --installed | tr '\n' ' ')"
