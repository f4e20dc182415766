//! A real Samba 4 Active Directory domain controller for the end-to-end tests.
//!
//! Provisioning a domain takes 3 to 6 s here, so a test process starts at most one DC, on first
//! use ([`shared`]), and every test works in an OU of its own ([`Samba::new_ou`]); account names
//! (`sAMAccountName`, `userPrincipalName`) are unique in the whole domain, so tests prefix theirs
//! with their OU's tag ([`Ou::sam`]).
//!
//! Samba's LDAP ports are fixed (389 and 636; smb.conf has no setting for them), so each test
//! process gives its DC a loopback address of its own, `127.100.x.y` and up, made from its pid:
//! two test processes, or slapd on its random ports of 127.0.0.1, never compete for a port. Binding
//! 389/636 needs root (or `net.ipv4.ip_unprivileged_port_start`). Only Samba's `ldap` service runs
//! (no SMB, Kerberos, RPC or DNS ports); it listens on 389 (simple binds refused without TLS: use
//! StartTLS), 636 (LDAPS) and the global catalog ports 3268/3269 of that address. Its certificate,
//! from a test CA, names the address and `dc1.idgard.test` (Samba's own has no subjectAltName,
//! which rustls refuses).
//!
//! No samba outlives its test process: `samba -i` ends its process group when its stdin closes,
//! and its stdin is a pipe this process holds, which the kernel closes however the process ends.
//! The temporary folder (about 80 MB) stays behind; the next start removes those of test
//! processes that are gone (and kills their samba, if one is somehow left).
#![allow(dead_code, reason = "each test uses a part of the harness")]

use crate::slapd::{report, run, server_certificates};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

const SAMBA: &str = "/usr/sbin/samba";
const SAMBA_TOOL: &str = "/usr/bin/samba-tool";
/// The DNS name of the domain; `name@REALM` is a user principal name.
pub const REALM: &str = "idgard.test";
/// The domain's naming context.
pub const BASE: &str = "DC=idgard,DC=test";
/// Meets the domain's default password policy (7 characters, 3 kinds of them).
const ADMIN_PASSWORD: &str = "Idgard-Adm1n!";
/// Temporary folders of DCs start so, then the pid of their test process and a dash.
const PREFIX: &str = "idgard-samba-";
const POLL: Duration = Duration::from_millis(50);
/// Until the DC answers over LDAPS (0.25 s here when idle; the machine may be compiling).
const WAIT: Duration = Duration::from_secs(60);

/// The domain controller of this test process.
pub struct Samba {
    /// Its own loopback address (also in its certificate).
    pub host: Ipv4Addr,
    /// LDAPS.
    pub ldaps_port: u16,
    /// Plain LDAP, where only StartTLS lets a simple bind through.
    pub ldap_port: u16,
    /// The test CA that signed the DC's certificate (PEM).
    pub ca_pem: String,
    /// `DC=idgard,DC=test`.
    pub base: String,
    /// `Administrator@idgard.test`.
    pub admin_upn: String,
    pub admin_password: String,
    /// How long `samba-tool domain provision` took.
    pub provision_time: Duration,
    /// From starting samba to its first answer over LDAPS.
    pub start_time: Duration,
    dir: tempfile::TempDir,
    child: Mutex<Child>,
    ous: AtomicUsize,
}

/// An OU of one test, with `OU=people` and `OU=groups` in it.
#[derive(Debug, Clone)]
pub struct Ou {
    pub dn: String,
    pub people: String,
    pub groups: String,
    /// Unique in the domain (`t0`, `t1`, ...): the prefix of the test's account names.
    pub tag: String,
}

impl Ou {
    /// An account name unique in the domain: `tag` + `name` (keep it within 20 characters).
    pub fn sam(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }
}

/// One entry as ldapsearch printed it, values decoded.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// The values of an attribute (its name in any case), as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.attributes
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    /// The first value of an attribute, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }

    /// The first value of an attribute, as bytes (`objectGUID`, `objectSid`).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(Vec::as_slice)
    }
}

