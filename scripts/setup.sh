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

# Installs Debian packages (names as arguments), updating the package lists only when the
# first attempt fails.
apt_install() {
    [ $# -gt 0 ] || return 0
    echo "setup: installing $* (apt-get)"
    local sudo_=""
    [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo_ apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
        $sudo_ apt-get update -q >/dev/null
        $sudo_ apt-get install -y -q --no-install-recommends "$@" >/dev/null
    fi
}

# System packages the connectors and their tests need: clang builds ring (TLS inside connectors)
# for wasm32-wasip2; slapd and ldap-utils are the directory the LDAP connector is tested against;
# Samba is the Active Directory domain controller its `active-directory` dialect is tested against
# (the tests provision and run their own DC, tests/src/samba.rs: no Samba service is needed).
need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need_apt+=(ldap-utils)
# iproute2: the partitioned-network test builds its topology with `ip netns`.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
# haproxy: the replica tests put two servers behind it, as a deployment would.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
for pkg in samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
done
apt_install ${need_apt[@]+"${need_apt[@]}"}

# OpenSSL's headers and libcrypto: the server's embedded database is SQLCipher, which encrypts
# its pages with libcrypto; the TDS mock server below needs them too.
need_ssl=()
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q "ok installed" || need_ssl+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_ssl+=(pkg-config)
apt_install ${need_ssl[@]+"${need_ssl[@]}"}

# SQL Server cannot run here: the host's SQL Server driver is tested against a TDS mock server
# from crates.io.
if ! command -v mssql-mock-tds >/dev/null 2>&1; then
    echo "setup: installing mssql-mock-tds 0.3.0 (cargo install)"
    cargo install --locked --quiet mssql-mock-tds --version 0.3.0
fi

# Debian packages of the server and the agent are made with cargo-deb (a pinned version:
# scripts/packages.sh builds and installs them).
if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
    echo "setup: installing cargo-deb 3.8.0 (cargo install)"
    cargo install --locked --quiet cargo-deb --version 3.8.0
fi

# The Python test services (scim2-server for the SCIM connector, aiosmtpd for mail) run in a
# virtual environment of their own (tests/requirements.txt pins them); pip again only when the
# requirements changed.
venv=target/py-venv
if [ ! -x "$venv/bin/python" ] || [ tests/requirements.txt -nt "$venv/.installed" ]; then
    echo "setup: scim2-server, aiosmtpd and their tools in $venv (pip)"
    mkdir -p target
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    touch "$venv/.installed"
fi

# The web UI's browser tests (tests/all/ui.rs): Debian's Chromium, driven by playwright-core from
# tests/web; oidc-provider there is the OpenID Connect provider the sign-in is tested against.
# Never let npm fetch a browser of its own (no network for that here): Chromium comes from apt.
need_web_apt=()
[ -x /usr/bin/chromium ] || need_web_apt+=(chromium)
apt_install ${need_web_apt[@]+"${need_web_apt[@]}"}
if ! command -v npm >/dev/null 2>&1; then
    echo "setup: Node.js 20 or later with npm is needed for tests/web (the browser tests)" >&2
    exit 1
fi
# npm ci again only when the lock file changed since the last install (npm writes
# node_modules/.package-lock.json at each install).
if [ ! -f tests/web/node_modules/.package-lock.json ] \
    || [ tests/web/package-lock.json -nt tests/web/node_modules/.package-lock.json ]; then
    echo "setup: npm ci in tests/web"
    (cd tests/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
fi
echo "setup: $(/usr/bin/chromium --version 2>/dev/null), tests/web: $(cd tests/web && node -p "Object.entries(require('./package.json').dependencies).map(([k, v]) => k + '@' + v).join(' ')")"
