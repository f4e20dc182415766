//! The server's figures for Prometheus, at `GET /metrics` (OpenMetrics text).
//!
//! Two sources: what this process measures as work passes through it (task latencies, lease
//! lapses, the server's own synchronize and provisioning steps), counted per replica; and what
//! the database holds, read at each scrape so that every replica tells the same: the queue's
//! depth by state, runs by state, agents known and online, orders waiting or failed, mails
//! waiting. See `docs/operations.md` for the list.

pub mod agents;
mod read;
pub mod settings;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

pub use read::Snapshot;

/// Labels by operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    /// `export`, `fulfill`, `synchronize`...
    pub operation: String,
}

/// Labels by operation and final state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpState {
    /// The operation.
    pub operation: String,
    /// `succeeded`, `failed`, `cancelled`, `lost`.
    pub state: String,
}

/// Labels by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// The state.
    pub state: String,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The route's pattern (`/api/v1/jobs/{id}`), never the path itself: bounded labels.
    pub route: String,
}

/// Labels of an HTTP answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Answer {
    /// The method.
    pub method: String,
    /// The route's pattern.
    pub route: String,
    /// The status code.
    pub status: String,
}

/// Every figure, registered once.
pub struct Metrics {
    registry: Registry,
    task_latency: Family<Op, Histogram>,
    tasks_finished: Family<OpState, Counter>,
    lease_lapses: Counter,
    server_steps: Family<Op, Histogram>,
    tasks: Family<State, Gauge>,
    runs: Family<State, Gauge>,
    orders: Family<State, Gauge>,
    agents: Gauge,
    agents_online: Gauge,
    mail_waiting: Gauge,
    from_agents: std::sync::Arc<FromAgents>,
    http_requests: Family<Answer, Counter>,
    http_duration: Family<Request, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Seconds, from 10 ms to about 3 hours.
fn seconds() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 10800.0,
    ])
}

/// Seconds, from 1 ms to 60 s.
fn request_seconds() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("idgard");
        let task_latency = Family::<Op, Histogram>::new_with_constructor(seconds as fn() -> _);
        registry.register(
            "task_latency_seconds",
            "From a task's creation to its end (waiting in the queue and running), by operation",
            task_latency.clone(),
        );
        let tasks_finished = Family::<OpState, Counter>::default();
        registry.register(
            "tasks_finished",
            "Tasks that ended through this replica, by operation and final state",
            tasks_finished.clone(),
        );
        let lease_lapses = Counter::default();
        registry.register(
            "lease_lapses",
            "Leases that lapsed or timed out and were ended by this replica",
            lease_lapses.clone(),
        );
        let server_steps = Family::<Op, Histogram>::new_with_constructor(seconds as fn() -> _);
        registry.register(
            "server_step_duration_seconds",
            "Synchronize and provisioning steps run by this replica, by operation",
            server_steps.clone(),
        );
        let tasks = Family::<State, Gauge>::default();
        registry.register(
            "queue_tasks",
            "Tasks not yet ended, by state (queued, claimed, running, blocked)",
            tasks.clone(),
        );
        let runs = Family::<State, Gauge>::default();
        registry.register("runs", "Runs (jobs) by state", runs.clone());
        let orders = Family::<State, Gauge>::default();
        registry.register("orders", "Orders by state", orders.clone());
        let agents = Gauge::default();
        registry.register(
            "agents",
            "Agents enrolled or waiting to enrol",
            agents.clone(),
        );
        let agents_online = Gauge::default();
        registry.register(
            "agents_online",
            "Agents heard from within the last two minutes",
            agents_online.clone(),
        );
        let mail_waiting = Gauge::default();
        registry.register(
            "mail_waiting",
            "Notification mails not yet handed to the SMTP server",
            mail_waiting.clone(),
        );
        let from_agents = std::sync::Arc::new(FromAgents::default());
        registry.register_collector(Box::new(from_agents.clone()));
        let http_requests = Family::<Answer, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests this replica answered, by method, route and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<Request, Histogram>::new_with_constructor(request_seconds as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route (an agent's poll is held up to \
             queue.poll_wait_ms by design)",
            http_duration.clone(),
        );
        Metrics {
            registry,
            task_latency,
            tasks_finished,
            lease_lapses,
            server_steps,
            tasks,
            runs,
            orders,
            agents,
            agents_online,
            mail_waiting,
            from_agents,
            http_requests,
            http_duration,
        }
    }
}

impl Metrics {
    /// A task ended: `operation`, its final `state`, `latency_ms` since it was created.
    pub fn task_finished(&self, operation: &str, state: &str, latency_ms: i64) {
        let op = Op {
            operation: operation.to_owned(),
        };
        self.task_latency
            .get_or_create(&op)
            .observe(latency_ms.max(0) as f64 / 1000.0);
        self.tasks_finished
            .get_or_create(&OpState {
                operation: op.operation,
                state: state.to_owned(),
            })
            .inc();
    }

    /// `n` leases lapsed.
    pub fn lapsed(&self, n: usize) {
        self.lease_lapses.inc_by(n as u64);
    }

