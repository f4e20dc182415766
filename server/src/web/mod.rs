//! The web UI: server-rendered pages (templates in the `idgard-web` crate) for people signed in
//! through OpenID Connect, an LDAP directory or Active Directory, or (development only) one
//! password. Pages call the same domain functions as the JSON API; the API keeps its bearer
//! tokens and never accepts the session cookie.
//!
//! Rooms: [`access`] (roles and the route table), [`guard`] (the one middleware every page
//! passes: session, role, CSRF, headers), [`security`] (cookies, origin checks, headers),
//! [`sessions`] and [`audit`] (their SQL), [`auth`] (the sign-in methods), [`settings`] (the
//! `[ui]` configuration), `pages/` (the handlers, a few lines each).

pub mod access;
pub mod audit;
pub mod auth;
pub mod figures;
pub mod guard;
mod pages;
pub mod security;
pub mod sessions;
pub mod settings;

use crate::http::App;
use crate::queue::Queue;
use axum::Router;
use settings::UiConfig;

/// What the UI shares.
pub struct Web {
    /// Its settings.
    pub settings: UiConfig,
    /// Sessions.
    pub sessions: sessions::Sessions,
    /// The audit trail.
    pub audit: audit::Audit,
    /// The OpenID Connect provider, when configured.
    pub oidc: Option<auth::oidc::Provider>,
    /// Whether the server serves HTTPS (HSTS).
    pub https: bool,
    /// The address agents and people use, for the enrolment command.
    pub public_url: Option<String>,
    /// The dashboard's figures, taken in the background.
    pub figures: figures::Figures,
}

impl Web {
    /// The UI over `queue`'s database.
    pub fn new(
        settings: UiConfig,
        queue: &Queue,
        https: bool,
        public_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let oidc = match &settings.oidc {
            Some(cfg) => Some(auth::oidc::Provider::new(
                cfg.clone(),
                queue.db.clone(),
                queue.clock.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            sessions: sessions::Sessions::new(
                queue.db.clone(),
                queue.clock.clone(),
                settings.idle_s,
                settings.max_s,
            ),
            audit: audit::Audit::new(queue.db.clone(), queue.clock.clone()),
            oidc,
            https,
            public_url,
            settings,
            figures: Default::default(),
        })
    }
}

/// The UI's routes, each behind the guard.
pub fn router(app: App) -> Router<App> {
    pages::routes().route_layer(axum::middleware::from_fn_with_state(app, guard::guard))
}
