//! The idgard server's web pages: askama templates, checked when this crate compiles, the
//! view models they render, and the stylesheet and script they use, embedded and served under
//! names that carry their content's hash. The server fills the models from its domain; nothing
//! here reads a database or knows HTTP, so a template change rebuilds this crate and the
//! server's link, nothing else.

pub mod assets;
pub mod diff;
pub mod pages;
pub mod report;

pub use askama::Template;

/// What every page shows around its content: who is signed in, what they may do, the form
/// token, the development banner, the clock the page was rendered at.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The signed-in user (absent on the sign-in page).
    pub user: Option<String>,
    /// Their roles, as words.
    pub roles: Vec<String>,
    /// The token each form of this session carries.
    pub csrf: String,
    /// Whether the development password is on (a banner says so on every page).
    pub dev: bool,
    /// The navigation entry to mark current.
    pub nav: &'static str,
    /// The page's title.
    pub title: String,
    /// Rendered at, ms since the epoch.
    pub now_ms: i64,
    /// May run jobs, retry orders.
    pub operator: bool,
    /// May manage agents and read the audit trail.
    pub administrator: bool,
    /// May approve blocked runs.
    pub approver: bool,
}

impl Chrome {
    /// The stylesheet's address.
    pub fn css(&self) -> &'static str {
        assets::url("ui.css")
    }

    /// The script's address.
    pub fn js(&self) -> &'static str {
        assets::url("ui.js")
    }

    /// `2026-11-28 07:15:02 UTC`.
    pub fn when(&self, ms: &i64) -> String {
        when(*ms)
    }

    /// [`Chrome::when`] of an optional time, `—` when absent.
    pub fn when_opt(&self, ms: &Option<i64>) -> String {
        ms.map_or_else(|| "—".into(), when)
    }

    /// `3 min ago`, `in 2 h`.
    pub fn ago(&self, ms: &i64) -> String {
        ago(*ms, self.now_ms)
    }

    /// [`Chrome::ago`] of an optional time, `never` when absent.
    pub fn ago_opt(&self, ms: &Option<i64>) -> String {
        ms.map_or_else(|| "never".into(), |m| ago(m, self.now_ms))
    }

    /// Whether `nav` is the current section (for `aria-current`).
    pub fn is(&self, nav: &str) -> bool {
        self.nav == nav
    }
}

/// A time as people read it, in UTC.
pub fn when(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// How long ago (or from now) `ms` is, roughly.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let d = (now_ms - ms) / 1000;
    let (n, later) = (d.abs(), d < 0);
    let text = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} days", n / 86_400),
    };
    if later {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A percentage for a progress bar: done of total, or `None` when the total is unknown.
pub fn percent(done: u64, total: Option<u64>) -> Option<u64> {
    total.filter(|&t| t > 0).map(|t| (done.min(t) * 100) / t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates_and_rough_durations() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_795_849_502_000), "2026-11-28 07:05:02 UTC");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(ago(0, 185_000), "3 min ago");
        assert_eq!(ago(7_200_000, 0), "in 2 h");
        assert_eq!(percent(5, Some(10)), Some(50));
        assert_eq!(percent(12, Some(10)), Some(100));
        assert_eq!(percent(5, None), None);
    }
}