    /// The server ran a step of `operation` for `took`.
    pub fn server_step(&self, operation: &str, took: Duration) {
        self.server_steps
            .get_or_create(&Op {
                operation: operation.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// An HTTP request to `route` (its pattern) was answered with `status` after `took`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let request = Request {
            method: method.to_owned(),
            route: route.to_owned(),
        };
        self.http_duration
            .get_or_create(&request)
            .observe(took.as_secs_f64());
        self.http_requests
            .get_or_create(&Answer {
                method: request.method,
                route: request.route,
                status: status.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text, with the database's figures of `snap`.
    pub fn render(&self, snap: &Snapshot) -> String {
        set_all(&self.tasks, &snap.tasks);
        set_all(&self.runs, &snap.runs);
        set_all(&self.orders, &snap.orders);
        self.agents.set(snap.agents);
        self.agents_online.set(snap.agents_online);
        self.mail_waiting.set(snap.mail_waiting);
        *self.from_agents.0.lock().unwrap_or_else(|e| e.into_inner()) = snap.agent_figures.clone();
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        text
    }
}

/// Labels of the agents' figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentRun {
    agent: String,
    connection: String,
    operation: String,
}

/// Labels of the agents' limit hits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLimit {
    agent: String,
    connection: String,
    operation: String,
    limit: String,
}

/// One figure of a connector's line.
type Value = fn(&idgard_protocol::ConnectorFigures) -> f64;

/// The counters agents keep of their connectors' runs, as they last sent them (they start
/// again from zero when an agent restarts, as counters do).
#[derive(Debug, Default)]
struct FromAgents(std::sync::Mutex<Vec<(String, idgard_protocol::AgentFigures)>>);

impl Collector for FromAgents {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let lines = || {
            figures.iter().flat_map(|(agent, f)| {
                f.connectors.iter().map(move |c| {
                    let labels = AgentRun {
                        agent: agent.clone(),
                        connection: c.connection.clone(),
                        operation: c.operation.as_str().to_owned(),
                    };
                    (labels, c)
                })
            })
        };
        let counters: [(&str, &str, Value); 3] = [
            (
                "agent_connector_runs",
                "Connector runs ended, as agents count them",
                |c| c.runs as f64,
            ),
            (
                "agent_connector_failures",
                "Connector runs that failed, as agents count them",
                |c| c.failures as f64,
            ),
            (
                "agent_connector_run_seconds",
                "Seconds connectors ran, as agents count them",
                |c| c.seconds,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, c) in lines() {
                ConstCounter::new(value(c)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agent_limit_hits",
            "Connector runs a limit stopped, by limit, as agents count them",
            None,
            MetricType::Counter,
        )?;
        for (run, c) in lines() {
            for (limit, n) in &c.limit_hits {
                let labels = AgentLimit {
                    agent: run.agent.clone(),
                    connection: run.connection.clone(),
                    operation: run.operation.clone(),
                    limit: limit.clone(),
                };
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// `family` holds exactly the states of `counts`.
fn set_all(family: &Family<State, Gauge>, counts: &[(String, i64)]) {
    family.clear();
    for (state, n) in counts {
        family
            .get_or_create(&State {
                state: state.clone(),
            })
            .set(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_rendered_with_their_labels() {
        let m = Metrics::default();
        m.task_finished("export", "succeeded", 1_500);
        m.task_finished("export", "failed", 20);
        m.lapsed(2);
        m.server_step("synchronize", Duration::from_millis(250));
        let snap = Snapshot {
            tasks: vec![("queued".into(), 7)],
            runs: vec![("failed".into(), 1), ("succeeded".into(), 3)],
            orders: vec![],
            agents: 4,
            agents_online: 3,
            mail_waiting: 0,
            agent_figures: vec![(
                "lyon".into(),
                idgard_protocol::AgentFigures {
                    connectors: vec![idgard_protocol::ConnectorFigures {
                        connection: "hr".into(),
                        operation: idgard_protocol::Operation::Export,
                        runs: 3,
                        failures: 1,
                        seconds: 4.5,
                        limit_hits: [("memory".to_owned(), 1)].into(),
                    }],
                },
            )],
        };
        let text = m.render(&snap);
        for line in [
            "idgard_tasks_finished_total{operation=\"export\",state=\"failed\"} 1",
            "idgard_task_latency_seconds_count{operation=\"export\"} 2",
            "idgard_lease_lapses_total 2",
            "idgard_server_step_duration_seconds_sum{operation=\"synchronize\"} 0.25",
            "idgard_queue_tasks{state=\"queued\"} 7",
            "idgard_runs{state=\"succeeded\"} 3",
            "idgard_agents_online 3",
            "idgard_agent_connector_runs_total{agent=\"lyon\",connection=\"hr\",operation=\"export\"} 3",
            "idgard_agent_connector_run_seconds_total{agent=\"lyon\",connection=\"hr\",operation=\"export\"} 4.5",
            "idgard_agent_limit_hits_total{agent=\"lyon\",connection=\"hr\",operation=\"export\",limit=\"memory\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // A state that is gone is not shown with its old value.
        let text = m.render(&Snapshot::default());
        assert!(
            !text.contains("idgard_queue_tasks{state=\"queued\"}"),
            "{text}"
        );
    }
}
