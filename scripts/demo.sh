#!/usr/bin/env bash
# The demo: a server (embedded SQLite, development certificate and key, the rules in
# connectors/csv/demo/rules.toml) and one agent serving a copy of the bundled HR file (5,000
# people) and an accounts file through the sandboxed CSV connector. The declared job `daily`
# runs complete: export, synchronize, compute provisioning, fulfil: every active person gets an
# account. Then a hire, a move and a leave in the HR file, and an incremental run sends exactly
# those three orders.
# `scripts/demo.sh --directory` does the same into an OpenLDAP directory (a slapd the demo starts,
# with StartTLS) through the sandboxed LDAP connector, with group memberships: each account in its
# department's group and in a role group for some titles (connectors/ldap/demo/rules.toml); the
# move changes the account's groups, the leave takes it out of its groups and deletes it.
# `scripts/demo.sh --keep` leaves both running (Ctrl-C stops them).
# IDGARD_DEMO_PEOPLE=N uses a generated HR file of N people (`idgard-demo-data N`) instead;
# IDGARD_DEMO_CHANGES=N makes run 2 carry N changes (40 % moves, 30 % hires, 30 % leaves);
# IDGARD_DEMO_PROFILE=release builds and runs optimised binaries; IDGARD_DEMO_BATCH sets the
# agent's batch size; IDGARD_DEMO_RULES another rules file. `scripts/bench-pipeline.sh` uses
# these.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

directory=false
keep=false
for arg in "$@"; do
  case "$arg" in
    --directory) directory=true ;;
    --keep) keep=true ;;
    *) echo "usage: scripts/demo.sh [--directory] [--keep]" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
profile=${IDGARD_DEMO_PROFILE:-debug}
changes=${IDGARD_DEMO_CHANGES:-}
echo "== building the server, the agent and the connectors ($profile)"
flags=()
[[ "$profile" == release ]] && flags=(--release)
cargo build --locked "${flags[@]}" -p idgard-server -p idgard-agent -p idgard-client
cargo build --locked "${flags[@]}" -p idgard-tests --bin idgard-demo-data --bin idgard-demo-slapd
cargo build --locked --target wasm32-wasip2 --profile wasm -p idgard-connector-csv -p idgard-connector-ldap
bin=target/$profile

demo=target/demo
$directory && demo=target/demo-directory
rm -rf "$demo"
mkdir -p "$demo/agent/runtime/csv" "$demo/agent/runtime/ldap" "$demo/agent/connections" "$demo/hr" "$demo/accounts"
if [[ -n "${IDGARD_DEMO_PEOPLE:-}" ]]; then
  "$bin/idgard-demo-data" "$IDGARD_DEMO_PEOPLE" > "$demo/hr/hr.csv"
else
  cp connectors/csv/demo/hr.csv "$demo/hr/hr.csv"
fi
printf 'login,enabled,employee_id\n' > "$demo/accounts/accounts.csv"
cp connectors/csv/connector.toml target/wasm32-wasip2/wasm/idgard_connector_csv.wasm "$demo/agent/runtime/csv/"
cp connectors/ldap/connector.toml target/wasm32-wasip2/wasm/idgard_connector_ldap.wasm "$demo/agent/runtime/ldap/"
cat > "$demo/agent/agent.toml" <<TOML
work = "work"
runtime = "runtime"
connections = "connections"
max_tasks = 2
batch_size = ${IDGARD_DEMO_BATCH:-1024}
launchable = ["daily"]
TOML
cat > "$demo/agent/connections/demo-hr.toml" <<TOML
# The bundled HR file, read-only.
name = "demo-hr"
connector = "csv"

[settings]
file = "hr.csv"
key = "employee_id"

[grants.folders.source]
path = "$root/$demo/hr"
access = "read-only"
TOML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if $directory; then
  echo "== starting slapd (OpenLDAP, StartTLS; log in a temporary folder)"
  # The helper stops slapd when its standard input closes: when this script ends.
  mkfifo "$demo/slapd.in"
  "$bin/idgard-demo-slapd" "$demo/slapd" < "$demo/slapd.in" 2> "$demo/slapd.out" &
  pids+=($!)
  exec 7> "$demo/slapd.in"
  for _ in $(seq 200); do [[ -f "$demo/slapd/slapd.env" ]] && break; sleep 0.05; done
  # shellcheck disable=SC1091
  source "$demo/slapd/slapd.env"
  cat "$demo/slapd.out"
  cat > "$demo/agent/connections/demo-directory.toml" <<TOML
# The directory the pipeline maintains, through the LDAP connector over StartTLS. The demo binds
# as the directory's administrator: a sync of many changes is not paged, and slapd caps what an
# ordinary account may read in one (see connectors/ldap/README.md, "Incremental export").
name = "demo-directory"
connector = "ldap"

