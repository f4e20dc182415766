//! A granted database (`[grants.databases.<name>]`): where it is, how the host signs in, what the
//! connector may run on it.

use crate::grants::Access;
use serde::Deserialize;
use std::path::PathBuf;

/// How the host protects its connection to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseTls {
    /// Plain TCP: only when the connection writes `tls = "none"`.
    None,
    /// TLS, the server's certificate checked against `ca` and its name.
    Required,
}

/// A database the connection grants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseGrant {
    /// `postgres://user@host:port/database`, `mysql://user@host:port/database` (MariaDB too),
    /// `mssql://user@host:port/database` (SQL Server).
    /// No password here: `password` names the secret that holds it.
    pub url: String,
    /// The connection secret holding the password. The host reads it; the connector never can
    /// (`secret()` answers none for it).
    #[serde(default)]
    pub password: Option<String>,
    /// TLS, or not: there is no default, the connection says which.
    pub tls: DatabaseTls,
    /// Certificate authorities to trust for `tls = "required"`, a PEM file (relative: from the
    /// connection file).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `read-only`: queries only, in read-only sessions; `read-write`: statements too.
    pub access: Access,
    /// When given, the only statements the connector may run (compared with runs of white space
    /// made one space); anything else is refused before it reaches the database.
    #[serde(default)]
    pub statements: Option<Vec<String>>,
    /// Seconds to wait for a connection to open.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u32,
    /// Seconds one statement, or one batch of a query's rows, may take.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_s: u32,
}

fn default_connect_timeout() -> u32 {
    10
}

fn default_statement_timeout() -> u32 {
    300
}

/// The databases the host speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// PostgreSQL.
    Postgres,
    /// MariaDB and MySQL.
    MySql,
    /// SQL Server.
    Mssql,
}

impl Driver {
    /// As the URL scheme writes it.
    pub fn scheme(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::MySql => "mysql",
            Driver::Mssql => "mssql",
        }
    }
}

impl DatabaseGrant {
    /// The driver the URL's scheme names.
    pub fn driver(&self) -> Result<Driver, String> {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("postgres" | "postgresql") => Ok(Driver::Postgres),
            Some("mysql" | "mariadb") => Ok(Driver::MySql),
            Some("mssql" | "sqlserver") => Ok(Driver::Mssql),
            _ => Err(format!(
                "url `{}`: the host speaks `postgres://`, `mysql://` (MariaDB too) and `mssql://`",
                crate::text::shown(self.shown_url(), 80)
            )),
        }
    }

    /// The URL without anything between `://` and `@` (where a password could hide).
    pub fn shown_url(&self) -> &str {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(a)) if a > s => &self.url[a + 1..],
            _ => &self.url,
        }
    }

    /// What is wrong with the grant, said for the connection file's reader.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let bad = |m: String| Err(format!("database `{name}`: {m}"));
        if !crate::manifest::valid_name(name) {
            return bad("name: use lower-case letters, digits, `-` and `_`".into());
        }
        if let Err(e) = self.driver() {
            return bad(e);
        }
        let parsed = match url::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => return bad(format!("url: {e}")),
        };
        if parsed.password().is_some() {
            return bad(
                "the url holds a password: put it in a secret and name it with `password`".into(),
            );
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return bad("the url names no host".into());
        }
        if parsed.query().is_some() {
            return bad(
                "the url carries options (`?...`): TLS and timeouts are set by the grant".into(),
            );
        }
        match self.tls {
            DatabaseTls::None if self.ca.is_some() => {
                bad("`tls = \"none\"` with a CA: choose `required`".into())
            }
            DatabaseTls::Required if self.ca.is_none() => {
                bad("TLS needs something to trust: `ca` (a PEM file)".into())
            }
            _ if self.connect_timeout_s == 0 || self.statement_timeout_s == 0 => {
                bad("timeouts must be at least one second".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether the grant lets the connector run this statement.
    pub fn allows(&self, sql: &str) -> bool {
        match &self.statements {
            None => true,
            Some(list) => {
                let wanted = normalise(sql);
                list.iter().any(|s| normalise(s) == wanted)
            }
        }
    }
}

/// A statement with every run of white space made one space, trimmed.
fn normalise(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(toml: &str) -> Result<DatabaseGrant, String> {
        let g: DatabaseGrant = toml::from_str(toml).map_err(|e| e.to_string())?;
        g.check("hr").map(|()| g)
    }

    #[test]
    fn grants_name_their_driver_trust_and_no_password() {
        let g = grant(
            "url = \"postgres://idgard@db:5432/hr\"\npassword = \"db\"\ntls = \"required\"\n\
             ca = \"ca.pem\"\naccess = \"read-only\"",
        )
        .unwrap();
        assert_eq!(g.driver().unwrap(), Driver::Postgres);
        assert_eq!(g.shown_url(), "db:5432/hr");
        let g =
            grant("url = \"mysql://root@127.0.0.1/test\"\ntls = \"none\"\naccess = \"read-write\"")
                .unwrap();
        assert_eq!(g.driver().unwrap(), Driver::MySql);

        let e =
            grant("url = \"postgres://u:hunter2@db/hr\"\ntls = \"none\"\naccess = \"read-only\"")
                .unwrap_err();
        assert!(
            e.contains("holds a password") && !e.contains("hunter2"),
            "{e}"
        );
        let e = grant("url = \"oracle://u@db/hr\"\ntls = \"none\"\naccess = \"read-only\"")
            .unwrap_err();
        assert!(e.contains("postgres://"), "{e}");
        let e = grant("url = \"postgres://u@db/hr\"\ntls = \"required\"\naccess = \"read-only\"")
            .unwrap_err();
        assert!(e.contains("something to trust"), "{e}");
        let e = grant(
            "url = \"postgres://u@db/hr?sslmode=disable\"\ntls = \"none\"\naccess = \"read-only\"",
        )
        .unwrap_err();
        assert!(e.contains("options"), "{e}");
        let e = grant("url = \"postgres://u@db/hr\"\naccess = \"read-only\"").unwrap_err();
        assert!(e.contains("tls"), "{e}");
    }

    #[test]
    fn an_allow_list_compares_statements_by_their_words() {
        let g = grant(
            "url = \"postgres://u@db/hr\"\ntls = \"none\"\naccess = \"read-only\"\n\
             statements = [\"SELECT id, name\\n  FROM people\"]",
        )
        .unwrap();
        assert!(g.allows("SELECT id, name FROM people"));
        assert!(g.allows("  SELECT   id, name\tFROM people "));
        assert!(!g.allows("SELECT id, name FROM people; DROP TABLE people"));
        assert!(!g.allows("select id, name from people"));
    }
}
