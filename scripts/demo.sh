#!/usr/bin/env bash
# The demo: a server (embedded SQLite, development certificate and key) and one agent serving
# the bundled HR file (5,000 people) through the sandboxed CSV connector. An export job runs:
# the agent polls, exports, uploads; the server checks and stores the upload.
# `scripts/demo.sh --keep` leaves both running (Ctrl-C stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh
echo "== building the server, the agent and the CSV connector"
cargo build --locked -p idgard-server -p idgard-agent
cargo build --locked --target wasm32-wasip2 --profile wasm -p idgard-connector-csv

demo=target/demo
rm -rf "$demo"
mkdir -p "$demo/agent/runtime/csv" "$demo/agent/connections"
cp connectors/csv/connector.toml target/wasm32-wasip2/wasm/idgard_connector_csv.wasm "$demo/agent/runtime/csv/"
cat > "$demo/agent/agent.toml" <<TOML
work = "work"
runtime = "runtime"
connections = "connections"
max_tasks = 2
TOML
cat > "$demo/agent/connections/demo-hr.toml" <<TOML
# The bundled HR file, read-only.
name = "demo-hr"
connector = "csv"

[settings]
file = "hr.csv"
key = "employee_id"

[grants.folders.source]
path = "$root/connectors/csv/demo"
access = "read-only"
TOML

server=target/debug/idgard-server
agent=target/debug/idgard-agent
port=${IDGARD_DEMO_PORT:-8443}
args=(--data-dir "$demo/server" --listen "127.0.0.1:$port")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== starting the server on https://127.0.0.1:$port (log: $demo/server.log)"
"$server" "${args[@]}" > "$demo/server.out" 2> "$demo/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$demo/server.out" 2>/dev/null && break; sleep 0.1; done
cat "$demo/server.out"
fingerprint=$(sed -n 's/.*certificate sha256 \([0-9a-f]*\).*/\1/p' "$demo/server.out")

echo "== creating agent 'demo' and enrolling it (certificate pinned)"
token=$("$server" "${args[@]}" agent add demo 2>/dev/null | sed -n 2p | tr -d ' ')
"$agent" enrol --config "$demo/agent/agent.toml" --server "https://127.0.0.1:$port" --token "$token" --fingerprint "$fingerprint"

echo "== starting the agent (log: $demo/agent.log); it opens no listening socket"
"$agent" run --config "$demo/agent/agent.toml" 2> "$demo/agent.log" &
pids+=($!)

echo "== running an export job for connection demo-hr"
job=$("$server" "${args[@]}" job create --agent demo --step export:demo-hr 2>/dev/null | sed -n 's/^  "id": \([0-9]*\),/\1/p' | head -1)
for _ in $(seq 300); do
  state=$("$server" "${args[@]}" job show "$job" 2>/dev/null | sed -n 's/^  "state": "\(.*\)",/\1/p')
  [[ "$state" == succeeded || "$state" == failed || "$state" == cancelled ]] && break
  sleep 0.2
done
"$server" "${args[@]}" job list 2>/dev/null
"$server" "${args[@]}" job show "$job" 2>/dev/null | grep -E '"(state|entries|rejected|upload_id|error)"' || true
[[ "$state" == succeeded ]] || { echo "the job did not succeed: see $demo/agent.log and $demo/server.log"; exit 1; }

cat <<TXT

Done. Where to look:
  server log        $demo/server.log
  agent log         $demo/agent.log
  administrator API token: $demo/server/admin-token
  the job           $server ${args[*]} job show $job
  agents            $server ${args[*]} agent list
TXT
if [[ "${1:-}" == "--keep" ]]; then
  echo "Server and agent keep running; Ctrl-C stops them."
  wait
fi