/// The DC of this test process, provisioned and started on first use. A DC that failed to start
/// fails every test that asks for it, with the same message, without trying again.
pub fn shared() -> &'static Samba {
    static DC: OnceLock<Result<Samba, String>> = OnceLock::new();
    let dc = DC.get_or_init(|| {
        std::panic::catch_unwind(Samba::start).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned())
        })
    });
    match dc {
        Ok(dc) => dc,
        Err(e) => panic!("the Samba DC did not start: {e}"),
    }
}

impl Samba {
    fn start() -> Samba {
        sweep_stale();
        let host = free_address();
        let prefix = format!("{PREFIX}{}-", std::process::id());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir();
        let dir = dir.expect("cannot create a temporary folder for Samba");
        let ca_pem = write_certificates(dir.path(), host);
        fs::create_dir(dir.path().join("run")).expect("cannot create Samba's run folder");

        let began = Instant::now();
        provision(dir.path(), host);
        let provision_time = began.elapsed();

        let began = Instant::now();
        let child = launch(dir.path());
        let mut dc = Samba {
            host,
            ldaps_port: 636,
            ldap_port: 389,
            ca_pem,
            base: BASE.into(),
            admin_upn: format!("Administrator@{REALM}"),
            admin_password: ADMIN_PASSWORD.into(),
            provision_time,
            start_time: Duration::ZERO,
            dir,
            child: Mutex::new(child),
            ous: AtomicUsize::new(0),
        };
        dc.wait_until_ready();
        dc.start_time = began.elapsed();
        eprintln!(
            "samba: DC on {host}:636 (provisioned in {:.1} s, answering {:.1} s after start) in {}",
            dc.provision_time.as_secs_f64(),
            dc.start_time.as_secs_f64(),
            dc.dir.path().display()
        );
        dc
    }

    /// `host:636`, for a grant.
    pub fn ldaps_address(&self) -> String {
        format!("{}:{}", self.host, self.ldaps_port)
    }