[settings]
bind_dn = "$admin_dn"
accounts_base = "ou=people,$slapd_base"
groups_base = "ou=groups,$slapd_base"

[secrets]
bind_password = { value = "$admin_password" }

[grants.endpoints.directory]
address = "127.0.0.1:$slapd_port"
tls = "start-tls"
ca = "$root/$demo/slapd/ca.pem"
server_name = "ldap.idgard.test"
TOML
else
cat > "$demo/agent/connections/demo-accounts.toml" <<TOML
# The accounts file the pipeline maintains: exported (to see what exists) and fulfilled.
name = "demo-accounts"
connector = "csv"

[settings]
file = "accounts.csv"
key = "login"
entity_type = "account"
accounts_file = "accounts.csv"
accounts_key = "login"

[grants.folders.source]
path = "$root/$demo/accounts"
access = "read-only"

[grants.folders.accounts]
path = "$root/$demo/accounts"
access = "read-write"
TOML
fi

rules=connectors/csv/demo/rules.toml
job_name=daily
if $directory; then rules=connectors/ldap/demo/rules.toml; job_name=directory; fi
server=$bin/idgard-server
agent=$bin/idgard-agent
port=${IDGARD_DEMO_PORT:-8443}
# The web UI signs in with a development password made for this demo (loopback only).
ui_password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
ui_hash=$(printf '%s\n' "$ui_password" | "$server" hash-password)
printf '%s\n' "$ui_password" > "$demo/ui-password"
chmod 600 "$demo/ui-password"
# The server's settings in one file, so that every command below needs no flag.
cat > "$demo/idgard-server.toml" <<TOML
data_dir = "$root/$demo/server"
listen = "127.0.0.1:$port"
rules = "${IDGARD_DEMO_RULES:-$root/$rules}"
[ui.dev_password]
user = "demo"
hash = "$ui_hash"
TOML
export IDGARD_CONFIG="$root/$demo/idgard-server.toml"

echo "== starting the server on https://127.0.0.1:$port (log: $demo/server.log)"
# The demo's own settings are not the server's or the agent's: keep them out of their environment.
unset IDGARD_DEMO_PEOPLE IDGARD_DEMO_CHANGES IDGARD_DEMO_PROFILE IDGARD_DEMO_BATCH IDGARD_DEMO_RULES IDGARD_DEMO_PORT
"$server" > "$demo/server.out" 2> "$demo/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$demo/server.out" 2>/dev/null && break; sleep 0.1; done
cat "$demo/server.out"
fingerprint=$(sed -n 's/.*certificate sha256 \([0-9a-f]*\).*/\1/p' "$demo/server.out")

echo "== creating agent 'demo' and enrolling it (certificate pinned)"
token=$("$server" agent add demo 2>/dev/null | sed -n 2p | tr -d ' ')
"$agent" enrol --config "$demo/agent/agent.toml" --server "https://127.0.0.1:$port" --token "$token" --fingerprint "$fingerprint"

echo "== starting the agent (log: $demo/agent.log); it opens no listening socket"
"$agent" run --config "$demo/agent/agent.toml" 2> "$demo/agent.log" &
pids+=($!)
# Its connectors compiled and loaded (once per start), it polls: the jobs' figures below are the
# pipeline's, not the agent's start.
for _ in $(seq 600); do grep -q "agent starting" "$demo/agent.log" 2>/dev/null && break; sleep 0.1; done

# Runs the declared job and waits for its end; prints its tasks.
run_job() {
  local job state started
  started=$(date +%s.%N)
  job=$("$server" job run "$job_name" "$@" 2>/dev/null | sed -n 's/^job \([0-9]*\) .*/\1/p')
  for _ in $(seq 72000); do  # up to an hour
    state=$("$server" job show "$job" 2>/dev/null | sed -n 's/^  "state": "\(.*\)",/\1/p')
    [[ "$state" == succeeded || "$state" == failed || "$state" == cancelled || "$state" == blocked ]] && break
    sleep 0.05
  done
  last_seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$started" "$(date +%s.%N)")
  # The job's own span on the server, from its creation to its end (without this script's
  # process starts and polling).
  span=$("$server" job show "$job" 2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); print(f'{(j[\"finished_ms\"] - j[\"created_ms\"]) / 1000:.2f}')" 2>/dev/null || echo "?")
  echo "job $job: $state in $last_seconds s (on the server: $span s)"
  [[ "$state" == succeeded ]] || { echo "the job did not succeed: see $demo/agent.log and $demo/server.log"; exit 1; }
  last_job=$job
}

