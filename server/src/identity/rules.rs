//! Provisioning rules: a versioned TOML file, checked whole when loaded.
//!
//! It names the authoritative connection whose entries are the identities, and for each target
//! connection which identities get an entry (a filter), how its key and attributes are computed,
//! how its existing entries are correlated to identities, what happens when an identity leaves,
//! and the thresholds that stop a run that would change too much. It also declares the jobs
//! (which connections, in which order, on which schedule). Expressions are CEL: no loops, no
//! side effects, no I/O. Every error names the line it comes from.

use anyhow::{Context as _, Result, anyhow, bail};
use cel::{Context, Env, Program, Value};

mod eval;
mod groups;
pub mod names;
pub use eval::{Attrs, Bound, Evaluator, Values};
pub use groups::{GroupCreate, Groups};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// The rules format this server reads.
pub const VERSION: u32 = 1;

/// Loaded, checked rules.
#[derive(Clone)]
pub struct Rules {
    /// Where they came from (for messages).
    pub origin: String,
    /// SHA-256 of the file, shown with every run that used it.
    pub digest: String,
    /// The authoritative source of identities.
    pub identities: Source,
    /// Target connections, in the file's order.
    pub targets: Vec<Target>,
    /// Thresholds per connection.
    pub thresholds: BTreeMap<String, Thresholds>,
    /// Declared jobs.
    pub jobs: Vec<JobDef>,
    env: Arc<Env>,
    lookups: Value,
    /// Every expression's text and line.
    written: Vec<(String, usize)>,
}

/// The connection whose entries are the identities.
#[derive(Clone, Debug)]
pub struct Source {
    /// Connection name.
    pub connection: String,
    /// Entity type of the people.
    pub entity_type: String,
    /// The attribute people search identities by besides their key (its first value, by
    /// prefix, case aside), such as `last_name`.
    pub search: Option<String>,
}

/// What one target connection should hold.
#[derive(Clone)]
pub struct Target {
    /// Connection name.
    pub connection: String,
    /// Entity type of the accounts.
    pub entity_type: String,
    /// Which identities get an account (all when absent).
    pub filter: Option<Expr>,
    /// The account's key.
    pub key: Expr,
    /// Attributes, by name.
    pub attributes: Vec<(String, Expr)>,
    /// How existing accounts are matched to identities.
    pub correlation: Correlation,
    /// The attribute that says whether an account is enabled (`"true"` / `"false"`).
    pub enabled_attribute: Option<String>,
    /// The attribute under which the target reports an account's key, if it does (the key
    /// column of a CSV file): what a create writes is then known whole, and the target's
    /// export of it is no change.
    pub key_attribute: Option<String>,
    /// When an identity leaves (or stops passing the filter).
    pub leave: Leave,
    /// Attempts for an order before it fails for good.
    pub max_attempts: u32,
    /// Seconds before a failed order is offered again (doubled at each attempt).
    pub retry_after_s: u64,
    /// Group memberships, when the rules manage them.
    pub groups: Option<Groups>,
}

/// Correlation: an account belongs to the identity whose `identity` attribute (or key) equals
/// the value of the `account` expression.
#[derive(Clone)]
pub struct Correlation {
    /// The identity attribute compared; `None` for the identity's key.
    pub identity: Option<String>,
    /// Computed from the account (`account.<attribute>` values).
    pub account: Expr,
    /// Link matches at once (`auto`), or leave them `unlinked` for review.
    pub auto_link: bool,
}

/// What happens to the account of an identity that left.
#[derive(Clone, Debug)]
pub struct Leave {
    /// Disable it first (needs `enabled_attribute`).
    pub disable: bool,
    /// Delete it this many days after the identity left (never when absent).
    pub delete_after_days: Option<u32>,
}

/// Limits on one run's changes to a connection; a run over one stops as `blocked`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Entries inserted (synchronize) or created (provisioning).
    pub inserts: Option<u64>,
    /// Entries changed, enabled or disabled.
    pub updates: Option<u64>,
    /// Entries deleted.
    pub deletes: Option<u64>,
    /// Inserts as a percentage of the entries held before the run.
    pub inserts_percent: Option<f64>,
    /// Updates as a percentage.
    pub updates_percent: Option<f64>,
    /// Deletes as a percentage.
    pub deletes_percent: Option<f64>,
}

/// Counts a threshold is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Changes {
    /// Inserted or created.
    pub inserts: u64,
    /// Changed, enabled or disabled.
    pub updates: u64,
    /// Deleted.
    pub deletes: u64,
}

