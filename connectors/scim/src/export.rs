//! Exports: users, then groups (their members as the users' keys), page by page
//! (`startIndex`/`count`). Incremental exports ask for what changed since the last one
//! (`filter=meta.lastModified ge "..."`) when the service supports filters; SCIM reports no
//! deletions, so the next full export finds them.

use crate::client::{Scim, explain};
use crate::config::Config;
use crate::map;
use crate::{ACCOUNT, GROUP};
use idgard_sdk::http::query_value;
use idgard_sdk::{Cursor, Error, Exporter};
use serde_json::Value;
use std::collections::HashMap;

/// The format of this connector's cursors: the latest `meta.lastModified` seen, as text.
pub const CURSOR_FORMAT: &str = "scim-last-modified-1";

/// What an export keeps while it pages.
struct Paging<'a> {
    scim: &'a Scim,
    since: Option<String>,
    latest: Option<String>,
    /// User ids to keys, for the groups' members.
    keys: HashMap<String, Option<String>>,
}

/// Exports everything, or what changed since `cursor`; the cursor of the next incremental.
pub fn export(
    scim: &Scim,
    config: &Config,
    cursor: Option<&Cursor>,
    out: &mut Exporter,
) -> Result<Option<Cursor>, Error> {
    let since = match cursor {
        None => None,
        Some(c) if c.format == CURSOR_FORMAT => Some(
            String::from_utf8(c.data.clone())
                .map_err(|_| Error::invalid_cursor("the cursor is not text"))?,
        ),
        Some(c) => {
            return Err(Error::invalid_cursor(format!(
                "a cursor of format `{}`, not `{CURSOR_FORMAT}`",
                c.format
            )));
        }
    };
    if since.is_some() && !scim.filter {
        return Err(Error::invalid_cursor(
            "the service does not support filters: only full exports can be made",
        ));
    }
    let mut p = Paging {
        scim,
        since: since.clone(),
        latest: since,
        keys: HashMap::new(),
    };
    p.pages("/Users", "users", |p, user| {
        let attributes = map::user_attributes(user);
        let (Some(id), Some((_, key))) = (user["id"].as_str(), attributes.first()) else {
            out.reject("a user without id or userName");
            return;
        };
        p.keys.insert(id.to_owned(), Some(key.clone()));
        let mut w = out.upsert(ACCOUNT, key);
        w.attr("id", id);
        for (name, value) in &attributes[1..] {
            w.attr(name, value);
        }
    })?;
    if config.groups {
        let mut groups = Vec::new();
        p.pages("/Groups", "groups", |_, group| groups.push(group.clone()))?;
        for group in &groups {
            export_group(&mut p, group, out)?;
        }
    }
    Ok(scim.filter.then(|| Cursor {
        format: CURSOR_FORMAT.into(),
        data: p.latest.unwrap_or_default().into_bytes(),
    }))
}

fn export_group(p: &mut Paging<'_>, group: &Value, out: &mut Exporter) -> Result<(), Error> {
    let (Some(id), Some(key)) = (group["id"].as_str(), group["displayName"].as_str()) else {
        out.reject("a group without id or displayName");
        return Ok(());
    };
    let mut members = Vec::new();
    for m in group["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let Some(mid) = m["value"].as_str() else {
            continue;
        };
        match p.key_of(mid)? {
            Some(k) => members.push(k),
            None => idgard_sdk::log::warn(&format!(
                "group `{key}`: member `{mid}` is no user of the service; left out"
            )),
        }
    }
    let mut w = out.upsert(GROUP, key);
    w.attr("id", id);
    if let Some(e) = group["externalId"].as_str() {
        w.attr("externalId", e);
    }
    w.values("member", members.iter().map(String::as_str));
    Ok(())
}

impl Paging<'_> {
    /// Calls `each` on every resource of an endpoint, page by page.
    fn pages(
        &mut self,
        path: &str,
        what: &str,
        mut each: impl FnMut(&mut Self, &Value),
    ) -> Result<(), Error> {
        let count = self.scim.max_results;
        let filter = self.since.as_ref().map(|s| {
            format!(
                "&filter={}",
                query_value(&format!("meta.lastModified ge {}", map::quoted(s)))
            )
        });
        let mut start = 1u64;
        loop {
            let url = format!(
                "{path}?startIndex={start}&count={count}{}",
                filter.as_deref().unwrap_or("")
            );
            let answer = self.scim.send(self.scim.get(&url))?;
            if answer.status() != 200 {
                return Err(status_error(&answer, &format!("listing {what}")));
            }
            let page: Value = answer.json()?;
            let resources = page["Resources"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let total = page["totalResults"].as_u64().unwrap_or(0);
            for r in resources {
                if let Some(m) = r["meta"]["lastModified"].as_str()
                    && self.latest.as_deref().is_none_or(|l| later(m, l))
                {
                    self.latest = Some(m.to_owned());
                }
                each(self, r);
            }
            start += resources.len() as u64;
            idgard_sdk::progress(start - 1, Some(total), &format!("{what} read"));
            if resources.is_empty() || start > total {
                return Ok(());
            }
        }
    }

    /// A user's key from its id: from this export, or asked of the service.
    fn key_of(&mut self, id: &str) -> Result<Option<String>, Error> {
        if let Some(k) = self.keys.get(id) {
            return Ok(k.clone());
        }
        let answer = self.scim.send(
            self.scim
                .get(&format!("/Users/{}?attributes=userName", query_value(id))),
        )?;
        let key = match answer.status() {
            200 => answer.json::<Value>()?["userName"]
                .as_str()
                .map(str::to_owned),
            404 => None,
            _ => return Err(status_error(&answer, &format!("reading user `{id}`"))),
        };
        self.keys.insert(id.to_owned(), key.clone());
        Ok(key)
    }
}

/// Whether timestamp `a` is later than `b` (RFC 3339 in UTC compares as text; otherwise the
/// longer precision of the same instant may compare wrong by a fraction, which `ge` absorbs).
fn later(a: &str, b: &str) -> bool {
    a > b
}

/// An error of the kind an unexpected status means.
pub fn status_error(answer: &idgard_sdk::http::Response, doing: &str) -> Error {
    let message = format!("{doing}: the service answered {}", explain(answer));
    match answer.status() {
        401 | 403 => Error::denied(message),
        429 | 500..=599 => Error::unavailable(message),
        _ => Error::invalid_data(message),
    }
}