# What the target holds: accounts in the file, or accounts and groups in the directory.
show_target() {
  if $directory; then
    local ldap=(ldapsearch -x -LLL -o ldif-wrap=no -H "ldap://127.0.0.1:$slapd_port" -D "$admin_dn" -w "$admin_password")
    echo "directory: $("${ldap[@]}" -b "ou=people,$slapd_base" '(objectClass=inetOrgPerson)' 1.1 | grep -c '^dn:') accounts; groups and members:"
    "${ldap[@]}" -b "ou=groups,$slapd_base" '(objectClass=groupOfNames)' cn member \
      | awk '/^cn: /{name=$2} /^member: /{n[name]++} END{for (g in n) printf "  %-28s %d\n", g, n[g]}' | sort
  else
    echo "accounts file: $(($(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], encoding="utf-8"))))' "$demo/accounts/accounts.csv") - 1)) accounts"
  fi
}

echo "== run 1: the complete job '$job_name' (export, synchronize, provision, fulfil)"
run_job
"$server" orders --job "$last_job" 2>/dev/null | awk '{print $2, $4}' | sort | uniq -c
show_target
if $directory; then
  # What run 1 wrote, as LDIF (accounts, then groups): scripts/bench-directory.sh loads it with
  # ldapadd to compare.
  ldapsearch -x -LLL -o ldif-wrap=no -H "ldap://127.0.0.1:$slapd_port" -D "$admin_dn" -w "$admin_password" \
    -b "ou=people,$slapd_base" '(objectClass=inetOrgPerson)' > "$demo/run1.ldif"
  ldapsearch -x -LLL -o ldif-wrap=no -H "ldap://127.0.0.1:$slapd_port" -D "$admin_dn" -w "$admin_password" \
    -b "ou=groups,$slapd_base" '(objectClass=groupOfNames)' >> "$demo/run1.ldif"
fi

if [[ -z "$changes" ]]; then
  echo "== in the HR file: a hire (E9000001), a move (E0000002 to Finance), a leave (E0000003 removed)"
  python3 - "$demo/hr/hr.csv" <<'PY'
import csv, sys
path = sys.argv[1]
with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
fields = list(rows[0].keys())
rows = [r for r in rows if r["employee_id"] != "E0000003"]
for r in rows:
    if r["employee_id"] == "E0000002":
        r["department"] = "Finance"
rows.append(dict(rows[0], employee_id="E9000001", first_name="Nora", last_name="Hire",
                 email="nora.hire@example.org", department="Legal", status="active", notes=""))
with open(path, "w", encoding="utf-8", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
PY
else
  echo "== in the HR file: $changes changes (40 % moves, 30 % hires, 30 % leaves)"
  python3 - "$demo/hr/hr.csv" "$changes" <<'PY'
import csv, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
fields = list(rows[0].keys())
moves, hires = n * 4 // 10, n * 3 // 10
leaves = n - moves - hires
step = max(1, len(rows) // (moves + leaves + 1))
for i in range(moves):
    r = rows[(i * step) % len(rows)]
    r["department"] = "Finance" if r["department"] != "Finance" else "Legal"
gone = {rows[(i * step + step // 2) % len(rows)]["employee_id"] for i in range(leaves)}
rows = [r for r in rows if r["employee_id"] not in gone]
for i in range(hires):
    rows.append(dict(rows[0], employee_id=f"H{i:07d}", email=f"hire{i}@example.org", status="active"))
with open(path, "w", encoding="utf-8", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
PY
fi

echo "== run 2: incremental; exactly the orders of the changes"
run_job --incremental
if [[ -z "$changes" ]]; then
  "$server" orders --job "$last_job" 2>/dev/null
  show_target
else
  "$server" orders --job "$last_job" 2>/dev/null | awk '{print $2, $4}' | sort | uniq -c
fi

target_name=demo-accounts
target_at=$demo/accounts/accounts.csv
if $directory; then
  target_name=demo-directory
  target_at="ldap://127.0.0.1:$slapd_port (StartTLS; $admin_dn, password in $demo/slapd/slapd.env)"
fi
cat <<TXT

Done. Where to look:
  the web UI        https://127.0.0.1:$port/ (user demo, password in $demo/ui-password;
                    the certificate is the development one: accept it once)
  server log        $demo/server.log
  agent log         $demo/agent.log
  administrator API token: $demo/server/admin-token
  the accounts      $target_at
The server's commands read its settings from \$IDGARD_CONFIG (or ./idgard-server.toml):
  export IDGARD_CONFIG=$IDGARD_CONFIG
  the last job      $server job show $last_job
  its orders        $server orders --job $last_job
  orphan accounts   $server links $target_name --situation unmatched
  agents            $server agent list
From any shell, with the administration client (the server's API over HTTPS):
  $bin/idgard login --server https://127.0.0.1:$port --fingerprint $fingerprint \\
      --token-file $demo/server/admin-token
  $bin/idgard identity show <an employee_id from $demo/hr/hr.csv>
TXT
if $keep; then
  echo "Server and agent keep running; Ctrl-C stops them."
  wait
fi