    /// `host:389`, for a grant.
    pub fn ldap_address(&self) -> String {
        format!("{}:{}", self.host, self.ldap_port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:{}", self.host, self.ldaps_port)
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://{}:{}", self.host, self.ldap_port)
    }

    /// The user principal name of an account name: `name@idgard.test`.
    pub fn upn(&self, sam: &str) -> String {
        format!("{sam}@{REALM}")
    }

    /// A new OU for one test, `OU=<name>-<n>` under the base, with `OU=people` and `OU=groups`.
    pub fn new_ou(&self, name: &str) -> Ou {
        let n = self.ous.fetch_add(1, Ordering::Relaxed);
        let dn = format!("OU={name}-{n},{}", self.base);
        let ou = Ou {
            people: format!("OU=people,{dn}"),
            groups: format!("OU=groups,{dn}"),
            tag: format!("t{n}"),
            dn,
        };
        self.ldapadd(&format!(
            "dn: {}\nobjectClass: organizationalUnit\n\n\
             dn: {}\nobjectClass: organizationalUnit\n\n\
             dn: {}\nobjectClass: organizationalUnit\n",
            ou.dn, ou.people, ou.groups
        ));
        ou
    }

    /// Adds entries as Administrator over LDAPS; panics with ldapadd's report on failure.
    pub fn ldapadd(&self, ldif: &str) {
        if let Err(e) = self.try_tool("ldapadd", ldif) {
            panic!("ldapadd: {e}");
        }
    }

    /// Modifies entries as Administrator over LDAPS; panics with ldapmodify's report on failure.
    pub fn ldapmodify(&self, ldif: &str) {
        if let Err(e) = self.try_tool("ldapmodify", ldif) {
            panic!("ldapmodify: {e}");
        }
    }

    /// ldapmodify as Administrator; the tool's report when the DC refuses.
    pub fn try_ldapmodify(&self, ldif: &str) -> Result<(), String> {
        self.try_tool("ldapmodify", ldif)
    }

    /// `ldapsearch -LLL` of the subtree as Administrator: the LDIF, empty when nothing matches or
    /// when `base` does not exist. Non-ASCII values come base64 (`attr:: ...`): see
    /// [`Samba::search`].
    pub fn search_ldif(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
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

    /// The entries of the subtree under `base` that match `filter`, values decoded.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Vec<Entry> {
        parse_ldif(&self.search_ldif(base, filter, attrs))
    }

    /// The entry whose objectGUID is `guid` in the form Windows writes it
    /// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), wherever it is in the domain, with its user
    /// attributes and objectGUID; `None` when there is none. The DC reads the text itself
    /// (`<GUID=...>`), so this also checks the form of a key.
    pub fn entry_by_guid(&self, guid: &str) -> Option<Entry> {
        let mut cmd = self.admin_command("ldapsearch");
        let base = format!("<GUID={guid}>");
        cmd.args(["-LLL", "-o", "ldif-wrap=no", "-s", "base", "-b", &base]);
        cmd.args(["(objectClass=*)", "*", "objectGUID"]);
        let out = run(cmd);
        match out.status.code() {
            Some(0) => parse_ldif(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .next(),
            Some(32) => None,
            _ => panic!("ldapsearch -b {base:?}: {}", report(&out)),
        }
    }

    /// The DN of the entry whose objectGUID is `guid` (see [`Samba::entry_by_guid`]).
    pub fn dn_of_guid(&self, guid: &str) -> Option<String> {
        self.entry_by_guid(guid).map(|e| e.dn)
    }

    /// A simple bind over LDAPS as `who` (a UPN, a DN or `IDGARD\name`); the tool's report when
    /// the DC refuses it (`data 52e`: wrong password; `data 533`: account disabled).
    pub fn bind(&self, who: &str, password: &str) -> Result<(), String> {
        self.bind_at(&self.ldaps_url(), who, password)
    }

    /// The same over plain LDAP, without TLS (which Active Directory refuses: result 8).
    pub fn plain_bind(&self, who: &str, password: &str) -> Result<(), String> {
        self.bind_at(&self.ldap_url(), who, password)
    }

    /// The last 40 lines of samba's own output.
    pub fn log(&self) -> String {
        log_tail(self.dir.path())
    }

    /// The test CA's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn bind_at(&self, url: &str, who: &str, password: &str) -> Result<(), String> {
        // Samba has no "Who am I?" operation: read the root DSE instead.
        let mut cmd = self.tool_command("ldapsearch");
        cmd.args(["-x", "-H", url, "-D", who, "-w", password]);
        cmd.args(["-LLL", "-s", "base", "-b", "", "(objectClass=*)", "1.1"]);
        let out = run(cmd);
        if out.status.success() {
            Ok(())
        } else {
            Err(report(&out))
        }
    }

    /// An OpenLDAP tool trusting the test CA.
    fn tool_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("LDAPTLS_CACERT", self.ca_file())
            .env_remove("LDAPTLS_REQCERT");
        cmd
    }

    /// An OpenLDAP tool bound as Administrator over LDAPS.
    fn admin_command(&self, tool: &str) -> Command {
        let mut cmd = self.tool_command(tool);
        let url = self.ldaps_url();
        let (who, pw) = (&self.admin_upn, &self.admin_password);
        cmd.args(["-x", "-H", url.as_str(), "-D", who, "-w", pw]);
        cmd
    }

    fn try_tool(&self, tool: &str, ldif: &str) -> Result<(), String> {
        // From a file: through a pipe, a large LDIF would deadlock against the tool's own output.
        let input = tempfile::Builder::new()
            .suffix(".ldif")
            .tempfile_in(self.dir.path());
        let mut input = input.expect("cannot create an LDIF file");
        input.write_all(ldif.as_bytes()).expect("cannot write LDIF");
        let mut cmd = self.admin_command(tool);
        cmd.arg("-f").arg(input.path());
        let out = run(cmd);
        if out.status.success() {
            Ok(())
        } else {
            Err(report(&out))
        }
    }

