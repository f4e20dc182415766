//! A real OpenLDAP slapd for the end-to-end tests.
//!
//! The end-to-end tests of the LDAP connector run against a real slapd, so that paging limits,
//! StartTLS and LDAPS, sync cookies, `memberOf` and password-policy attributes behave as in
//! production. Each [`Slapd`] has its own temporary folder (configuration, mdb data, a
//! test CA, a server certificate for 127.0.0.1, `localhost` and `ldap.idgard.test`) and two free
//! loopback ports: `ldap://` (StartTLS offered) and `ldaps://` (OpenLDAP's own tools match
//! `localhost` against this machine's name: give them 127.0.0.1). The tree `dc=idgard,dc=test`
//! holds `ou=people`, `ou=groups` and `cn=writer`, the connector's account: it may write all, and
//! its unpaged searches stop at 500 entries (result 4; pages of more than 500 are refused with
//! result 11) while paged ones see all. Overlays: syncprov with a session log (refreshes report
//! deletions, until a restart), memberof (`groupOfNames`/`member`), ppolicy without a default
//! policy: `pwdAccountLockedTime` refuses binds only for entries whose `pwdPolicySubentry` names a
//! `pwdPolicy` entry with `pwdAttribute: userPassword` and `pwdLockout: TRUE`.
#![allow(dead_code, reason = "each test uses a part of the harness")]

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::Digest as _;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const SLAPD: &str = "/usr/sbin/slapd";
const BASE: &str = "dc=idgard,dc=test";
const POLL: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(10);
const ADMIN_PASSWORD: &str = "admin-secret";

pub struct Slapd {
    pub url: String,
    pub ldaps_url: String,
    pub port: u16,
    pub ldaps_port: u16,
    pub ca_pem: String,
    pub base: String,
    pub admin_dn: String,
    pub admin_password: String,
    pub writer_dn: String,
    pub writer_password: String,
    key_pin: String,
    netns: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// No fsync per write: 2 k entries load in 0.25 s instead of many seconds.
    pub dbnosync: bool,
    /// A network namespace to run slapd (and the tools that talk to it) in: slapd then
    /// listens on that namespace's loopback, where only its partition reaches it.
    pub netns: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dbnosync: true,
            netns: None,
        }
    }
}

impl Slapd {
    pub fn start() -> Slapd {
        Slapd::start_with(Options::default())
    }

