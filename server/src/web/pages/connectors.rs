//! Connectors as the agents run them: name, version, contract, what each asks for beside what
//! its connection grants; and testing a connection.

use super::{PageResult, Person, render, see_other};
use crate::http::App;
use axum::extract::{Path, State};
use idgard_web::pages;

/// `GET /connectors`: every connection each agent reported, with its connector.
pub async fn connectors(State(app): State<App>, me: Person) -> PageResult {
    let agents = app
        .queue
        .agents(&crate::page::Page::first(super::browse::PAGE_ROWS * 10))
        .await?;
    let rows = agents
        .into_iter()
        .flat_map(|a| {
            let agent = a.name;
            a.connections
                .into_iter()
                .map(move |report| pages::ConnectorRow {
                    agent: agent.clone(),
                    report,
                })
        })
        .collect();
    Ok(render(&pages::Connectors {
        chrome: &me.chrome("connectors", "Connectors"),
        rows,
    }))
}

/// `POST /connections/{name}/test`: a run of one `test-connection` task on its agent.
pub async fn test(State(app): State<App>, me: Person, Path(name): Path<String>) -> PageResult {
    let r = app.engine.test_connection(&name, &me.session.user).await;
    me.record(
        &app,
        "connection.test",
        &name,
        r.as_ref().map(|j| format!("run {}", j.id)),
    )
    .await;
    Ok(see_other(&format!("/runs/{}", r?.id)))
}