impl Thresholds {
    /// The first threshold these changes exceed, said for people; `held` is the number of
    /// entries before the run (percentages are not checked against an empty connection).
    pub fn exceeded(&self, c: &Changes, held: u64) -> Option<String> {
        let abs = [
            ("inserts", self.inserts, c.inserts),
            ("updates", self.updates, c.updates),
            ("deletes", self.deletes, c.deletes),
        ];
        for (what, limit, n) in abs {
            if let Some(limit) = limit
                && n > limit
            {
                return Some(format!("{n} {what}, more than the threshold of {limit}"));
            }
        }
        if held == 0 {
            return None;
        }
        let pct = [
            ("inserts", self.inserts_percent, c.inserts),
            ("updates", self.updates_percent, c.updates),
            ("deletes", self.deletes_percent, c.deletes),
        ];
        for (what, limit, n) in pct {
            let share = n as f64 * 100.0 / held as f64;
            if let Some(limit) = limit
                && share > limit
            {
                return Some(format!(
                    "{n} {what} ({share:.1}% of {held}), more than the threshold of {limit}%"
                ));
            }
        }
        None
    }
}

/// A declared job: the standard pipeline over some connections, in order.
#[derive(Clone, Debug)]
pub struct JobDef {
    /// Name.
    pub name: String,
    /// The agent that runs every task, or `None`: each connection's task runs on the agent that
    /// reports that connection (connections in several partitioned networks).
    pub agent: Option<String>,
    /// Connections: the identities' source (if listed) runs first, then the targets.
    pub connections: Vec<String>,
    /// Complete runs: a cron expression and its time zone.
    pub schedule: Option<Schedule>,
    /// Incremental runs.
    pub incremental_schedule: Option<Schedule>,
}

/// When a job runs.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The cron expression, as written.
    pub cron: String,
    /// Parsed.
    pub parsed: croner::Cron,
    /// Its time zone.
    pub tz: chrono_tz::Tz,
}

impl Schedule {
    /// The first firing strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        use chrono::TimeZone as _;
        let t = self.tz.timestamp_millis_opt(after_ms).single()?;
        self.parsed
            .find_next_occurrence(&t, false)
            .ok()
            .map(|n| n.timestamp_millis())
    }
}

/// A compiled expression and where it was written.
#[derive(Clone)]
pub struct Expr {
    /// Its text.
    pub text: String,
    /// The line of the file it starts on.
    pub line: usize,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (line {})", self.text, self.line)
    }
}

// ---------------------------------------------------------------------------------------------
// The file, as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Spanned<u32>,
    identities: SourceFile,
    #[serde(default)]
    targets: Vec<TargetFile>,
    #[serde(default)]
    thresholds: BTreeMap<String, Thresholds>,
    #[serde(default)]
    lookups: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    jobs: Vec<JobFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    connection: String,
    #[serde(default = "person")]
    entity_type: String,
    #[serde(default)]
    search: Option<String>,
}

fn person() -> String {
    "person".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    connection: Spanned<String>,
    #[serde(default = "account")]
    entity_type: String,
    filter: Option<Spanned<String>>,
    key: Spanned<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Spanned<String>>,
    correlation: CorrelationFile,
    enabled_attribute: Option<String>,
    key_attribute: Option<String>,
    #[serde(default)]
    leave: LeaveFile,
    #[serde(default = "three")]
    max_attempts: u32,
    #[serde(default = "sixty")]
    retry_after_s: u64,
    groups: Option<groups::GroupsFile>,
}

fn account() -> String {
    "account".into()
}
fn three() -> u32 {
    3
}
fn sixty() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrelationFile {
    #[serde(default)]
    identity: Option<String>,
    account: Spanned<String>,
    #[serde(default = "auto")]
    link: Spanned<String>,
}

