//! Connector packages the server stores and offers to agents.

use serde::{Deserialize, Serialize};

/// A stored package, as administrators see it (`GET /api/v1/packages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageView {
    /// The connector's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The package digest (hex), what its publisher signed.
    pub digest: String,
    /// Bytes of the bundle.
    pub size: u64,
    /// Who signed it, as its signature file says (agents check it against their own keys).
    pub publisher: String,
    /// How (`ed25519`, `rsa-pss-sha256`).
    pub algorithm: String,
    /// When it was published, ms since the epoch.
    pub published_ms: i64,
    /// By whom.
    pub published_by: String,
    /// Whether agents are offered this version of the connector now.
    pub active: bool,
}

/// The answer to a publication (`POST /api/v1/packages`, the bundle as the body).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Published {
    /// The package.
    pub package: PackageView,
    /// What became of it: `active` (offered now), `stored` (an older version than the active
    /// one: activate it explicitly to roll back), `unchanged` (published before), `re-signed`
    /// (the same files published before, with a new signature that replaces the old one).
    pub outcome: String,
}

/// `POST /api/v1/packages/{name}/active`: offer this version of the connector from now on
/// (upgrade or explicit rollback).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivatePackage {
    /// The version, published before.
    pub version: String,
}

/// A package offered to an agent: one connector its connections use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageOffer {
    /// The connector's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The package digest: `GET /api/v1/agent/packages/{digest}` downloads its bundle.
    pub digest: String,
    /// Bytes of the bundle.
    pub size: u64,
    /// SHA-256 of its signature file (hex): a package signed again (same files, new
    /// signature) is offered again.
    #[serde(default)]
    pub signed: String,
}

/// Every package offered to an agent now, with a tag the agent sends back in its polls
/// ([`crate::PollRequest::packages`]): the server answers with the offers again only when the
/// tag changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageOffers {
    /// Names this set of offers.
    pub tag: String,
    /// The offers.
    pub offers: Vec<PackageOffer>,
}

/// A package an agent would not load, with why (reported in its hello).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefusedPackage {
    /// The connector's name.
    pub name: String,
    /// The version offered.
    pub version: String,
    /// The package digest offered.
    pub digest: String,
    /// A stable code (`package.untrusted_publisher`, `package.bad_signature`, ...).
    pub code: String,
    /// Why, as the agent's log says it.
    pub reason: String,
}
