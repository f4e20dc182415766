#!/usr/bin/env bash
# Runs every check and test of idgard, installing what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== format"
cargo fmt --all -- --check
echo "== lints (host and wasm32-wasip2)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --locked --target wasm32-wasip2 -p idgard-model -p idgard-sdk -p idgard-connector-csv -p idgard-connector-ldap -p idgard-connector-sql -p idgard-connector-scim -p idgard-guest-misbehave -p idgard-guest-hostile -p idgard-guest-stall -p idgard-guest-sqlprobe -p idgard-guest-httpprobe -- -D warnings
echo "== tests"
cargo test --workspace --locked
echo "== Debian packages (from the binaries just built; installed with dpkg, then purged)"
bash scripts/packages.sh