    pub fn start_with(o: Options) -> Slapd {
        let dir = tempfile::Builder::new().prefix("idgard-slapd-").tempdir();
        let dir = dir.expect("cannot create a temporary folder for slapd");
        let (ca_pem, key_pin) = write_certificates(dir.path());
        fs::create_dir(dir.path().join("data")).expect("cannot create slapd's data folder");
        fs::write(dir.path().join("slapd.conf"), config(dir.path(), &o))
            .expect("cannot write slapd.conf");
        let mut s = Slapd {
            url: String::new(),
            ldaps_url: String::new(),
            port: 0,
            ldaps_port: 0,
            ca_pem,
            base: BASE.into(),
            admin_dn: format!("cn=admin,{BASE}"),
            admin_password: ADMIN_PASSWORD.into(),
            writer_dn: format!("cn=writer,{BASE}"),
            writer_password: "writer-secret".into(),
            key_pin,
            netns: o.netns.clone(),
            dir,
            child: None,
        };
        // A port chosen here may be taken before slapd binds it (by a client's source port).
        for attempt in 1.. {
            (s.port, s.ldaps_port) = free_ports();
            s.url = format!("ldap://127.0.0.1:{}", s.port);
            s.ldaps_url = format!("ldaps://127.0.0.1:{}", s.ldaps_port);
            if s.launch() {
                break;
            }
            assert!(attempt < 5, "ports taken 5 times:\n{}", s.log(0));
        }
        s.ldapadd(&format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\n\
             dc: idgard\no: idgard\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: writer\nuserPassword: {}\n",
            s.writer_dn, s.writer_password
        ));
        s
    }

    /// Adds entries as the rootdn over `ldap://`; panics with ldapadd's report on failure.
    pub fn ldapadd(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    pub fn ldapmodify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    /// `ldapsearch -LLL` as the rootdn (no size limit): LDIF, empty when nothing matches or when
    /// `base` does not exist.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let mut cmd = self.admin_command("ldapsearch");
        cmd.args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter]);
        cmd.args(attrs);
        let out = run(cmd);
        match out.status.code() {
            Some(0) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Some(32) => String::new(), // noSuchObject
            _ => panic!("ldapsearch -b {base:?} {filter:?}: {}", report(&out)),
        }
    }

    /// The directory goes down (connections are refused at once). Idempotent. SIGTERM, so that
    /// slapd saves its contextCSN: after a SIGKILL, cookies issued since the last checkpoint are
    /// refused on restart ("consumer state is newer than provider!").
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + WAIT; // slapd exits 0.03 to 1.7 s after SIGTERM here.
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts slapd again on the same ports with the same data (and an empty session log).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + WAIT;
        while !self.launch() {
            let log = self.log(0);
            assert!(Instant::now() < deadline, "ports stay taken:\n{log}");
            sleep(Duration::from_millis(100));
        }
    }

    /// Binds as `dn` with `password` (`ldapwhoami`); panics when the directory refuses.
    pub fn bind_as(&self, dn: &str, password: &str) {
        let mut cmd = self.command("ldapwhoami");
        cmd.args(["-x", "-H", &self.url, "-D", dn, "-w", password]);
        let out = run(cmd);
        assert!(out.status.success(), "bind as {dn}: {}", report(&out));
    }

    /// SHA-256 of the server certificate's SubjectPublicKeyInfo, lower-case hex.
    pub fn server_key_pin(&self) -> String {
        self.key_pin.clone()
    }

    /// A CA certificate (PEM) that signed nothing slapd presents.
    pub fn unrelated_ca_pem() -> String {
        new_ca().0
    }

    /// Runs slapd and waits until it answers; false when one of its ports was taken.
    fn launch(&mut self) -> bool {
        let file = |name: &str| self.dir.path().join(name);
        let _ = fs::remove_file(file("slapd.pid"));
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(file("slapd.log"));
        let log = log.expect("cannot open slapd.log");
        let log_start = log.metadata().map_or(0, |m| m.len());
        let log_err = log.try_clone().expect("cannot share slapd.log");
        let urls = format!("{}/ {}/", self.url, self.ldaps_url);
        // `-d none` keeps slapd in the foreground (the Child is slapd) and logs only its banner
        // and its errors; `-d 0` would hide the errors too.
        let spawned = self
            .command(SLAPD)
            .arg("-f")
            .arg(file("slapd.conf"))
            .args(["-h", urls.as_str(), "-d", "none"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        self.child = Some(match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("no {SLAPD}: run scripts/setup.sh"),
            Err(e) => panic!("cannot run {SLAPD}: {e}"),
        });
        // slapd writes its pid file once its ports are bound and its database is open.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + WAIT;
        loop {
            let child = self.child.as_mut().expect("slapd was just started");
            if let Some(status) = child.try_wait().expect("cannot poll slapd") {
                self.child = None;
                let log = self.log(log_start);
                let taken = log.contains("Address already in use");
                assert!(taken, "slapd exited ({status}):\n{log}");
                return false;
            }
            // In a namespace of its own, slapd is out of this process's reach: a bind from inside
            // the namespace says it answers (its pid file can come before its listener does).
            let up = |s: &Self| match s.netns {
                Some(_) => run(s.admin_command("ldapwhoami")).status.success(),
                None => TcpStream::connect_timeout(&addr, POLL).is_ok(),
            };
            if file("slapd.pid").exists() && up(self) {
                return true;
            }
            if Instant::now() > deadline {
                let mut child = self.child.take().expect("slapd was just started");
                let _ = child.kill();
                let _ = child.wait();
                let log = self.log(log_start);
                panic!("slapd silent for 10 s:\n{log}");
            }
            sleep(POLL);
        }
    }

    /// The last 40 lines of slapd's log after byte `from`.
    fn log(&self, from: u64) -> String {
        let all = fs::read(self.dir.path().join("slapd.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(all.get(from as usize..).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A command run where slapd runs (its namespace, if any).
    fn command(&self, program: &str) -> Command {
        crate::netns::command_in(self.netns.as_deref(), program)
    }

    fn admin_command(&self, tool: &str) -> Command {
        let mut cmd = self.command(tool);
        let (dn, pw) = (&self.admin_dn, &self.admin_password);
        cmd.args(["-x", "-H", &self.url, "-D", dn, "-w", pw]);
        cmd
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        // From a file: through a pipe, a large LDIF would deadlock against the tool's own output.
        let input = tempfile::Builder::new()
            .suffix(".ldif")
            .tempfile_in(self.dir.path());
        let mut input = input.expect("cannot create an LDIF file");
        input.write_all(ldif.as_bytes()).expect("cannot write LDIF");
        let mut cmd = self.admin_command(tool);
        cmd.arg("-f").arg(input.path());
        let out = run(cmd);
        assert!(out.status.success(), "{tool}: {}", report(&out));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // the data goes with the folder: no clean shutdown needed
            let _ = child.wait();
        }
    }
}

pub(crate) fn run(mut cmd: Command) -> Output {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("no {cmd:?}: run scripts/setup.sh"),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// A failed tool's status, last line of output (ldapadd names the entry it was at) and errors.
pub(crate) fn report(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rfind(|l| !l.is_empty()).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!("{} at {last:?}: {}", out.status, stderr.trim())
}

/// Two distinct free loopback ports (both held while the second is chosen).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("no free loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("a bound port").port();
    (port(&a), port(&b))
}

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A new test CA: its certificate (PEM) and what signs with it.
fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("rcgen cannot generate a key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name = named("idgard test CA");
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = ca.self_signed(&key).expect("rcgen cannot sign a CA");
    (cert.pem(), Issuer::new(ca, key))
}

/// Writes ca.pem, server.pem and server.key (PKCS#8) into `dir`: the CA's PEM and the key's pin.
fn write_certificates(dir: &Path) -> (String, String) {
    let names = ["127.0.0.1", "localhost", "ldap.idgard.test"].map(String::from);
    server_certificates(dir, names.to_vec(), "ldap.idgard.test")
}

/// A new CA and a client certificate it signs for each of `names` (a DNS name each, for
/// client authentication), written into `dir` as ca.pem, `<name>.pem` and `<name>.key`.
pub fn client_certificates(dir: &Path, names: &[&str]) {
    let (ca_pem, issuer) = new_ca();
    fs::write(dir.join("ca.pem"), ca_pem).expect("cannot write ca.pem");
    for name in names {
        let mut client = CertificateParams::new(vec![name.to_string()]).expect("a valid name");
        client.distinguished_name = named(name);
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        client.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("rcgen cannot generate a key");
        let cert = client.signed_by(&key, &issuer).expect("rcgen cannot sign");
        fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("cannot write a certificate");
        fs::write(dir.join(format!("{name}.key")), key.serialize_pem())
            .expect("cannot write a key");
    }
}

/// A new CA and a server certificate it signs for `names` (subject `cn`), written into `dir` as
/// ca.pem, server.pem and server.key (mode 0600: Samba refuses a key others can read); returns
/// the CA's PEM and the SHA-256 pin of the server's key.
pub fn server_certificates(dir: &Path, names: Vec<String>, cn: &str) -> (String, String) {
    use rcgen::PublicKeyData as _;
    use std::os::unix::fs::PermissionsExt as _;
    let (ca_pem, issuer) = new_ca();
    let mut server = CertificateParams::new(names).expect("valid subject alt names");
    server.distinguished_name = named(cn);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("rcgen cannot generate a key");
    let cert = server.signed_by(&key, &issuer).expect("rcgen cannot sign");
    for (name, pem) in [
        ("ca.pem", &ca_pem),
        ("server.pem", &cert.pem()),
        ("server.key", &key.serialize_pem()),
    ] {
        fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    }
    fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))
        .expect("cannot restrict server.key");
    let pin = sha2::Sha256::digest(key.subject_public_key_info());
    (ca_pem, hex::encode(pin))
}

