#!/usr/bin/env bash
# The identity pipeline end to end, through the real server, agent and sandboxed CSV connector,
# on SQLite, with optimised builds (the demo of scripts/demo.sh at scale): a complete run of N
# generated people (export, upload, synchronize, provision, fulfil), then an incremental run
# after C changes to the HR file. The baseline, run at the same time on the same file: the same
# accounts file written straight from the HR file by a short Python script, with no identity
# manager (no repository, no history, no sandbox, no network).
#
#   scripts/bench-pipeline.sh [people] [changes]      # defaults: 1000000 1000
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-1000000}
changes=${2:-1000}
log=target/bench-pipeline.log
mkdir -p target
# The demo's rules without their thresholds (the changes include more leaves than the demo's
# threshold lets through without an approval) and without their schedules (a scheduled run
# must not start between the two timed ones).
sed -e '/^\[thresholds/,/^$/d' -e '/^schedule = /d' -e '/^incremental_schedule = /d' \
  connectors/csv/demo/rules.toml > target/bench-rules.toml
IDGARD_DEMO_RULES=$PWD/target/bench-rules.toml IDGARD_DEMO_PROFILE=release IDGARD_DEMO_PEOPLE=$people IDGARD_DEMO_CHANGES=$changes \
  IDGARD_DEMO_BATCH=${IDGARD_BENCH_BATCH:-5000} IDGARD_DEMO_PORT=${IDGARD_BENCH_PORT:-8643} \
  bash scripts/demo.sh | tee "$log"
complete=$(sed -n 's/^job [0-9]*: succeeded in \([0-9.]*\) s.*$/\1/p' "$log" | sed -n 1p)
incremental=$(sed -n 's/^job [0-9]*: succeeded in \([0-9.]*\) s.*$/\1/p' "$log" | sed -n 2p)

target/release/idgard-demo-data "$people" > target/bench-hr.csv
baseline=$(python3 - target/bench-hr.csv target/bench-accounts.csv <<'PY'
import csv, sys, time
started = time.monotonic()
sites = {"Berlin": "BER", "Paris": "PAR", "Lyon": "LYS"}
with open(sys.argv[1], encoding="utf-8", newline="") as f, \
     open(sys.argv[2], "w", encoding="utf-8", newline="") as out:
    w = csv.writer(out)
    w.writerow(["login", "enabled", "employee_id", "name", "department", "title", "site"])
    for r in csv.DictReader(f):
        if r["status"] != "active":
            continue
        login = r["email"].split("@")[0] + "." + r["employee_id"].lower()
        w.writerow([login, "true", r["employee_id"], r["first_name"] + " " + r["last_name"],
                    r["department"], r["title"], sites.get(r["location"], r["location"])])
print(f"{time.monotonic() - started:.2f}")
PY
)
echo
echo "end to end, $people people, SQLite, release build:"
echo "  complete run (export, synchronize, provision, fulfil):  $complete s  ($(python3 -c "print(f'{$people / $complete:,.0f}')") people/s)"
echo "  incremental run after $changes changes:                  $incremental s"
echo "  baseline (HR file → accounts file in Python, no IdM):   $baseline s  → idgard at $(python3 -c "print(f'{$complete / $baseline:.1f}')")× the baseline's time"
