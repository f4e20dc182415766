//! `idgard-server`: queues tasks for agents, stores what they send, serves the API.
//!
//! It never opens a connection to a managed system or to an agent: agents poll it.

pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod private;
pub mod queue;
pub mod seal;
pub mod web;

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the database, the queue and the identity engine for `config` (also used by the
/// CLI's direct commands, which refuse an embedded database in clear: only [`serve`] encrypts
/// one).
pub async fn open(config: &config::Config) -> Result<identity::Engine> {
    open_as(config, false).await
}

async fn open_as(config: &config::Config, serving: bool) -> Result<identity::Engine> {
    private::create_dir(&config.data_dir)?;
    private::protect(&config.data_dir)?;
    let sealer = sealer(config)?;
    let url = config.database_url();
    let key = match db::sqlite_file(&url) {
        Some(file) => Some(db::cipher::prepare(sealer.ring(), &file, serving).await?),
        None => None,
    };
    let db = db::Db::open_with(&url, key.as_ref(), config.database.cache_mib).await?;
    engine(config, db, sealer)
}

/// The server's sealer, on its key ring.
fn sealer(config: &config::Config) -> Result<Arc<seal::Sealer>> {
    let (keyring, configured) = config.keyring();
    Ok(Arc::new(seal::Sealer::load(
        &keyring,
        configured,
        &config.secrets_key(),
    )?))
}

/// The queue and the identity engine for `config` over a database already open: [`open`]'s
/// second half, for benchmarks that compare a database in clear with an encrypted one.
pub fn engine_on(config: &config::Config, db: db::Db) -> Result<identity::Engine> {
    engine(config, db, sealer(config)?)
}

fn engine(
    config: &config::Config,
    db: db::Db,
    sealer: Arc<seal::Sealer>,
) -> Result<identity::Engine> {
    let rules = match &config.rules {
        Some(path) => Some(Arc::new(identity::rules::Rules::load(path)?)),
        None => None,
    };
    let queue = queue::Queue {
        db,
        cfg: config.queue.clone(),
        clock: Arc::new(now_ms),
        beats: Default::default(),
        names: Default::default(),
        seen: Default::default(),
        sealer,
        live: Default::default(),
        metrics: Default::default(),
    };
    Ok(identity::Engine { queue, rules })
}

/// How often uploads past their retention are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// `https://...` or `http://...`.
    pub url: String,
    /// SHA-256 of the HTTPS certificate (what agents pin), when serving HTTPS.
    pub fingerprint: Option<String>,
}

