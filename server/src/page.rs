//! How lists are paged: by key, never by offset, so that a page costs the same however deep it
//! is and an item added meanwhile neither repeats nor hides another.

use crate::error::{Error, Result};
use idgard_protocol::{ListQuery, PAGE_DEFAULT, PAGE_MAX};

/// A checked `?after=&limit=`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The last key of the previous page.
    pub after: Option<String>,
    /// How many items, 1 to [`PAGE_MAX`].
    pub limit: u32,
}

impl Page {
    /// The first `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// Checks what a caller asked for: a limit out of range is refused with the value named
    /// (a silently shortened answer reads as "there is no more").
    pub fn new(q: ListQuery) -> Result<Self> {
        let limit = q.limit.unwrap_or(PAGE_DEFAULT);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit={limit}: a page holds 1 to {PAGE_MAX} items"
            )));
        }
        Ok(Self {
            after: q.after.filter(|a| !a.is_empty()),
            limit,
        })
    }

    /// The limit as SQL binds it.
    pub fn sql_limit(&self) -> i64 {
        i64::from(self.limit)
    }

    /// `after` as a number (lists keyed by id, newest first).
    pub fn after_id(&self) -> Result<Option<i64>> {
        self.after
            .as_deref()
            .map(|a| {
                a.parse::<i64>().map_err(|_| {
                    Error::invalid(format!("after={a}: this list is keyed by id, a number"))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(after: Option<&str>, limit: Option<u32>) -> ListQuery {
        ListQuery {
            after: after.map(String::from),
            limit,
        }
    }

    #[test]
    fn a_limit_out_of_range_is_refused_with_its_value() {
        for bad in [0, PAGE_MAX + 1] {
            let e = Page::new(q(None, Some(bad))).unwrap_err();
            assert!(e.message.contains(&format!("limit={bad}")), "{e}");
        }
        assert_eq!(Page::new(q(None, None)).unwrap().limit, PAGE_DEFAULT);
        assert_eq!(Page::new(q(None, Some(PAGE_MAX))).unwrap().limit, PAGE_MAX);
    }

    #[test]
    fn an_id_cursor_must_be_a_number() {
        assert_eq!(
            Page::new(q(Some("42"), None)).unwrap().after_id().unwrap(),
            Some(42)
        );
        assert!(Page::new(q(Some("zzz"), None)).unwrap().after_id().is_err());
        assert_eq!(
            Page::new(q(Some(""), None)).unwrap().after_id().unwrap(),
            None
        );
    }
}
