//! A slapd for the directory demo (`scripts/demo.sh --directory`): the tests' slapd (mdb,
//! syncprov, memberof, ppolicy, StartTLS with a CA of its own, a `cn=writer` bind account),
//! started in the background. It writes `<dir>/slapd.env` (shell variables: the port, the
//! writer's and the administrator's DN and password) and `<dir>/ca.pem`, then runs until its
//! standard input closes, and stops slapd.
//!
//! ```sh
//! idgard-demo-slapd target/demo-directory/slapd < fifo
//! ```
//!
//! With `IDGARD_DEMO_SLAPD_SYNC=1`, slapd syncs every write to disk (no `dbnosync`).

use idgard_tests::slapd::{Options, Slapd};
use std::io::Read as _;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: idgard-demo-slapd DIR (runs until standard input closes)");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("cannot create the demo's slapd folder");
    let sync = std::env::var("IDGARD_DEMO_SLAPD_SYNC").is_ok_and(|v| v == "1");
    let d = Slapd::start_with(Options {
        dbnosync: !sync,
        ..Options::default()
    });
    std::fs::write(dir.join("ca.pem"), &d.ca_pem).expect("cannot write ca.pem");
    let env = format!(
        "slapd_port={}\nslapd_base='{}'\nwriter_dn='{}'\nwriter_password='{}'\nadmin_dn='{}'\nadmin_password='{}'\n",
        d.port, d.base, d.writer_dn, d.writer_password, d.admin_dn, d.admin_password
    );
    std::fs::write(dir.join("slapd.env"), env).expect("cannot write slapd.env");
    let writes = if sync {
        "each write synced"
    } else {
        "dbnosync"
    };
    eprintln!(
        "slapd listening on ldap://127.0.0.1:{} (StartTLS; {writes})",
        d.port
    );
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(d);
}