/// Runs the server until `stop` resolves; `started` is called once it listens.
pub async fn serve(
    config: config::Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    started: impl FnOnce(&Started) + Send,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    private::create_dir(&config.data_dir)?;
    let _serving = db::Db::serving_lock(&config.database_url())?;
    config.ui.check(config.listen)?;
    if config.dev_http && config.tls.agent_ca.is_some() {
        anyhow::bail!(
            "tls.agent_ca asks agents for client certificates, which needs HTTPS: remove dev_http"
        );
    }
    if config.ui.dev_password.is_some() {
        tracing::warn!(
            "development sign-in is on (ui.dev_password): one password opens the UI; never run it like this in production"
        );
    }
    let engine = open_as(&config, true).await?;
    let queue = engine.queue.clone();
    queue.db.listen().await?;
    tracing::info!(
        database = %db::redact(&config.database_url()),
        "database ready"
    );
    if let Some(token) = queue.first_admin_token().await? {
        let path = config.data_dir.join("admin-token");
        keys::write_private(&path, format!("{token}\n").as_bytes())?;
        tracing::warn!(
            "created the first administrator token in {} (readable by this user only)",
            path.display()
        );
    }
    let password = match &config.signing.password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => None,
    };
    let signer = keys::Signer::load(
        config.signing.key.as_deref(),
        password.as_deref(),
        &config.data_dir.join("dev-signing-key.pem"),
        config.signing.token_ttl_s,
    )?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let connections = http::conn::Connections::new(
        http::conn::Limits {
            max: config.limits.connections,
            per_peer: config.limits.connections_per_peer,
            first_request: Duration::from_secs(config.limits.header_timeout_s),
            idle: Duration::from_secs(config.limits.idle_timeout_s),
        }
        .fitted_to_descriptors(),
    );
    let app = Arc::new(http::AppState {
        queue: queue.clone(),
        engine: engine.clone(),
        signer,
        max_upload: config.limits.upload_mib << 20,
        max_chunk: (config.limits.chunk_mib as u64) << 20,
        stopping,
        verified: Default::default(),
        connections: connections.clone(),
        throttle: http::throttle::Throttle::new(config.limits.failed_signins),
        generations: Default::default(),
        token_recheck: http::TOKEN_RECHECK,
        web: web::Web::new(
            config.ui.clone(),
            &queue,
            !config.dev_http,
            config.public_url.clone(),
        )?,
        metrics_token: config.metrics.token_digest()?,
        agent_certificates: config.tls.agent_ca.is_some(),
    });
    let router = http::router(
        app.clone(),
        config.limits.json_kib << 10,
        config.limits.chunk_mib << 20,
        Duration::from_secs(config.limits.body_timeout_s),
    );

    let reaper = {
        let queue = queue.clone();
        let every = Duration::from_millis(config.queue.reap_every_ms);
        tokio::spawn(async move {
            let mut pruned_at = None::<std::time::Instant>;
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = queue.reap().await {
                    tracing::warn!("lease check failed: {e}");
                }
                if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned_at = Some(std::time::Instant::now());
                    if let Err(e) = queue.prune_uploads().await {
                        tracing::warn!("removing old uploads failed: {e}");
                    }
                }
            }
        })
    };

    let figures = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = app.web.figures.refresh(&app.engine).await {
                    tracing::warn!("taking the dashboard's figures failed: {}", e.message);
                }
                tokio::time::sleep(web::figures::REFRESH).await;
            }
        })
    };
    if let Some(rules) = &engine.rules {
        tracing::info!(
            rules = rules.origin,
            sha256 = &rules.digest[..16],
            targets = rules.targets.len(),
            jobs = rules.jobs.len(),
            "provisioning rules loaded"
        );
        if let Err(e) = engine.prepare_search().await {
            tracing::warn!(
                "cannot create the index for searching identities by name (searches by name \
                 will be slow): {}",
                e.message
            );
        }
    }
    let notifier = notify::Notifier::new(
        &config.mail,
        queue.db.clone(),
        queue.clock.clone(),
        config.public_url.clone(),
    )?
    .map(notify::Notifier::spawn);
    let scheduler = {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = engine.fire_schedules().await {
                    tracing::warn!("schedule check failed: {}", e.message);
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        })
    };

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("stopping: answering held polls, finishing requests (10 s at most)");
        let _ = stopping_tx.send(true);
        shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let service = router.into_make_service();
    let guard = http::conn::Guard(connections);
    let (result, fingerprint) = if config.dev_http {
        tracing::warn!(
            "serving plain HTTP (dev_http): tokens and secrets travel in clear; never do this outside development"
        );
        let mut server = axum_server::bind(config.listen)
            .acceptor(guard)
            .handle(handle.clone());
        header_timeout(server.http_builder(), &config);
        let announce = announce(handle.clone(), "http", None, started);
        let (r, ()) = tokio::join!(server.serve(service), announce);
        (r, None)
    } else {
        let (cert, key, fingerprint) = keys::tls_material(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
            &config.data_dir,
        )?;
        let tls = match &config.tls.agent_ca {
            Some(ca) => {
                tracing::info!(authority = %ca.display(), "agents must present a client certificate of this authority");
                http::mtls::config(&cert, &key, ca)?
            }
            None => axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                .await
                .context("cannot use the TLS certificate and key")?,
        };
        let acceptor = http::mtls::WithPeerNames(
            axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .handshake_timeout(Duration::from_secs(config.limits.header_timeout_s))
                .acceptor(guard),
        );
        let mut server = axum_server::bind(config.listen)
            .acceptor(acceptor)
            .handle(handle.clone());
        header_timeout(server.http_builder(), &config);
        let announce = announce(handle.clone(), "https", Some(fingerprint.clone()), started);
        let (r, ()) = tokio::join!(server.serve(service), announce);
        (r, Some(fingerprint))
    };
    reaper.abort();
    scheduler.abort();
    figures.abort();
    if let Some(n) = notifier {
        n.abort();
    }
    let _ = fingerprint;
    result.with_context(|| format!("cannot serve on {}", config.listen))?;
    tracing::info!("stopped");
    Ok(())
}

/// Every request's header must arrive within the header timeout (HTTP/1).
fn header_timeout(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    config: &config::Config,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.limits.header_timeout_s));
}

async fn announce(
    handle: axum_server::Handle,
    scheme: &str,
    fingerprint: Option<String>,
    started: impl FnOnce(&Started),
) {
    if let Some(addr) = handle.listening().await {
        let s = Started {
            addr,
            url: format!("{scheme}://{addr}"),
            fingerprint,
        };
        match &s.fingerprint {
            Some(f) => tracing::info!(url = %s.url, fingerprint = %f, "listening"),
            None => tracing::info!(url = %s.url, "listening (plain HTTP)"),
        }
        started(&s);
    }
}
