//! The identity repository as the API shows it: entries and their versions, links of accounts
//! to identities, one identity with everything it has, and how lists are paged.

use serde::{Deserialize, Serialize};

/// Items a list answers when the caller names no `limit`.
pub const PAGE_DEFAULT: u32 = 1000;
/// Most items a list answers at once: a larger `limit` is refused (400), so that one request
/// cannot make the server build an unbounded answer.
pub const PAGE_MAX: u32 = 10_000;

/// `?after=KEY&limit=N` of every list endpoint: items after `after` in the list's order (the
/// last item's key of the previous page), at most `limit`. A page shorter than `limit` is the
/// last one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last key of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// How many items, 1 to [`PAGE_MAX`]; [`PAGE_DEFAULT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10_000))]
    pub limit: Option<u32>,
}

/// How a target's account stands against the identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Situation {
    /// Belongs to an identity; provisioning manages it.
    Linked,
    /// Matches an identity but the target does not link automatically: waits for a person.
    Unlinked,
    /// Matches no identity (an orphan).
    Unmatched,
    /// Its identity left; the account was or is being removed.
    Deleted,
}

impl Situation {
    /// Every situation, in the order help texts list them.
    pub const ALL: [Situation; 4] = [
        Situation::Linked,
        Situation::Unlinked,
        Situation::Unmatched,
        Situation::Deleted,
    ];

    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Situation::Linked => "linked",
            Situation::Unlinked => "unlinked",
            Situation::Unmatched => "unmatched",
            Situation::Deleted => "deleted",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Situation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Attributes of an entry: name → values.
pub type Attributes = std::collections::BTreeMap<String, Vec<String>>;

/// `GET /api/v1/connections/{name}/entries`: a current entry and its link, if it has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
    /// The entity type (`account`, `group`, ...).
    pub entity_type: String,
    /// Its key in the connection.
    pub key: String,
    /// Its attributes.
    pub attributes: Attributes,
    /// Since when this version holds, ms since the epoch.
    pub valid_from_ms: i64,
    /// The identity it belongs to, when linked.
    pub identity: Option<String>,
    /// Its situation, for a target's entries.
    pub situation: Option<Situation>,
}

/// `GET /api/v1/connections/{name}/entries/{key}/history`: one version of an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    /// The entity type.
    pub entity_type: String,
    /// Its attributes in this version.
    pub attributes: Attributes,
    /// Since when, ms since the epoch.
    pub valid_from_ms: i64,
    /// Until when (absent: the current version).
    pub valid_to_ms: Option<i64>,
    /// The synchronisation that recorded it (0: written by a fulfilled order, not yet confirmed
    /// by an export).
    pub sync_id: i64,
}

/// `GET /api/v1/connections/{name}/links`: an account and the identity it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkView {
    /// The entity type.
    pub entity_type: String,
    /// The account's key.
    pub key: String,
    /// The identity, when one matched.
    pub identity: Option<String>,
    /// Its situation.
    pub situation: Situation,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
}

/// `GET /api/v1/identities/{key}`: what one person has, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityView {
    /// Its key in the authoritative connection.
    pub key: String,
    /// The authoritative connection.
    pub connection: String,
    /// Its current attributes (absent: it left the source).
    pub attributes: Option<Attributes>,
    /// Its accounts, per target.
    pub accounts: Vec<AccountView>,
    /// Orders for it not yet carried out (waiting, pending, sent, retry), oldest first.
    pub orders: Vec<crate::OrderView>,
    /// Its versions in the source, oldest first.
    pub history: Vec<VersionView>,
}

/// One of an identity's accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    /// The target connection.
    pub connection: String,
    /// The link.
    #[serde(flatten)]
    pub link: LinkView,
    /// The account's current attributes, as last exported or written.
    pub attributes: Option<Attributes>,
}
