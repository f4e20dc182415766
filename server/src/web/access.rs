//! Who may do what. Roles nest (viewer ⊂ operator ⊂ administrator); approver stands apart and
//! also lets its holder look. Every route of the UI declares its minimum in [`ROUTES`]; a route
//! missing there is refused to everyone (deny by default), and a test walks the table.

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Looks at everything.
    Viewer,
    /// Also runs jobs, retries orders, reviews accounts.
    Operator,
    /// Also manages agents and reads the audit trail.
    Administrator,
    /// Approves blocked runs.
    Approver,
}

impl Role {
    /// Its name, as in configuration and on pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Administrator => "administrator",
            Role::Approver => "approver",
        }
    }

    /// Reads a name written by [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "administrator" => Role::Administrator,
            "approver" => Role::Approver,
            _ => return None,
        })
    }
}

/// Whether someone holding `held` may do what needs `need`.
pub fn allows(held: &[Role], need: Role) -> bool {
    held.iter().any(|&h| match need {
        Role::Viewer => true,
        Role::Operator => matches!(h, Role::Operator | Role::Administrator),
        Role::Administrator => h == Role::Administrator,
        Role::Approver => h == Role::Approver,
    })
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: sign-in pages and assets.
    Anyone,
    /// A session holding this role.
    Role(Role),
}

/// One route of the UI and what it needs.
#[derive(Debug, Clone, Copy)]
pub struct RouteNeed {
    /// The method.
    pub method: &'static str,
    /// The path as the router declares it.
    pub path: &'static str,
    /// The least it needs.
    pub need: Need,
}

const fn r(method: &'static str, path: &'static str, need: Need) -> RouteNeed {
    RouteNeed { method, path, need }
}

const ANYONE: Need = Need::Anyone;
const VIEWER: Need = Need::Role(Role::Viewer);
const OPERATOR: Need = Need::Role(Role::Operator);
const ADMIN: Need = Need::Role(Role::Administrator);
const APPROVER: Need = Need::Role(Role::Approver);

/// Every route of the UI, with the least it needs.
pub const ROUTES: &[RouteNeed] = &[
    r("GET", "/", ANYONE),
    r("GET", "/assets/{file}", ANYONE),
    r("GET", "/signin", ANYONE),
    r("POST", "/signin/password", ANYONE),
    r("POST", "/signin/ldap", ANYONE),
    r("GET", "/signin/oidc", ANYONE),
    r("GET", "/signin/oidc/callback", ANYONE),
    r("POST", "/signout", VIEWER),
    r("GET", "/me", VIEWER),
    r("POST", "/me/sessions/{id}/revoke", VIEWER),
    r("GET", "/dashboard", VIEWER),
    r("GET", "/identities", VIEWER),
    r("GET", "/identities/{key}", VIEWER),
    r("GET", "/connections", VIEWER),
    r("GET", "/connections/{name}", VIEWER),
    r("GET", "/connections/{name}/entries/{key}", VIEWER),
    r("GET", "/connections/{name}/entries.csv", VIEWER),
    r("POST", "/connections/{name}/review", OPERATOR),
    r("POST", "/connections/{name}/test", OPERATOR),
    r("GET", "/connectors", VIEWER),
    r("GET", "/jobs", VIEWER),
    r("POST", "/jobs/run", OPERATOR),
    r("GET", "/launches/{id}", VIEWER),
    r("GET", "/runs/{id}", VIEWER),
    r("GET", "/runs/{id}/events", VIEWER),
    r("POST", "/runs/{id}/cancel", OPERATOR),
    r("POST", "/runs/{id}/approve", APPROVER),
    r("GET", "/approvals", VIEWER),
    r("GET", "/orders", VIEWER),
    r("GET", "/orders/{id}", VIEWER),
    r("POST", "/orders/retry", OPERATOR),
    r("GET", "/agents", VIEWER),
    r("POST", "/agents", ADMIN),
    r("POST", "/agents/{name}/reset", ADMIN),
    r("GET", "/audit", ADMIN),
    r("GET", "/audit.csv", ADMIN),
];

/// What `method` on the route declared as `path` needs; `None`: not in the table, refused.
pub fn need_of(method: &Method, path: &str) -> Option<Need> {
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
        .map(|r| r.need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_approver_stands_apart() {
        use Role::*;
        assert!(allows(&[Administrator], Operator) && allows(&[Administrator], Viewer));
        assert!(!allows(&[Administrator], Approver));
        assert!(allows(&[Operator], Viewer) && !allows(&[Operator], Administrator));
        assert!(allows(&[Approver], Viewer) && !allows(&[Approver], Operator));
        assert!(!allows(&[], Viewer));
        assert!(!allows(&[Viewer], Approver));
    }

    #[test]
    fn each_route_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
        assert_eq!(need_of(&Method::DELETE, "/agents"), None);
    }
}
