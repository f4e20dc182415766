#!/usr/bin/env bash
# Makes the Debian packages of the server and the agent from the binaries the tests just built
# (no build of its own), checks what they hold, installs them with dpkg for real, checks what
# their scripts made (users, folders, modes), runs the installed binaries, and purges them.
# Production packages are made the same way from a release build: `cargo build --release`
# then `cargo deb -p idgard-server --no-build` (see packaging/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${IDGARD_PACKAGE_PROFILE:-dev}"
out=target/debian
rm -rf "$out" && mkdir -p "$out"
for pkg in idgard-server idgard-agent; do
    # cargo-deb warns that a dev profile is for tests only, which is what this is.
    cargo deb -p "$pkg" --no-build --profile "$profile" -o "$out/" 2>&1 | grep -v "dev profile\|debug symbols set" || true
done
server_deb=$(ls "$out"/idgard-server_*.deb)
agent_deb=$(ls "$out"/idgard-agent_*.deb)

fail() { echo "packages: $*" >&2; exit 1; }
holds() { dpkg-deb --contents "$1" | awk '{print $1, $6}' | grep -qxF -- "$2 ./$3" || fail "$(basename "$1") does not hold $3 as $2"; }
holds "$server_deb" -rwxr-xr-x usr/bin/idgard-server
holds "$server_deb" -rwxr-xr-x usr/bin/idgard
holds "$server_deb" -rw-r--r-- usr/lib/systemd/system/idgard-server.service
holds "$agent_deb" -rwxr-xr-x usr/bin/idgard-agent
holds "$agent_deb" -rw-r--r-- usr/lib/systemd/system/idgard-agent.service
echo "packages: $(basename "$server_deb") and $(basename "$agent_deb") hold what they should"

# A real installation needs root and dpkg; the machine must not hold idgard already.
if [ "$(id -u)" -ne 0 ]; then
    fail "installing the packages for real needs root (CI runs as root)"
fi
for path in /usr/bin/idgard-server /usr/bin/idgard-agent /etc/idgard; do
    [ ! -e "$path" ] || fail "$path exists already: not installing over it"
done
trap 'dpkg --purge idgard-server idgard-agent >/dev/null 2>&1 || true; rm -rf /etc/idgard' EXIT
dpkg -i "$server_deb" "$agent_deb" >/dev/null

getent passwd idgard >/dev/null || fail "no user idgard after installing"
getent passwd idgard-agent >/dev/null || fail "no user idgard-agent after installing"
mode() { stat -c '%a %U:%G' "$1"; }
[ "$(mode /etc/idgard/agent)" = "750 root:idgard-agent" ] || fail "/etc/idgard/agent is $(mode /etc/idgard/agent)"
[ "$(mode /etc/idgard/agent/keys)" = "700 idgard-agent:idgard-agent" ] || fail "/etc/idgard/agent/keys is $(mode /etc/idgard/agent/keys)"
[ "$(mode /etc/idgard/agent/publishers)" = "755 root:root" ] || fail "/etc/idgard/agent/publishers is $(mode /etc/idgard/agent/publishers)"
/usr/bin/idgard-server --version | grep -q "idgard-server" || fail "the installed server does not run"
/usr/bin/idgard --version | grep -q "idgard" || fail "the installed admin CLI does not run"
/usr/bin/idgard-agent --version | grep -q "idgard-agent" || fail "the installed agent does not run"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify /usr/lib/systemd/system/idgard-server.service /usr/lib/systemd/system/idgard-agent.service \
        || fail "systemd-analyze refuses the installed units"
fi
# The installed server serves as its user, from its state folder, as the unit would run it.
state=$(mktemp -d) && chown idgard:idgard "$state"
said=$(runuser -u idgard -- /usr/bin/idgard-server --data-dir "$state" agent list 2>&1) \
    || fail "the installed server cannot open its database as user idgard: $said"
rm -rf "$state"
echo "packages: installed, users and folders made, binaries run as their users"

dpkg --purge idgard-server idgard-agent >/dev/null
! getent passwd idgard >/dev/null || fail "user idgard left after purging"
! getent passwd idgard-agent >/dev/null || fail "user idgard-agent left after purging"
[ -d /etc/idgard/agent/keys ] || fail "purging removed the agent's key ring (it must stay)"
rm -rf /etc/idgard
trap - EXIT
echo "packages: purged; the users went, the configuration and keys stayed"
