//! Each command: one or two API calls, then printing.

use crate::show::{self, Output, Table, ago, or_dash, time};
use crate::{
    AgentCommand, Command, EntryCommand, IdentityCommand, JobCommand, LinksArgs, Login, OrdersArgs,
    TaskCommand, TokenCommand,
};
use anyhow::{Context as _, Result};
use idgard_client::api::{Api, path};
use idgard_client::context::Context;
use idgard_protocol::{
    AdminTokenView, AgentView, EntryView, IdentityView, JobView, LinkView, NewAdminToken,
    NewAdminTokenAnswer, NewAgent, NewAgentAnswer, OrderView, RunJob, VersionView,
};
use std::process::ExitCode;

pub async fn run(command: Command, out: Output) -> Result<ExitCode> {
    if let Command::Login(l) = command {
        return login(l).await.map(|()| ExitCode::SUCCESS);
    }
    if let Command::Logout = command {
        let p = crate::context_path()?;
        match std::fs::remove_file(&p) {
            Ok(()) => show::line(&format!("context {} forgotten", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => show::line("no saved context"),
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let context = Context::load(&crate::context_path()?)?;
    let api = Api::new(&context)?;
    match command {
        Command::Login(_) | Command::Logout => unreachable!("handled above"),
        Command::Agent(c) => agent(&api, &context, c, out).await?,
        Command::AdminToken(c) => tokens(&api, c, out).await?,
        Command::Job(c) => return job(&api, c, out).await,
        Command::Task(TaskCommand::Log { id, follow }) => {
            crate::follow::task_log(&api, id, follow, out).await?
        }
        Command::Identity(IdentityCommand::Show { key }) => {
            let v: IdentityView = api.get(&path(&["identities", &key], &[])).await?;
            identity(&v, out);
        }
        Command::Entry(EntryCommand::Show { connection, key }) => {
            let v: EntryView = api
                .get(&path(&["connections", &connection, "entries", &key], &[]))
                .await?;
            entry(&v, out);
        }
        Command::History { connection, key } => {
            let v: Vec<VersionView> = api
                .get(&path(
                    &["connections", &connection, "entries", &key, "history"],
                    &[],
                ))
                .await?;
            history(&v, out);
        }
        Command::Package(c) => crate::packages::run(&api, c, out).await?,
        Command::Orders(a) => orders(&api, a, out).await?,
        Command::Links(a) => links(&api, a, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn login(l: Login) -> Result<()> {
    let token = match (l.token, l.token_file) {
        (Some(t), _) => t,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("give --token-file FILE (or --token TOKEN)"),
    };
    let context = Context {
        server: l.server.trim_end_matches('/').to_owned(),
        fingerprint: l.fingerprint,
        token,
    };
    // Saved only once the server took the token: a typo is caught now, not at the next command.
    let api = Api::new(&context)?;
    let _: Vec<AgentView> = api
        .get(&path(&["agents"], &[("limit", Some("1".into()))]))
        .await
        .with_context(|| format!("{} did not accept this token", context.server))?;
    let p = crate::context_path()?;
    context.save(&p)?;
    show::line(&format!(
        "logged in to {}; context saved to {}",
        context.server,
        p.display()
    ));
    Ok(())
}

async fn agent(api: &Api, context: &Context, c: AgentCommand, out: Output) -> Result<()> {
    match c {
        AgentCommand::List => {
            let agents: Vec<AgentView> = api.get(&path(&["agents"], &[])).await?;
            if out == Output::Json {
                show::json(&agents);
                return Ok(());
            }
            let now = show::now_ms();
            let mut t = Table::new(&["NAME", "STATE", "LAST SEEN", "CONNECTIONS"]);
            let refused: Vec<String> = agents
                .iter()
                .flat_map(|a| {
                    let files = a.refused.iter().map(move |r| {
                        format!("agent {}: {} refused: {}", a.name, r.file, r.reason)
                    });
                    let packages = a.refused_packages.iter().map(move |p| {
                        format!(
                            "agent {}: package {} {} refused ({}): {}",
                            a.name, p.name, p.version, p.code, p.reason
                        )
                    });
                    files.chain(packages)
                })
                .collect();
            for a in agents {
                t.row(vec![
                    a.name,
                    if a.enrolled { "enrolled" } else { "waiting" }.into(),
                    a.last_seen_ms
                        .map(|s| ago(s, now))
                        .unwrap_or_else(|| "never".into()),
                    a.connections
                        .iter()
                        .map(|c| match out {
                            Output::Wide => format!("{} ({} {})", c.name, c.connector, c.version),
                            _ => c.name.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            t.print();
            for r in refused {
                show::line(&r);
            }
        }
        AgentCommand::Add { name } => {
            let a: NewAgentAnswer = api
                .post(&path(&["agents"], &[]), &NewAgent { name: name.clone() })
                .await?;
            enrolment(context, &name, "created", &a, out);
        }
        AgentCommand::Reset { name } => {
            let a: NewAgentAnswer = api
                .post(&path(&["agents", &name, "reset"], &[]), &())
                .await?;
            enrolment(context, &name, "reset", &a, out);
        }
        AgentCommand::Remove { name } => {
            api.delete(&path(&["agents", &name], &[])).await?;
            show::line(&format!("agent `{name}` removed"));
        }
    }
    Ok(())
}

async fn tokens(api: &Api, c: TokenCommand, out: Output) -> Result<()> {
    match c {
        TokenCommand::List => {
            let list: Vec<AdminTokenView> = api.get(&path(&["admin-tokens"], &[])).await?;
            if out == Output::Json {
                show::json(&list);
                return Ok(());
            }
            let mut t = Table::new(&["ID", "NAME", "CREATED", "EXPIRES"]);
            for k in list {
                t.row(vec![
                    k.id,
                    or_dash(k.name.as_deref()),
                    time(k.created_ms),
                    k.expires_ms.map(time).unwrap_or_else(|| "never".into()),
                ]);
            }
            t.print();
        }
        TokenCommand::Create {
            name,
            expires_in_days,
        } => {
            let made: NewAdminTokenAnswer = api
                .post(
                    &path(&["admin-tokens"], &[]),
                    &NewAdminToken {
                        name,
                        expires_in_s: expires_in_days.map(|d| d.saturating_mul(86_400)),
                    },
                )
                .await?;
            match out {
                Output::Json => show::json(&made),
                _ => {
                    show::line(&made.token);
                    eprintln!("token {} created; it is shown this once", made.view.id);
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let gone: AdminTokenView = api
                .call(
                    reqwest::Method::DELETE,
                    &path(&["admin-tokens", &id], &[]),
                    None::<&()>,
                )
                .await?;
            show::line(&format!("administrator token {} revoked", gone.id));
        }
    }
    Ok(())
}

fn enrolment(context: &Context, name: &str, what: &str, a: &NewAgentAnswer, out: Output) {
    if out == Output::Json {
        show::json(a);
        return;
    }
    let pin = context
        .fingerprint
        .as_deref()
        .map(|f| format!(" --fingerprint {f}"))
        .unwrap_or_default();
    show::line(&format!(
        "agent `{name}` {what}; enrolment token (valid until {} UTC, once):\n  {}\n\
         on the agent's host, in its folder, run:\n  idgard-agent enrol --server {} --token {}{pin}",
        time(a.expires_ms),
        a.enrolment_token,
        context.server,
        a.enrolment_token
    ));
}

async fn job(api: &Api, c: JobCommand, out: Output) -> Result<ExitCode> {
    let view: JobView = match c {
        JobCommand::List { limit } => {
            let jobs: Vec<JobView> = api
                .get(&path(&["jobs"], &[("limit", Some(limit.to_string()))]))
                .await?;
            if out == Output::Json {
                show::json(&jobs);
            } else {
                let mut t = Table::new(&["ID", "STATE", "STEP", "AGENT", "CREATED", "NAME"]);
                for j in jobs {
                    t.row(vec![
                        j.id.to_string(),
                        j.state.as_str().into(),
                        format!("{}/{}", (j.step + 1).min(j.steps), j.steps),
                        j.agent,
                        time(j.created_ms),
                        j.name,
                    ]);
                }
                t.print();
            }
            return Ok(ExitCode::SUCCESS);
        }
        JobCommand::Show { id } => api.get(&path(&["jobs", &id.to_string()], &[])).await?,
        JobCommand::Run {
            name,
            incremental,
            dry_run,
            wait,
        } => {
            let job: JobView = api
                .post(
                    &path(&["jobs", "run"], &[]),
                    &RunJob {
                        job: name,
                        incremental,
                        dry_run,
                    },
                )
                .await?;
            if wait {
                return crate::follow::job(api, job, out).await;
            }
            job
        }
        JobCommand::Cancel { id } => {
            api.post(&path(&["jobs", &id.to_string(), "cancel"], &[]), &())
                .await?
        }
        JobCommand::Approve { id } => {
            api.post(&path(&["jobs", &id.to_string(), "approve"], &[]), &())
                .await?
        }
    };
    crate::follow::print_job(&view, out);
    Ok(ExitCode::SUCCESS)
}

async fn orders(api: &Api, a: OrdersArgs, out: Output) -> Result<()> {
    let list: Vec<OrderView> = api
        .get(&path(
            &["orders"],
            &[
                ("job", a.job.map(|j| j.to_string())),
                ("connection", a.connection),
                ("state", a.state),
                ("identity", a.identity),
                ("limit", Some(a.limit.to_string())),
            ],
        ))
        .await?;
    if out == Output::Json {
        show::json(&list);
        return Ok(());
    }
    print_orders(&list, out);
    Ok(())
}

pub fn print_orders(list: &[OrderView], out: Output) {
    let mut headers = vec!["STATE", "KIND", "CONNECTION", "KEY", "IDENTITY", "UPDATED"];
    if out == Output::Wide {
        headers.extend(["ID", "JOB", "ATTEMPTS"]);
    }
    headers.push("MESSAGE");
    let mut t = Table::new(&headers);
    for o in list {
        let mut row = vec![
            o.state.as_str().into(),
            o.kind.clone(),
            o.connection.clone(),
            o.key.clone(),
            or_dash(o.identity.as_deref()),
            time(o.updated_ms),
        ];
        if out == Output::Wide {
            row.extend([
                o.id.clone(),
                o.job_id
                    .map(|j| j.to_string())
                    .unwrap_or_else(|| "-".into()),
                o.attempts.to_string(),
            ]);
        }
        row.push(o.message.clone().unwrap_or_default());
        t.row(row);
    }
    t.print();
}

async fn links(api: &Api, a: LinksArgs, out: Output) -> Result<()> {
    let list: Vec<LinkView> = api
        .get(&path(
            &["connections", &a.connection, "links"],
            &[
                ("situation", a.situation),
                ("after", a.after),
                ("limit", Some(a.limit.to_string())),
            ],
        ))
        .await?;
    if out == Output::Json {
        show::json(&list);
        return Ok(());
    }
    let mut t = Table::new(&["KEY", "SITUATION", "IDENTITY", "SINCE"]);
    for l in list {
        t.row(vec![
            l.key,
            l.situation.to_string(),
            or_dash(l.identity.as_deref()),
            time(l.updated_ms),
        ]);
    }
    t.print();
    Ok(())
}

fn identity(v: &IdentityView, out: Output) {
    if out == Output::Json {
        show::json(v);
        return;
    }
    show::line(&format!("identity {} (from `{}`)", v.key, v.connection));
    match &v.attributes {
        Some(a) => {
            for (name, values) in a {
                show::line(&format!("  {name}: {}", values.join(", ")));
            }
        }
        None => show::line("  (no longer in its source: it left)"),
    }
    show::line("");
    show::line("accounts:");
    if v.accounts.is_empty() {
        show::line("  none");
    } else {
        let mut t = Table::new(&["  TARGET", "KEY", "SITUATION", "SINCE", "ATTRIBUTES"]);
        for a in &v.accounts {
            t.row(vec![
                format!("  {}", a.connection),
                a.link.key.clone(),
                a.link.situation.to_string(),
                time(a.link.updated_ms),
                match (&a.attributes, out) {
                    (Some(attrs), Output::Wide) => show::attrs(attrs),
                    (Some(attrs), _) => format!("{} attribute(s)", attrs.len()),
                    (None, _) => "(not in the repository)".into(),
                },
            ]);
        }
        t.print();
    }
    show::line("");
    show::line("orders under way:");
    if v.orders.is_empty() {
        show::line("  none");
    } else {
        print_orders(&v.orders, out);
    }
    show::line("");
    show::line("history in the source:");
    for h in &v.history {
        show::line(&format!(
            "  {} .. {}  {}",
            time(h.valid_from_ms),
            h.valid_to_ms.map(time).unwrap_or_else(|| "now".into()),
            show::attrs(&h.attributes)
        ));
    }
}

fn entry(v: &EntryView, out: Output) {
    if out == Output::Json {
        show::json(v);
        return;
    }
    show::line(&format!(
        "{} {} (since {})",
        v.entity_type,
        v.key,
        time(v.valid_from_ms)
    ));
    for (name, values) in &v.attributes {
        show::line(&format!("  {name}: {}", values.join(", ")));
    }
    if let Some(s) = v.situation {
        show::line(&format!(
            "situation: {s}; identity: {}",
            or_dash(v.identity.as_deref())
        ));
    }
}

fn history(v: &[VersionView], out: Output) {
    if out == Output::Json {
        show::json(&v);
        return;
    }
    let mut t = Table::new(&["FROM", "TO", "SYNC", "ATTRIBUTES"]);
    for h in v {
        t.row(vec![
            time(h.valid_from_ms),
            h.valid_to_ms.map(time).unwrap_or_else(|| "now".into()),
            match h.sync_id {
                0 => "order".into(),
                s => s.to_string(),
            },
            show::attrs(&h.attributes),
        ]);
    }
    t.print();
}
