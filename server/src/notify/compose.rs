//! What a notification mail says: its subject and its text, from the events it reports.
//! Pure, so that it is tested without a database or an SMTP server.

use super::events::Event;
use super::settings::Kind;

/// A mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// `at_ms` as a UTC time people read.
pub fn time(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{at_ms} ms"))
}

/// The mail reporting `events` (the first of `total`) of `kind`; links are made absolute with
/// `public_url` when it is known; `period_s` is said at the end so that readers know why
/// events come gathered.
pub fn compose(
    kind: Kind,
    events: &[Event],
    total: u64,
    public_url: Option<&str>,
    period_s: u64,
) -> Mail {
    let one = total == 1;
    let subject = match kind {
        Kind::Blocked if one => "1 run waits for approval".to_owned(),
        Kind::Blocked => format!("{total} runs wait for approval"),
        Kind::FailedRun if one => "1 run failed".to_owned(),
        Kind::FailedRun => format!("{total} runs failed"),
        Kind::FailedOrder if one => "1 order failed for good".to_owned(),
        Kind::FailedOrder => format!("{total} orders failed for good"),
        Kind::AgentOffline if one => match events.first() {
            Some(e) => format!("{} is offline", e.what),
            None => "1 agent is offline".to_owned(),
        },
        Kind::AgentOffline => format!("{total} agents are offline"),
    };
    let intro = match kind {
        Kind::Blocked => "A threshold stopped these runs; each waits for someone to approve it:",
        Kind::FailedRun => "These runs failed:",
        Kind::FailedOrder => {
            "These orders failed for good (they will not be tried again \
                              unless someone sends them again):"
        }
        Kind::AgentOffline => "These agents have not polled the server for a while:",
    };
    let base = public_url.map(|u| u.trim_end_matches('/'));
    let mut body = format!("{intro}\n\n");
    for e in events {
        body.push_str(&format!("- {}, at {}\n", one_line(&e.what), time(e.at_ms)));
        if let Some(d) = &e.detail {
            body.push_str(&format!("  {}\n", one_line(d)));
        }
        if let (Some(base), Some(link)) = (base, &e.link) {
            body.push_str(&format!("  {base}{link}\n"));
        }
    }
    let listed = events.len() as u64;
    if total > listed {
        body.push_str(&format!("- and {} more\n", total - listed));
    }
    body.push_str(&format!(
        "\nidgard sends at most one mail of this kind ({}) every {} (mail.period_s); \
         events that come in between are gathered into the next one.\n",
        kind.name(),
        humantime::format_duration(std::time::Duration::from_secs(period_s))
    ));
    Mail {
        subject: format!("idgard: {subject}"),
        body,
    }
}

/// `text` on one line, at most 300 characters: an error can be long and hold newlines.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, error: &str) -> Event {
        Event {
            what: format!("run {id} (daily) on agent paris"),
            detail: Some(error.into()),
            link: Some(format!("/runs/{id}")),
            at_ms: 1_795_000_000_000,
        }
    }

    #[test]
    fn one_event_and_its_link() {
        let m = compose(
            Kind::FailedRun,
            &[run(7, "export: the HR folder is empty")],
            1,
            Some("https://iam.example.org/"),
            900,
        );
        assert_eq!(m.subject, "idgard: 1 run failed");
        assert!(
            m.body.contains("- run 7 (daily) on agent paris, at 2026-"),
            "{}",
            m.body
        );
        assert!(m.body.contains("  export: the HR folder is empty\n"));
        assert!(m.body.contains("  https://iam.example.org/runs/7\n"));
        assert!(m.body.contains("every 15m"));
    }

    #[test]
    fn many_events_are_counted_past_the_list() {
        let events: Vec<Event> = (1..=3).map(|i| run(i, "boom")).collect();
        let m = compose(Kind::Blocked, &events, 120, None, 60);
        assert_eq!(m.subject, "idgard: 120 runs wait for approval");
        assert!(m.body.contains("- and 117 more\n"));
        assert!(
            !m.body.contains("https://"),
            "no address without public_url"
        );
    }

    #[test]
    fn an_offline_agent_is_named_in_the_subject() {
        let e = Event {
            what: "agent lyon".into(),
            detail: None,
            link: None,
            at_ms: 0,
        };
        let m = compose(Kind::AgentOffline, &[e], 1, None, 900);
        assert_eq!(m.subject, "idgard: agent lyon is offline");
    }

    #[test]
    fn details_stay_on_one_bounded_line() {
        let long = format!("line one\nline two\r\n{}", "x".repeat(1000));
        let m = compose(Kind::FailedOrder, &[run(1, &long)], 1, None, 900);
        let line = m.body.lines().nth(3).unwrap();
        assert!(line.starts_with("  line one line two"), "{line}");
        assert!(line.chars().count() < 310);
    }
}