    /// Waits until the DC answers a bind over LDAPS; panics with its log if it exits or stays
    /// silent.
    fn wait_until_ready(&mut self) {
        let addr = SocketAddr::from((self.host, self.ldaps_port));
        let deadline = Instant::now() + WAIT;
        let child = self.child.get_mut().expect("samba's child handle");
        let root = child.id() as i32;
        loop {
            let child = self.child.get_mut().expect("samba's child handle");
            if let Some(status) = child.try_wait().expect("cannot poll samba") {
                kill_samba_group(root);
                panic!("samba exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, POLL).is_ok()
                && self.bind(&self.admin_upn, &self.admin_password).is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                let child = self.child.get_mut().expect("samba's child handle");
                let _ = child.kill();
                let _ = child.wait();
                kill_samba_group(root);
                panic!("samba silent for {} s:\n{}", WAIT.as_secs(), self.log());
            }
            sleep(POLL);
        }
    }
}

/// `samba-tool domain provision` into `dir/dc`, with the settings samba then runs with.
fn provision(dir: &Path, host: Ipv4Addr) {
    let at = |p: &str| dir.join(p).display().to_string();
    let options = [
        format!("interfaces={host}/8"),
        "bind interfaces only=yes".to_owned(),
        // LDAP alone: no SMB, Kerberos, RPC, NetBIOS or DNS ports.
        "server services=ldap".to_owned(),
        "tls enabled=yes".to_owned(),
        format!("tls certfile={}", at("server.pem")),
        format!("tls keyfile={}", at("server.key")),
        format!("tls cafile={}", at("ca.pem")),
        // Nothing of this DC outside its folder (the defaults are under /run and /var).
        format!("pid directory={}", at("run")),
        format!("ncalrpc dir={}", at("run/ncalrpc")),
        format!("ntp signd socket directory={}", at("run/ntp_signd")),
        format!("winbindd socket directory={}", at("run/winbindd")),
        format!("log file={}", at("run/log.%m")),
    ];
    let mut cmd = Command::new(SAMBA_TOOL);
    cmd.args(["domain", "provision", "--server-role=dc"]);
    cmd.args(["--realm=IDGARD.TEST", "--domain=IDGARD", "--host-name=dc1"]);
    cmd.args(["--dns-backend=SAMBA_INTERNAL", "--use-rfc2307"]);
    cmd.arg(format!("--adminpass={ADMIN_PASSWORD}"));
    cmd.arg(format!("--host-ip={host}"));
    cmd.arg(format!("--targetdir={}", at("dc")));
    for o in options {
        cmd.arg(format!("--option={o}"));
    }
    let out = run(cmd);
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        panic!("samba-tool domain provision: {}:\n{tail}", out.status);
    }
}

/// Starts `samba -i` (in the foreground, its own process group) on the provisioned folder.
fn launch(dir: &Path) -> Child {
    let log = File::create(dir.join("samba.log")).expect("cannot create samba.log");
    let log_err = log.try_clone().expect("cannot share samba.log");
    let spawned = Command::new(SAMBA)
        .arg("-i")
        .arg("-s")
        .arg(dir.join("dc/etc/smb.conf"))
        .current_dir(dir)
        // `samba -i` ends (it and its process group) at the end of its stdin: this end of the
        // pipe closes when this process ends, however it ends.
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("no {SAMBA}: run scripts/setup.sh"),
        Err(e) => panic!("cannot run {SAMBA}: {e}"),
    };
    fs::write(dir.join("samba.pid"), child.id().to_string()).expect("cannot write samba.pid");
    child
}

