#!/usr/bin/env bash
# The task queue's benchmark (docs/performance.md): the release server in its own process,
# simulated agents in another, on SQLite and PostgreSQL, beside graphile-worker as an anchor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ ! -d target/bench-node/node_modules/graphile-worker ]]; then
  echo "== installing graphile-worker (the baseline) into target/bench-node"
  mkdir -p target/bench-node
  cp tests/benches/queue-baseline/package.json target/bench-node/
  (cd target/bench-node && npm install --no-audit --no-fund --silent)
fi
echo "== building the release server"
cargo build --release --locked -p idgard-server
cargo bench --locked -p idgard-tests --bench queue