fn auto() -> Spanned<String> {
    Spanned::new(0..0, "auto".into())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LeaveFile {
    #[serde(default)]
    disable: bool,
    delete_after_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Spanned<String>,
    agent: Option<String>,
    connections: Vec<String>,
    schedule: Option<Spanned<String>>,
    incremental_schedule: Option<Spanned<String>>,
    #[serde(default = "utc")]
    timezone: Spanned<String>,
}

fn utc() -> Spanned<String> {
    Spanned::new(0..0, "UTC".into())
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Variables an expression may read, by where it is used.
const IDENTITY_VARS: &[&str] = &["identity", "values", "lookups"];
const ACCOUNT_VARS: &[&str] = &["account", "lookups"];

impl Rules {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the rules file {}", path.display()))?;
        Rules::parse(&text, &path.display().to_string())
    }

    /// Checks rules given as text; `origin` names them in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Rules> {
        use sha2::Digest as _;
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            match line {
                Some(l) => anyhow!("{origin}:{l}: {}", e.message()),
                None => anyhow!("{origin}: {}", e.message()),
            }
        })?;
        let at = |span: std::ops::Range<usize>| format!("{origin}:{}", line_of(text, span.start));
        if *file.version.get_ref() != VERSION {
            bail!(
                "{}: rules version {} is not one this server reads (it reads version {VERSION})",
                at(file.version.span()),
                file.version.get_ref()
            );
        }
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .map_err(|e| anyhow!("cannot set up the expression language: {e}"))?;
        let env = Arc::new(env);
        // Every expression, as written, for the checks that need the data (`rules/names.rs`).
        let written: std::cell::RefCell<Vec<(String, usize)>> = Default::default();
        let compile = |s: &Spanned<String>, allowed: &[&str]| -> Result<Expr> {
            let start = s.span().start;
            // The span covers the quotes of a basic or literal string: skip one.
            let first_line = line_of(text, start);
            let program = env.compile(s.get_ref()).map_err(|e| {
                let rel = e
                    .errors
                    .first()
                    .map(|p| p.pos.0.max(1) as usize)
                    .unwrap_or(1);
                let msgs: Vec<String> = e.errors.iter().map(|p| p.msg.clone()).collect();
                anyhow!(
                    "{origin}:{}: expression `{}` does not parse: {}",
                    first_line + rel - 1,
                    s.get_ref(),
                    msgs.join("; ")
                )
            })?;
            for var in program.references().variables() {
                if !allowed.contains(&var) {
                    bail!(
                        "{origin}:{first_line}: expression `{}` reads `{var}`, which does not exist here (it may read: {})",
                        s.get_ref(),
                        allowed.join(", ")
                    );
                }
            }
            written.borrow_mut().push((s.get_ref().clone(), first_line));
            Ok(Expr {
                text: s.get_ref().clone(),
                line: first_line,
                program: Arc::new(program),
            })
        };
        idgard_model::names::valid_name(&file.identities.connection)
            .then_some(())
            .with_context(|| {
                format!(
                    "{origin}: identities.connection `{}` is not a valid connection name",
                    file.identities.connection
                )
            })?;
        if let Some(a) = &file.identities.search
            && (a.is_empty()
                || a.len() > 64
                || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            bail!(
                "{origin}: identities.search `{a}`: an attribute name is letters, digits and `_`"
            );
        }
        let mut targets = Vec::new();
        for t in &file.targets {
            let name = t.connection.get_ref();
            if !idgard_model::names::valid_name(name) {
                bail!(
                    "{}: `{name}` is not a valid connection name",
                    at(t.connection.span())
                );
            }
            if *name == file.identities.connection {
                bail!(
                    "{}: `{name}` is the identities' source and cannot also be a target",
                    at(t.connection.span())
                );
            }
            if targets.iter().any(|x: &Target| x.connection == *name) {
                bail!(
                    "{}: target `{name}` is declared twice",
                    at(t.connection.span())
                );
            }
            let link = t.correlation.link.get_ref();
            let auto_link = match link.as_str() {
                "auto" => true,
                "review" => false,
                other => bail!(
                    "{}: correlation.link is `auto` or `review`, not `{other}`",
                    at(t.correlation.link.span())
                ),
            };
            if t.leave.disable && t.enabled_attribute.is_none() {
                bail!(
                    "{}: leave.disable needs `enabled_attribute` (the attribute that says whether an account is enabled)",
                    at(t.connection.span())
                );
            }
            if t.key_attribute.is_some() && t.key_attribute == t.enabled_attribute {
                bail!(
                    "{}: key_attribute and enabled_attribute name the same attribute",
                    at(t.connection.span())
                );
            }
            let mut attributes = Vec::new();
            for (n, e) in &t.attributes {
                if Some(n) == t.enabled_attribute.as_ref() {
                    bail!(
                        "{}: `{n}` is the enabled attribute; idgard sets it itself",
                        at(e.span())
                    );
                }
                if Some(n) == t.key_attribute.as_ref() {
                    bail!(
                        "{}: `{n}` is the key attribute; it holds the account's key",
                        at(e.span())
                    );
                }
                attributes.push((n.clone(), compile(e, IDENTITY_VARS)?));
            }
            targets.push(Target {
                connection: name.clone(),
                entity_type: t.entity_type.clone(),
                filter: t
                    .filter
                    .as_ref()
                    .map(|f| compile(f, IDENTITY_VARS))
                    .transpose()?,
                key: compile(&t.key, IDENTITY_VARS)?,
                attributes,
                correlation: Correlation {
                    identity: t
                        .correlation
                        .identity
                        .clone()
                        .filter(|i| i != "key" && !i.is_empty()),
                    account: compile(&t.correlation.account, ACCOUNT_VARS)?,
                    auto_link,
                },
                enabled_attribute: t.enabled_attribute.clone(),
                key_attribute: t.key_attribute.clone(),
                leave: Leave {
                    disable: t.leave.disable,
                    delete_after_days: t.leave.delete_after_days,
                },
                max_attempts: t.max_attempts.max(1),
                retry_after_s: t.retry_after_s,
                groups: t
                    .groups
                    .as_ref()
                    .map(|g| g.check(&t.entity_type, &at, &compile, IDENTITY_VARS))
                    .transpose()?,
            });
        }
        let known =
            |c: &str| c == file.identities.connection || targets.iter().any(|t| t.connection == c);
        for c in file.thresholds.keys() {
            if !known(c) {
                bail!(
                    "{origin}: thresholds for `{c}`, which is neither the identities' source nor a target"
                );
            }
        }
        let mut jobs: Vec<JobDef> = Vec::new();
        for j in &file.jobs {
            let name = j.name.get_ref();
            if !idgard_model::names::valid_name(name) {
                bail!("{}: `{name}` is not a valid job name", at(j.name.span()));
            }
            if jobs.iter().any(|x| x.name == *name) {
                bail!("{}: job `{name}` is declared twice", at(j.name.span()));
            }
            if j.connections.is_empty() {
                bail!("{}: job `{name}` names no connection", at(j.name.span()));
            }
            for c in &j.connections {
                if !known(c) {
                    bail!(
                        "{}: job `{name}` names `{c}`, which is neither the identities' source nor a target",
                        at(j.name.span())
                    );
                }
            }
            let tz: chrono_tz::Tz = j.timezone.get_ref().parse().map_err(|_| {
                anyhow!(
                    "{}: `{}` is not a time zone (use an IANA name such as `Europe/Paris`)",
                    at(j.timezone.span()),
                    j.timezone.get_ref()
                )
            })?;
            let schedule = |s: &Option<Spanned<String>>| -> Result<Option<Schedule>> {
                let Some(s) = s else { return Ok(None) };
                let parsed = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Disallowed)
                    .build()
                    .parse(s.get_ref())
                    .map_err(|e| {
                        anyhow!(
                            "{}: `{}` is not a cron expression (minute hour day month weekday): {e}",
                            at(s.span()),
                            s.get_ref()
                        )
                    })?;
                Ok(Some(Schedule {
                    cron: s.get_ref().clone(),
                    parsed,
                    tz,
                }))
            };
            jobs.push(JobDef {
                name: name.clone(),
                agent: j.agent.clone(),
                connections: j.connections.clone(),
                schedule: schedule(&j.schedule)?,
                incremental_schedule: schedule(&j.incremental_schedule)?,
            });
        }
        let lookups: HashMap<String, Value> = file
            .lookups
            .iter()
            .map(|(k, table)| {
                let t: HashMap<String, Value> = table
                    .iter()
                    .map(|(a, b)| (a.clone(), Value::from(b.clone())))
                    .collect();
                (k.clone(), Value::from(t))
            })
            .collect();
        Ok(Rules {
            origin: origin.to_owned(),
            digest: hex::encode(sha2::Sha256::digest(text.as_bytes())),
            identities: Source {
                connection: file.identities.connection,
                entity_type: file.identities.entity_type,
                search: file.identities.search,
            },
            targets,
            thresholds: file.thresholds,
            jobs,
            env,
            lookups: Value::from(lookups),
            written: written.into_inner(),
        })
    }

    /// The target for a connection.
    pub fn target(&self, connection: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.connection == connection)
    }

    /// The thresholds of a connection (none when not declared).
    pub fn thresholds(&self, connection: &str) -> Thresholds {
        self.thresholds.get(connection).cloned().unwrap_or_default()
    }

    /// A declared job.
    pub fn job(&self, name: &str) -> Option<&JobDef> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// An evaluator for expressions over one entry at a time.
    pub fn evaluator(&self) -> Evaluator<'_> {
        let mut root = Context::with_env(self.env.clone());
        root.add_variable_from_value("lookups", self.lookups.clone());
        Evaluator { root }
    }
}

#[cfg(test)]
mod tests;
