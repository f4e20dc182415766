//! Acting on provisioning and the platform: orders (and retrying them), agents (adding,
//! resetting), the audit trail (and its CSV export).

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
    };
    let rows = app.engine.orders(&filter, &page_after(q.after)?).await?;
    Ok(render(&pages::Orders {
        chrome: &me.chrome("orders", "Orders"),
        f: pages::OrderFilters {
            job: q.job,
            connection: q.connection,
            state: q.state,
            identity: q.identity,
        },
        states: STATES.to_vec(),
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
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::from(anyhow::anyhow!("writing CSV: {e}"));
    w.write_record([
        "id", "at", "user", "action", "target", "outcome", "address", "detail",
    ])
    .map_err(io)?;
    for e in rows {
        w.write_record([
            e.id.to_string(),
            idgard_web::when(e.at_ms),
            defuse(e.user.unwrap_or_default()),
            defuse(e.action),
            defuse(e.target.unwrap_or_default()),
            e.outcome,
            e.address.unwrap_or_default(),
            defuse(e.detail.unwrap_or_default()),
        ])
        .map_err(io)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| Error::from(anyhow::anyhow!("writing CSV: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"idgard-audit.csv\"",
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