/// slapd.conf, as checked by hand with slapd 2.5.13 (Debian bookworm).
fn config(dir: &Path, o: &Options) -> String {
    let d = dir.display();
    let nosync = if o.dbnosync { "dbnosync" } else { "" };
    let writer = format!("dn.exact=\"cn=writer,{BASE}\"");
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
moduleload memberof
moduleload ppolicy
pidfile "{d}/slapd.pid"
argsfile "{d}/slapd.args"
TLSCACertificateFile "{d}/ca.pem"
TLSCertificateFile "{d}/server.pem"
TLSCertificateKeyFile "{d}/server.key"

database mdb
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw "{ADMIN_PASSWORD}"
directory "{d}/data"
maxsize 1073741824
{nosync}
index objectClass,uid,cn,entryUUID,member,modifyTimestamp,entryCSN eq
limits {writer} size.soft=500 size.hard=500 size.pr=500 size.prtotal=unlimited
access to attrs=userPassword
  by {writer} write
  by * auth
access to *
  by {writer} write
  by users read
  by * none

overlay syncprov
syncprov-checkpoint 100 10
syncprov-sessionlog 10000

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay ppolicy
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ldapsearch as the writer, trusting `ca` or the system's roots: exit code, entries, report.
    fn writer_search(
        s: &Slapd,
        url: &str,
        ca: Option<&Path>,
        args: &[&str],
    ) -> (i32, usize, String) {
        let mut cmd = Command::new("ldapsearch");
        cmd.args(["-x", "-H", url, "-D", &s.writer_dn]);
        cmd.args(["-w", &s.writer_password]).args(args);
        cmd.env_remove("LDAPTLS_REQCERT")
            .env_remove("LDAPTLS_CACERT");
        if let Some(ca) = ca {
            cmd.env("LDAPTLS_CACERT", ca);
        }
        let out = run(cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        let entries = text.lines().filter(|l| l.starts_with("dn: ")).count();
        (out.status.code().unwrap_or(-1), entries, report(&out))
    }

    fn person(uid: &str) -> String {
        let entry = "objectClass: inetOrgPerson\nsn: T";
        format!("dn: uid={uid},ou=people,{BASE}\n{entry}\nuid: {uid}\ncn: {uid}\n\n")
    }

    #[test]
    fn slapd_starts_and_answers_over_ldaps_and_starttls() {
        let s = Slapd::start();
        s.ldapadd(&person("ada"));
        let found = s.search(&s.base, "(uid=ada)", &["cn"]);
        let expected = format!("dn: uid=ada,ou=people,{BASE}\ncn: ada\n");
        assert!(found.starts_with(&expected), "{found}");

        let ca = s.dir.path().join("ca.pem");
        let base = ["-b", BASE, "-s", "base", "dn"];
        let starttls = [&["-ZZ"][..], &base[..]].concat();
        for (url, args) in [(&s.url, &starttls[..]), (&s.ldaps_url, &base[..])] {
            let (code, entries, why) = writer_search(&s, url, Some(ca.as_path()), args);
            assert_eq!((code, entries), (0, 1), "{url} {args:?}: {why}");
            let (code, _, _) = writer_search(&s, url, None, args);
            assert_ne!(code, 0, "{url} {args:?} trusted without the test CA");
        }

        let bulk: String = (0..600).map(|i| person(&format!("bulk{i:04}"))).collect();
        s.ldapadd(&bulk);
        let people = format!("ou=people,{BASE}");
        let all = ["-b", &people, "(objectClass=inetOrgPerson)", "dn"];
        let (code, entries, why) = writer_search(&s, &s.url, None, &all);
        assert_eq!((code, entries), (4, 500), "unpaged: {why}");
        let paged = [&["-E", "pr=500/noprompt"][..], &all[..]].concat();
        let (code, entries, why) = writer_search(&s, &s.url, None, &paged);
        assert_eq!((code, entries), (0, 601), "paged: {why}");
    }
}
