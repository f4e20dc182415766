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
    /// When the service answered the first page (its `Date`), the next export's start: a
    /// resource changed while this one pages is read again next time, not lost.
    began: Option<String>,
    /// The latest `meta.lastModified` seen, when the service sends no `Date`.
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
        began: None,
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
    // No cursor when nothing says when: the next export is a full one.
    Ok(p.began
        .or(p.latest)
        .filter(|_| scim.filter)
        .map(|at| Cursor {
            format: CURSOR_FORMAT.into(),
            data: at.into_bytes(),
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
            if self.began.is_none() {
                self.began = answer.header("date").and_then(rfc3339_of_http_date);
            }
            let page: Value = answer.json()?;
            let resources = page["Resources"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let total = page["totalResults"].as_u64();
            for r in resources {
                if let Some(m) = r["meta"]["lastModified"].as_str()
                    && self.latest.as_deref().is_none_or(|l| later(m, l))
                {
                    self.latest = Some(m.to_owned());
                }
                each(self, r);
            }
            start += resources.len() as u64;
            idgard_sdk::progress(start - 1, total, &format!("{what} read"));
            match total {
                // An early end would make the missing ones look deleted: fail instead.
                Some(t) if resources.is_empty() && start <= t => {
                    return Err(Error::unavailable(format!(
                        "listing {what}: the pages ended at {} of the {t} announced (the \
                         service changed during the export?); try again",
                        start - 1
                    )));
                }
                Some(t) if start > t => return Ok(()),
                _ if resources.is_empty() => return Ok(()),
                _ => {}
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

/// An HTTP date (`Sat, 28 Nov 2026 17:49:00 GMT`, RFC 9110's preferred form) as RFC 3339.
fn rfc3339_of_http_date(date: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = date.split_whitespace().skip(1);
    let day: u8 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? + 1;
    let year: u16 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let ok = time.len() == 8
        && time
            .split(':')
            .all(|t| t.len() == 2 && t.parse::<u8>().is_ok());
    (ok && parts.next() == Some("GMT")).then(|| format!("{year:04}-{month:02}-{day:02}T{time}Z"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_become_rfc3339() {
        assert_eq!(
            rfc3339_of_http_date("Sat, 28 Nov 2026 17:49:00 GMT").as_deref(),
            Some("2026-11-28T17:49:00Z")
        );
        assert_eq!(
            rfc3339_of_http_date("Mon, 01 Feb 2027 07:05:09 GMT").as_deref(),
            Some("2027-02-01T07:05:09Z")
        );
        assert_eq!(rfc3339_of_http_date("yesterday"), None);
        assert_eq!(rfc3339_of_http_date("Sat, 28 Nov 2026 17:49 GMT"), None);
        assert_eq!(rfc3339_of_http_date("Sat, 28 Nov 2026 17:49:00 CET"), None);
    }
}
