//! The idgard server's API as a client sees it: HTTPS pinned to the server's certificate
//! ([`pin`]), the administrator's saved context ([`context`]), typed calls ([`api`]). The
//! `idgard` command is built on it; the agent uses [`pin`] for its own connection.

pub mod api;
pub mod context;
pub mod pin;
