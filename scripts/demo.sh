#!/usr/bin/env bash
# The demo: builds the agent and the CSV connector, exports the bundled HR file (5,000 people)
# through the real host and sandbox, then runs an incremental export that finds nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building the agent and the CSV connector"
cargo build --locked -p idgard-agent
cargo build --locked --target wasm32-wasip2 --profile wasm -p idgard-connector-csv
package=target/connectors/csv
mkdir -p "$package"
cp connectors/csv/connector.toml "$package/"
cp target/wasm32-wasip2/wasm/idgard_connector_csv.wasm "$package/"

agent=target/debug/idgard-agent
work=target/demo-work
config=connectors/csv/demo/hr-connection.toml
rm -rf "$work"

echo "== the connector describes itself"
"$agent" connector run "$package" describe --work "$work"
echo "== the first rows of the HR file, as the connector exports them"
"$agent" connector run "$package" export --config "$config" --work "$work" --format table --limit 5 2>/dev/null
echo "== a full export (summary)"
"$agent" connector run "$package" export --config "$config" --work "$work" --format summary
echo "== an incremental export: nothing changed, nothing is sent"
"$agent" connector run "$package" export --incremental --config "$config" --work "$work" --format summary
echo
echo "Entries as JSON lines: $agent connector run $package export --config $config --work $work --format json"
echo "The agent's folders are under $work (collect/, state/, cache/)."
