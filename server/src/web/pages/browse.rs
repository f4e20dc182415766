//! Looking: the dashboard, identities, connections and their entries.

use super::{PageResult, Person, render};
use crate::error::Error;
use crate::http::App;
use crate::page::Page;
use axum::extract::{Path, Query, State};
use idgard_protocol::{ListQuery, Situation};
use idgard_web::{diff, pages};
use serde::Deserialize;

/// Rows a UI list shows per page.
pub const PAGE_ROWS: u32 = 100;

/// A page of `rows` past `after`.
pub fn page_after(after: Option<String>) -> Result<Page, Error> {
    Page::new(ListQuery {
        after,
        limit: Some(PAGE_ROWS),
    })
}

/// The key to ask the next page from, when this one is full.
pub fn next_of<T>(rows: &[T], key: impl Fn(&T) -> String) -> Option<String> {
    (rows.len() as u32 >= PAGE_ROWS)
        .then(|| rows.last().map(key))
        .flatten()
}

/// `GET /dashboard`.
pub async fn dashboard(State(app): State<App>, me: Person) -> PageResult {
    let (taken_ms, o) = app.web.figures.overview(&app.engine).await?;
    Ok(render(&pages::Dashboard {
        chrome: &me.chrome("dashboard", "Dashboard"),
        o,
        taken_ms,
    }))
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
    after: Option<String>,
}

/// `GET /identities?q=PREFIX`.
pub async fn identities(State(app): State<App>, me: Person, Query(s): Query<Search>) -> PageResult {
    let q = s.q.trim().to_owned();
    let found = app
        .engine
        .search_identities(&q, &page_after(s.after.clone())?)
        .await?;
    let next = next_of(&found, |e| e.key.clone());
    // Name matches on the first page only: there are at most a hundred, by name.
    let by_name = if q.is_empty() || next_after(&s.after) {
        Vec::new()
    } else {
        app.engine.search_names(&q).await?
    };
    Ok(render(&pages::Identities {
        chrome: &me.chrome("identities", "Identities"),
        search: app
            .engine
            .rules
            .as_ref()
            .and_then(|r| r.identities.search.clone()),
        names_capped: by_name.len() as u32 >= crate::identity::search::NAME_MATCHES,
        by_name: identity_rows(by_name),
        rows: identity_rows(found),
        q,
        next,
    }))
}

fn next_after(after: &Option<String>) -> bool {
    after.as_deref().is_some_and(|a| !a.is_empty())
}

fn identity_rows(found: Vec<idgard_protocol::EntryView>) -> Vec<pages::IdentityRow> {
    found
        .into_iter()
        .map(|e| pages::IdentityRow {
            summary: e
                .attributes
                .iter()
                .take(4)
                .map(|(k, v)| format!("{k}: {}", v.join(", ")))
                .collect::<Vec<_>>()
                .join(" · "),
            key: e.key,
        })
        .collect()
}

/// `GET /identities/{key}`.
pub async fn identity(State(app): State<App>, me: Person, Path(key): Path<String>) -> PageResult {
    let v = app.engine.identity(&key).await?;
    Ok(render(&pages::Identity {
        chrome: &me.chrome("identities", format!("Identity {key}")),
        timeline: diff::timeline(&v.history),
        v,
    }))
}

/// `GET /connections`.
pub async fn connections(State(app): State<App>, me: Person) -> PageResult {
    let (taken_ms, rows) = app.web.figures.connections(&app.engine).await?;
    Ok(render(&pages::Connections {
        chrome: &me.chrome("connections", "Connections"),
        rows,
        taken_ms,
    }))
}

#[derive(Deserialize)]
pub struct EntriesQuery {
    #[serde(default)]
    situation: String,
    after: Option<String>,
}

/// `GET /connections/{name}?situation=`.
pub async fn connection(
    State(app): State<App>,
    me: Person,
    Path(name): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> PageResult {
    let situation = match q.situation.as_str() {
        "" => None,
        s => Some(Situation::parse(s).ok_or_else(|| {
            Error::invalid(format!(
                "situation `{s}`: one of linked, unlinked, unmatched, deleted"
            ))
        })?),
    };
    let rows = app
        .engine
        .entries(&name, situation, &page_after(q.after)?)
        .await?;
    let cached = app.web.figures.connections(&app.engine).await?.1;
    let c = match cached.into_iter().find(|c| c.name == name) {
        Some(c) => c,
        // Named since the figures were taken.
        None => app
            .engine
            .connections()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::not_found(format!("no connection `{name}`")))?,
    };
    Ok(render(&pages::Connection {
        chrome: &me.chrome("connections", format!("Connection {name}")),
        next: next_of(&rows, |e| e.key.clone()),
        c,
        situation: q.situation,
        situations: Situation::ALL.iter().map(|s| s.as_str()).collect(),
        rows,
    }))
}

/// `GET /connections/{name}/entries/{key}`.
pub async fn entry(
    State(app): State<App>,
    me: Person,
    Path((name, key)): Path<(String, String)>,
) -> PageResult {
    let e = app.engine.entry(&name, &key).await?;
    let history = app.engine.history(&name, &key).await?;
    Ok(render(&pages::Entry {
        chrome: &me.chrome("connections", format!("{key} in {name}")),
        connection: name,
        e,
        timeline: diff::timeline(&history),
    }))
}
