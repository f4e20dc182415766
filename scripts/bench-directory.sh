#!/usr/bin/env bash
# Provisioning a directory through the whole pipeline, against OpenLDAP's own `ldapadd` of the
# same entries, in one run, on the same slapd configuration (the demo's: mdb with dbnosync,
# syncprov, memberof, ppolicy; StartTLS; bound as the directory's administrator):
#
#   1. `scripts/demo.sh --directory` with N generated people, optimised builds: the complete run
#      of the job `directory` (export the HR file, upload, synchronize, compute provisioning,
#      fulfil through the sandboxed LDAP connector: every active person's account, and the
#      department and role groups created with their members) is timed on the server, from the
#      job's creation to its end;
#   2. what that run wrote is read back as LDIF (accounts first, then groups with their members)
#      and loaded with `ldapadd -ZZ` into a fresh slapd of the same configuration, timed.
#
#   scripts/bench-directory.sh [people]      # default 10000
#   IDGARD_DEMO_SLAPD_SYNC=1 scripts/bench-directory.sh [people]   # both slapds sync each write
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-10000}
log=target/bench-directory.log
mkdir -p target
sed -e '/^\[thresholds/,/^$/d' connectors/ldap/demo/rules.toml > target/bench-directory-rules.toml
IDGARD_DEMO_RULES=$PWD/target/bench-directory-rules.toml IDGARD_DEMO_PROFILE=release \
  IDGARD_DEMO_PEOPLE=$people IDGARD_DEMO_CHANGES=${IDGARD_BENCH_CHANGES:-100} \
  IDGARD_DEMO_BATCH=${IDGARD_BENCH_BATCH:-5000} IDGARD_DEMO_PORT=${IDGARD_BENCH_PORT:-8644} \
  bash scripts/demo.sh --directory | tee "$log"
complete=$(sed -n 's/^job [0-9]*: succeeded in .* s (on the server: \(.*\) s)$/\1/p' "$log" | sed -n 1p)
incremental=$(sed -n 's/^job [0-9]*: succeeded in .* s (on the server: \(.*\) s)$/\1/p' "$log" | sed -n 2p)
demo=target/demo-directory
# shellcheck disable=SC1091
source "$demo/slapd/slapd.env"
[[ -f "$demo/run1.ldif" ]] || { echo "the demo did not keep its directory's content"; exit 1; }

# A fresh slapd of the same configuration; the same entries with ldapadd.
rm -rf target/bench-directory-slapd
mkfifo target/bench-directory-slapd.in 2>/dev/null || true
target/release/idgard-demo-slapd target/bench-directory-slapd < target/bench-directory-slapd.in 2>/dev/null &
holder=$!
exec 8> target/bench-directory-slapd.in
trap 'exec 8>&-; wait $holder 2>/dev/null || true; rm -f target/bench-directory-slapd.in' EXIT
for _ in $(seq 200); do [[ -f target/bench-directory-slapd/slapd.env ]] && break; sleep 0.05; done
# shellcheck disable=SC1091
source target/bench-directory-slapd/slapd.env
started=$(date +%s.%N)
LDAPTLS_CACERT=$PWD/target/bench-directory-slapd/ca.pem ldapadd -ZZ -x -H "ldap://127.0.0.1:$slapd_port" \
  -D "$admin_dn" -w "$admin_password" -f "$demo/run1.ldif" > /dev/null
baseline=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$started" "$(date +%s.%N)")
entries=$(grep -c '^dn: ' "$demo/run1.ldif")
members=$(grep -c '^member: ' "$demo/run1.ldif")
echo
writes=$([[ "${IDGARD_DEMO_SLAPD_SYNC:-}" == 1 ]] && echo "each write synced" || echo "dbnosync")
echo "directory provisioning, $people people, release build, slapd with $writes:"
echo "  complete run through the pipeline (HR export → ... → fulfil): $complete s  ($entries entries, $members memberships)"
echo "  ldapadd -ZZ of the same entries into a fresh slapd:           $baseline s"
echo "  ratio: $(python3 -c "print(f'{$complete / $baseline:.2f}')")"
echo "  incremental run after ${IDGARD_BENCH_CHANGES:-100} changes:                       $incremental s"