/// The last 40 lines of `dir/samba.log`.
fn log_tail(dir: &Path) -> String {
    let all = fs::read(dir.join("samba.log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&all);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A loopback address whose ports 389 and 636 are free, made from this process's pid (unique
/// among live processes): `127.100.x.y` to `127.163.x.y`, then two other ranges if it is taken.
fn free_address() -> Ipv4Addr {
    let pid = std::process::id() % (64 << 16);
    let [_, a, b, c] = pid.to_be_bytes();
    let mut last = String::new();
    for first in [100u8, 164, 191] {
        let host = Ipv4Addr::new(127, first + a, b, c);
        // Both held at once, then released for samba.
        let ldap = TcpListener::bind((host, 389));
        let ldaps = TcpListener::bind((host, 636));
        match (ldap, ldaps) {
            (Ok(_), Ok(_)) => return host,
            (Err(e), _) | (_, Err(e)) if e.kind() == ErrorKind::PermissionDenied => {
                panic!("Samba's LDAP ports are 389 and 636, which only root may bind here: {e}")
            }
            (Err(e), _) | (_, Err(e)) => last = format!("{host}: {e}"),
        }
    }
    panic!("no loopback address with ports 389 and 636 free ({last})")
}

/// Removes the folders of DCs whose test process is gone, ending their samba if it still runs.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(owner) = owner else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        let samba = fs::read_to_string(dir.join("samba.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = samba {
            // A live process of that pid is this DC's samba only if it runs in its folder (else
            // the pid was reused); a dead one may have left workers in its process group.
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            let ours = fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir);
            if !alive || ours {
                kill_samba_group(pid);
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Kills every samba process of the process group `pgid`: a samba started here leads its own
/// group, and when it ends otherwise than at the end of its stdin (say its LDAP task fails to
/// start) it leaves its workers behind.
fn kill_samba_group(pgid: i32) {
    let Ok(processes) = fs::read_dir("/proc") else {
        return;
    };
    for p in processes.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`
        let stat = fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let group = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<i32>().ok());
        let samba =
            fs::read_link(p.path().join("exe")).is_ok_and(|exe| exe.as_path() == Path::new(SAMBA));
        if group == Some(pgid)
            && samba
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Writes ca.pem, server.pem and server.key into `dir`; returns the CA's PEM. The certificate
/// names `host` and `dc1.idgard.test`.
fn write_certificates(dir: &Path, host: Ipv4Addr) -> String {
    let names = vec![host.to_string(), format!("dc1.{REALM}")];
    server_certificates(dir, names, &format!("dc1.{REALM}")).0
}

/// `unicodePwd` as an order carries it with `binary_attributes = ["unicodePwd"]`: the password
/// in double quotes, UTF-16LE, base64.
pub fn unicode_pwd_base64(password: &str) -> String {
    let bytes: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64(&bytes)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let at = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (at(0) << 16) | (at(1) << 8) | at(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding and anything outside the alphabet skipped).
pub fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The entries of `ldapsearch -LLL -o ldif-wrap=no` output (`name: text`, `name:: base64`).
fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for line in text.lines() {
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let value = match rest.strip_prefix(':') {
            Some(b64) => unbase64(b64.trim()),
            None => rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec(),
        };
        if name.eq_ignore_ascii_case("dn") {
            entries.extend(current.take());
            current = Some(Entry {
                dn: String::from_utf8_lossy(&value).into_owned(),
                attributes: Vec::new(),
            });
            continue;
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        match entry.attributes.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => entry.attributes.push((name.to_owned(), vec![value])),
        }
    }
    entries.extend(current);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_ways() {
        for (plain, coded) in [
            (&b""[..], ""),
            (&b"f"[..], "Zg=="),
            (&b"fo"[..], "Zm8="),
            (&b"foo"[..], "Zm9v"),
            (&b"foob"[..], "Zm9vYg=="),
            (&[0xff, 0x00, 0x10][..], "/wAQ"),
        ] {
            assert_eq!(base64(plain), coded);
            assert_eq!(unbase64(coded), plain);
        }
        assert_eq!(
            unicode_pwd_base64("é"),
            base64(&[b'"', 0, 0xe9, 0, b'"', 0])
        );
    }

    #[test]
    fn ldif_entries_with_base64_values() {
        let text = "dn: CN=a\\,b\\3Dc,OU=t,DC=x\ncn: a,b=c\nmember: CN=x\nmember: CN=y\n\n\
                    dn:: Q049Wm/DqyxEQz14\ncn:: Wm/Dqw==\nobjectGUID:: Eq1tg0rBfUSbUNJiTpbJyg==\n";
        let entries = parse_ldif(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].dn, "CN=a\\,b\\3Dc,OU=t,DC=x");
        assert_eq!(entries[0].values("MEMBER"), ["CN=x", "CN=y"]);
        assert_eq!(entries[1].dn, "CN=Zoë,DC=x");
        assert_eq!(entries[1].get("cn").as_deref(), Some("Zoë"));
        assert_eq!(entries[1].bytes("objectGUID").map(<[u8]>::len), Some(16));
    }
}
