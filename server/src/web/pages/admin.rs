//! Acting on provisioning and the platform: orders (and retrying them), accounts waiting for
//! review (confirming or rejecting their match), agents (adding, resetting), the audit trail and
//! the CSV exports.

use super::browse::{PAGE_ROWS, next_of, page_after};
use super::{PageResult, Person, render, see_other};
use crate::error::Error;
use crate::http::App;
use crate::identity::overview::ONLINE_MS;
use crate::identity::views::OrderFilter;
use crate::web::audit::Filter;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::header;
use axum::response::IntoResponse;
use idgard_protocol::{NewAgentAnswer, OrderState};
use idgard_web::{diff, pages};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct OrdersQuery {
    #[serde(default)]
    job: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    kind: String,
    after: Option<String>,
    retried: Option<u64>,
}

const STATES: [&str; 8] = [
    "waiting",
    "pending",
    "sent",
    "retry",
    "done",
    "failed",
    "dry",
    "superseded",
];

fn blank(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// `GET /orders?job=&connection=&state=&identity=`.
pub async fn orders(
    State(app): State<App>,
    me: Person,
    Query(q): Query<OrdersQuery>,
) -> PageResult {
    let filter = OrderFilter {
        job: match blank(&q.job) {
            Some(j) => Some(
                j.parse::<i64>()
                    .map_err(|_| Error::invalid(format!("run `{j}` is not a run id")))?,
            ),
            None => None,
        },
        connection: blank(&q.connection),
        state: match blank(&q.state) {
            Some(s) => Some(OrderState::parse(&s).ok_or_else(|| {
                Error::invalid(format!("state `{s}`: one of {}", STATES.join(", ")))
            })?),
            None => None,
        },
        identity: blank(&q.identity),
        kind: blank(&q.kind),
    };
    let rows = app.engine.orders(&filter, &page_after(q.after)?).await?;
    Ok(render(&pages::Orders {
        chrome: &me.chrome("orders", "Orders"),
        f: pages::OrderFilters {
            job: q.job,
            connection: q.connection,
            state: q.state,
            identity: q.identity,
            kind: q.kind,
        },
        states: STATES.to_vec(),
        kinds: crate::identity::views::ORDER_KINDS.to_vec(),
        next: next_of(&rows, |o| o.id.clone()),
        rows,
        notice: q.retried.map(|n| {
            format!("{n} failed orders will be sent again by the next run of their connection.")
        }),
    }))
}

/// `GET /orders/{id}`.
pub async fn order(State(app): State<App>, me: Person, Path(id): Path<String>) -> PageResult {
    let o = app.engine.order(&id).await?;
    let current = match app.engine.entry(&o.connection, &o.key).await {
        Ok(e) => Some(e.attributes),
        Err(e) if e.code == crate::error::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    Ok(render(&pages::Order {
        chrome: &me.chrome("orders", format!("Order {id}")),
        changes: diff::order_changes(current.as_ref(), &o.order.kind),
        o,
    }))
}

/// `POST /orders/retry` with one `id` field per order.
pub async fn retry(State(app): State<App>, me: Person, RawForm(form): RawForm) -> PageResult {
    let ids: Vec<String> = url::form_urlencoded::parse(&form)
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.into_owned())
        .collect();
    let r = app.engine.retry_orders(&ids).await;
    let target = if ids.len() == 1 {
        ids[0].clone()
    } else {
        format!("{} orders", ids.len())
    };
    me.record(
        &app,
        "order.retry",
        &target,
        r.as_ref().map(|n| format!("{n} put back")),
    )
    .await;
    Ok(see_other(&format!("/orders?state=retry&retried={}", r?)))
}

fn agents_page(
    me: &Person,
    rows: Vec<idgard_protocol::AgentView>,
    enrolment: Option<pages::Enrolment>,
) -> axum::response::Response {
    render(&pages::Agents {
        chrome: &me.chrome("agents", "Agents"),
        rows,
        online_ms: ONLINE_MS,
        enrolment,
    })
}

/// `GET /agents`.
pub async fn agents(State(app): State<App>, me: Person) -> PageResult {
    let rows = app
        .queue
        .agents(&crate::page::Page::first(PAGE_ROWS * 10))
        .await?;
    Ok(agents_page(&me, rows, None))
}

fn enrolment(app: &App, answer: &NewAgentAnswer) -> pages::Enrolment {
    let server = app
        .web
        .public_url
        .clone()
        .unwrap_or_else(|| "https://<this server>".into());
    pages::Enrolment {
        agent: answer.agent.name.clone(),
        token: answer.enrolment_token.clone(),
        command: format!(
            "idgard-agent enrol --server {server} --token {}",
            answer.enrolment_token
        ),
    }
}

#[derive(Deserialize)]
pub struct NewAgentForm {
    name: String,
}

/// `POST /agents`: adds an agent and shows its enrolment token once.
pub async fn add_agent(
    State(app): State<App>,
    me: Person,
    axum::Form(f): axum::Form<NewAgentForm>,
) -> PageResult {
    let r = app.queue.add_agent(f.name.trim()).await;
    me.record(
        &app,
        "agent.add",
        f.name.trim(),
        r.as_ref().map(|_| String::new()),
    )
    .await;
    let answer = r?;
    let rows = app
        .queue
        .agents(&crate::page::Page::first(PAGE_ROWS * 10))
        .await?;
    let e = enrolment(&app, &answer);
    Ok(agents_page(&me, rows, Some(e)))
}

/// `POST /agents/{name}/reset`: new credentials; the old ones end.
pub async fn reset_agent(
    State(app): State<App>,
    me: Person,
    Path(name): Path<String>,
) -> PageResult {
    let r = app.queue.reset_agent(&name).await;
    me.record(
        &app,
        "agent.reset",
        &name,
        r.as_ref().map(|_| String::new()),
    )
    .await;
    let answer = r?;
    let rows = app
        .queue
        .agents(&crate::page::Page::first(PAGE_ROWS * 10))
        .await?;
    let e = enrolment(&app, &answer);
    Ok(agents_page(&me, rows, Some(e)))
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    after: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Filter {
        Filter {
            user: blank(&self.user),
            action: blank(&self.action),
            outcome: blank(&self.outcome),
        }
    }
}

/// `GET /audit`.
pub async fn audit(State(app): State<App>, me: Person, Query(q): Query<AuditQuery>) -> PageResult {
    let rows = app
        .web
        .audit
        .list(&q.filter(), &page_after(q.after.clone())?)
        .await?;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Ok(render(&pages::Audit {
        chrome: &me.chrome("audit", "Audit trail"),
        csv: format!(
            "/audit.csv?user={}&action={}&outcome={}",
            enc(&q.user),
            enc(&q.action),
            enc(&q.outcome)
        ),
        next: next_of(&rows, |e| e.id.to_string()),
        f: pages::AuditFilters {
            user: q.user,
            action: q.action,
            outcome: q.outcome,
        },
        rows,
    }))
}

/// Events one CSV export holds at most.
const CSV_MAX: u32 = idgard_protocol::PAGE_MAX;

/// `GET /audit.csv`: the filtered trail (newest first, at most [`CSV_MAX`] events).
pub async fn audit_csv(
    State(app): State<App>,
    _me: Person,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let page = crate::page::Page::first(CSV_MAX);
    let rows = app.web.audit.list(&q.filter(), &page).await?;
    let mut lines = vec![
        [
            "id", "at", "user", "action", "target", "outcome", "address", "detail",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in rows {
        lines.push(vec![
            e.id.to_string(),
            idgard_web::when(e.at_ms),
            defuse(e.user.unwrap_or_default()),
            defuse(e.action),
            defuse(e.target.unwrap_or_default()),
            e.outcome,
            e.address.unwrap_or_default(),
            defuse(e.detail.unwrap_or_default()),
        ]);
    }
    csv_answer("idgard-audit.csv", lines)
}

/// A CSV download of `lines` named `file`.
fn csv_answer(file: &str, lines: Vec<Vec<String>>) -> PageResult {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::from(anyhow::anyhow!("writing CSV: {e}"));
    for l in lines {
        w.write_record(l).map_err(io)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| Error::from(anyhow::anyhow!("writing CSV: {e}")))?;
    let file = file.replace(
        |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
        "_",
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is written with a
/// leading quote: the trail holds text people typed.
fn defuse(s: String) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

#[derive(Deserialize)]
pub struct ReviewForm {
    key: String,
    decision: String,
}

/// `POST /connections/{name}/review`: confirms or rejects an unlinked account's match.
pub async fn review(
    State(app): State<App>,
    me: Person,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ReviewForm>,
) -> PageResult {
    use crate::identity::operate::Review;
    let review = match f.decision.as_str() {
        "confirm" => Review::Confirm,
        "reject" => Review::Reject,
        other => {
            return Err(Error::invalid(format!("decision `{other}`: confirm or reject")).into());
        }
    };
    let r = app.engine.review_link(&name, &f.key, review).await;
    let action = format!("link.{}", f.decision);
    let target = format!("{name}/{}", f.key);
    me.record(
        &app,
        &action,
        &target,
        r.as_ref().map(|l| l.situation.as_str().to_owned()),
    )
    .await;
    r?;
    let back = url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>();
    Ok(see_other(&format!(
        "/connections/{back}?situation=unlinked"
    )))
}

#[derive(Deserialize, Default)]
pub struct CsvQuery {
    #[serde(default)]
    situation: String,
}

/// Entries one CSV export holds at most.
const ENTRIES_CSV_MAX: u32 = idgard_protocol::PAGE_MAX;

/// `GET /connections/{name}/entries.csv?situation=unmatched`: the orphans (or any situation)
/// as CSV, one column per attribute.
pub async fn entries_csv(
    State(app): State<App>,
    _me: Person,
    Path(name): Path<String>,
    Query(q): Query<CsvQuery>,
) -> PageResult {
    let situation = match q.situation.as_str() {
        "" => None,
        s => Some(
            idgard_protocol::Situation::parse(s)
                .ok_or_else(|| Error::invalid(format!("situation `{s}`")))?,
        ),
    };
    let rows = app
        .engine
        .entries(&name, situation, &crate::page::Page::first(ENTRIES_CSV_MAX))
        .await?;
    let names: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|e| e.attributes.keys()).collect();
    let mut head = vec![
        "key".to_owned(),
        "situation".to_owned(),
        "identity".to_owned(),
    ];
    head.extend(names.iter().map(|n| defuse((*n).clone())));
    let mut lines = vec![head];
    for e in &rows {
        let mut line = vec![
            defuse(e.key.clone()),
            e.situation
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            defuse(e.identity.clone().unwrap_or_default()),
        ];
        line.extend(names.iter().map(|n| {
            defuse(
                e.attributes
                    .get(*n)
                    .map(|v| v.join("|"))
                    .unwrap_or_default(),
            )
        }));
        lines.push(line);
    }
    csv_answer(&format!("idgard-{name}.csv"), lines)
}
