//! Groups of a target: which groups each identity's account belongs to, which groups the rules
//! manage, and how a missing group is created.
//!
//! ```toml
//! [targets.groups]
//! member_of = '["staff-" + identity.department.lowerAscii()]'
//! name_attribute = "cn"
//! managed = 'group.name.startsWith("staff-")'
//! [targets.groups.create.attributes]
//! dn = '"cn=" + group.name + ",ou=groups,dc=example,dc=org"'
//! ```

use super::Expr;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// Compiles an expression for the variables given.
pub(super) type Compile<'a> = dyn Fn(&Spanned<String>, &[&str]) -> Result<Expr> + 'a;

/// Variables a group expression may read.
pub(super) const GROUP_VARS: &[&str] = &["group", "lookups"];

/// How a target's group memberships follow the identities.
#[derive(Clone, Debug)]
pub struct Groups {
    /// The entity type of the target's groups.
    pub entity_type: String,
    /// The names of the groups an identity's account belongs to (identity variables; a list,
    /// one name, or none).
    pub member_of: Expr,
    /// The group attribute holding its name, which `member_of` gives (the correlation of
    /// groups).
    pub name_attribute: String,
    /// The group attribute listing its members by account key.
    pub member_attribute: String,
    /// Which groups the rules manage (`group.name`); all when absent. In a managed group the
    /// rules add and remove the accounts linked to identities, and leave any other member alone.
    pub managed: Option<Expr>,
    /// How a group that does not exist yet is created; without it, a missing group is an error.
    pub create: Option<GroupCreate>,
}

/// How a missing group is created.
#[derive(Clone, Debug)]
pub struct GroupCreate {
    /// The key asked for the new group (`group.name` when absent); a target that keys its
    /// entries itself answers with its own.
    pub key: Option<Expr>,
    /// Its attributes besides its name and its first members.
    pub attributes: Vec<(String, Expr)>,
}

/// `[targets.groups]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupsFile {
    #[serde(default = "group")]
    entity_type: String,
    member_of: Spanned<String>,
    name_attribute: Spanned<String>,
    #[serde(default = "member")]
    member_attribute: String,
    managed: Option<Spanned<String>>,
    create: Option<GroupCreateFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupCreateFile {
    key: Option<Spanned<String>>,
    #[serde(default)]
    attributes: BTreeMap<String, Spanned<String>>,
}

fn group() -> String {
    "group".into()
}

fn member() -> String {
    "member".into()
}

impl GroupsFile {
    /// Checks and compiles; `account_type` is the target's entity type of accounts, `at` says
    /// where a span is, `compile` compiles an expression for the variables given.
    pub(super) fn check(
        &self,
        account_type: &str,
        at: &dyn Fn(std::ops::Range<usize>) -> String,
        compile: &Compile<'_>,
        identity_vars: &[&str],
    ) -> Result<Groups> {
        if self.entity_type == account_type {
            bail!(
                "{}: groups.entity_type `{}` is the accounts' entity type too",
                at(self.member_of.span()),
                self.entity_type
            );
        }
        let name = self.name_attribute.get_ref();
        if name.is_empty() || name.eq_ignore_ascii_case(&self.member_attribute) {
            bail!(
                "{}: groups.name_attribute must name an attribute other than the members'",
                at(self.name_attribute.span())
            );
        }
        let create = match &self.create {
            None => None,
            Some(c) => {
                let mut attributes = Vec::new();
                for (n, e) in &c.attributes {
                    if n.eq_ignore_ascii_case(name)
                        || n.eq_ignore_ascii_case(&self.member_attribute)
                    {
                        bail!(
                            "{}: `{n}` is set by idgard on a new group (its name, its members)",
                            at(e.span())
                        );
                    }
                    attributes.push((n.clone(), compile(e, GROUP_VARS)?));
                }
                Some(GroupCreate {
                    key: c.key.as_ref().map(|k| compile(k, GROUP_VARS)).transpose()?,
                    attributes,
                })
            }
        };
        Ok(Groups {
            entity_type: self.entity_type.clone(),
            member_of: compile(&self.member_of, identity_vars)?,
            name_attribute: name.clone(),
            member_attribute: self.member_attribute.clone(),
            managed: self
                .managed
                .as_ref()
                .map(|m| compile(m, GROUP_VARS))
                .transpose()?,
            create,
        })
    }
}
