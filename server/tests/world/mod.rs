//! A server with a clock the tests move, a rules file, one agent, and helpers that act as the
//! agent would: store exports, synchronize, compute provisioning, fulfil orders page by page.
#![allow(dead_code)]

use super::support;
use idgard_model::wire::BatchBuffer;
use idgard_model::wire::EntryOp;
use idgard_protocol::model::{OrderOutcome, OrderResult};
use idgard_protocol::{Operation, OrderResults, TaskOrders, TaskSpec, frames};
use idgard_server::identity::Engine;
use idgard_server::identity::provision::ProvisionReport;
use idgard_server::identity::repo::{Checked, SyncReport};
use idgard_server::identity::rules::Rules;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Runs a scenario on SQLite, then on PostgreSQL.
#[allow(unused_macros)]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::World::on(super::RULES, None).await).await;
            }
            #[tokio::test]
            async fn postgres() {
                let scratch = super::support::Scratch::new(stringify!($name)).await;
                super::$name(super::World::on(super::RULES, Some(scratch.url())).await).await;
                scratch.drop().await;
            }
        }
    };
}

pub const DAY: i64 = 86_400_000;

/// An entry of an export: entity type, key, attributes with their values.
pub type Entry<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [&'a str])]);

/// A fulfil task's next page, its orders read as the agent reads them.
pub async fn page(q: &Engine, agent: i64, task: i64, fence: i64) -> TaskOrders {
    let page = q.task_orders(agent, task, fence, false).await.unwrap();
    TaskOrders {
        orders: page
            .orders
            .iter()
            .map(|o| serde_json::from_str(o.get()).expect("a stored order reads"))
            .collect(),
        remaining: page.remaining,
    }
}

pub struct World {
    pub q: Engine,
    pub rules: Arc<Rules>,
    pub agent: i64,
    pub clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn with_rules(rules: &str) -> World {
        Self::on(rules, None).await
    }

    /// On a database of its own (`database`: a PostgreSQL URL; SQLite when `None`).
    pub async fn on(rules: &str, database: Option<String>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = idgard_server::config::Config {
            data_dir: dir.path().to_owned(),
            database_url: database,
            ..Default::default()
        };
        let mut q = idgard_server::open(&config).await.unwrap();
        let clock = Arc::new(AtomicI64::new(1_800_000_000_000));
        let c = clock.clone();
        q.queue.clock = Arc::new(move || c.load(Ordering::SeqCst));
        let rules = Arc::new(Rules::parse(rules, "test rules").unwrap());
        q.rules = Some(rules.clone());
        q.queue.add_agent("a").await.unwrap();
        let agent = q.queue.agent_id("a").await.unwrap();
        World {
            q,
            rules,
            agent,
            clock,
            _dir: dir,
        }
    }

    pub fn spec(op: Operation, args: serde_json::Value) -> TaskSpec {
        TaskSpec {
            connection: "accounts".into(),
            operation: op,
            args,
            max_attempts: None,
            timeout_s: None,
            agent: None,
        }
    }

    /// Stores an export of `hr`: upserts of `people`, deletes of `gone`.
    pub async fn export(&self, people: &[&str], gone: &[&str]) -> i64 {
        let mut b = BatchBuffer::with_capacity(4096);
        for p in people {
            let at = b.begin_entry(EntryOp::Upsert, "person", p);
            b.attribute1("name", p);
            b.end_entry(at, 1);
        }
        for g in gone {
            let at = b.begin_entry(EntryOp::Delete, "person", g);
            b.end_entry(at, 0);
        }
        self.store(&b).await
    }

    /// Accounts for E1 and E2, created; then the target's export: e1 as fulfilment wrote it
    /// plus a column of the target's own (`login`), e2 changed by someone else. Its report.
    pub async fn fulfil_two_then_echo(&self) -> SyncReport {
        let up = self.export(&["E1", "E2"], &[]).await;
        self.sync(up, false).await;
        self.provision().await;
        assert_eq!(self.fulfil(done).await.len(), 2);
        let up = self
            .export_accounts(&[
                (
                    "e1",
                    &[("employee_id", "E1"), ("enabled", "true"), ("login", "e1")],
                ),
                (
                    "e2",
                    &[("employee_id", "E9"), ("enabled", "true"), ("login", "e2")],
                ),
            ])
            .await;
        self.sync_of("accounts", up, true).await
    }

    /// Stores an export of `accounts`: each account with its attributes (one value each).
    pub async fn export_accounts(&self, accounts: &[(&str, &[(&str, &str)])]) -> i64 {
        let mut b = BatchBuffer::with_capacity(4096);
        for (key, attrs) in accounts {
            let at = b.begin_entry(EntryOp::Upsert, "account", key);
            for (n, v) in *attrs {
                b.attribute1(n, v);
            }
            b.end_entry(at, attrs.len() as u32);
        }
        self.store(&b).await
    }

    /// Stores one batch as a finished export upload.
    pub async fn store(&self, b: &BatchBuffer) -> i64 {
        let mut content = frames::header(b.entries(), b.len() as u32).to_vec();
        content.extend_from_slice(b.as_bytes());
        support::upload(&self.q, "a", self.agent, "accounts", &content)
            .await
            .0
    }

    pub async fn sync(&self, upload: i64, incremental: bool) {
        self.sync_of("hr", upload, incremental).await;
    }

    pub async fn sync_of(&self, connection: &str, upload: i64, incremental: bool) -> SyncReport {
        let Checked::Done(report) = self
            .q
            .synchronize(connection, upload, incremental, None, None)
            .await
            .unwrap()
        else {
            panic!("no threshold is set");
        };
        report
    }

    pub async fn provision_complete(&self) -> ProvisionReport {
        let Checked::Done(report) = self
            .q
            .provision(&self.rules, "accounts", None, true, false, false)
            .await
            .unwrap()
        else {
            panic!("no threshold is set");
        };
        report
    }

    pub async fn provision(&self) -> ProvisionReport {
        let Checked::Done(report) = self
            .q
            .provision(&self.rules, "accounts", None, false, false, false)
            .await
            .unwrap()
        else {
            panic!("no threshold is set");
        };
        report
    }

    /// A fulfil task takes the ready orders, page by page until an empty one, as the agent
    /// does; `answer` gives each one's outcome. Returns (kind, key) of each order it was given.
    pub async fn fulfil(
        &self,
        answer: impl Fn(&idgard_protocol::model::Order) -> OrderOutcome,
    ) -> Vec<(String, String)> {
        self.fulfil_orders(answer)
            .await
            .iter()
            .map(|o| (o.kind.name().to_owned(), o.key.clone()))
            .collect()
    }

    /// A fulfil task of the server's orders, claimed by the agent: its id and fence.
    pub async fn fulfil_task(&self) -> (i64, i64) {
        let id = self
            .q
            .queue
            .enqueue(
                "a",
                &[Self::spec(
                    Operation::Fulfill,
                    serde_json::json!({ "server_orders": true }),
                )],
            )
            .await
            .unwrap()[0];
        let fence = self.q.queue.claim(self.agent, 1).await.unwrap()[0].fence;
        self.q
            .queue
            .heartbeat(self.agent, id, fence, None)
            .await
            .unwrap();
        (id, fence)
    }

    /// The same, returning the orders whole.
    pub async fn fulfil_orders(
        &self,
        answer: impl Fn(&idgard_protocol::model::Order) -> OrderOutcome,
    ) -> Vec<idgard_protocol::model::Order> {
        let (id, fence) = self.fulfil_task().await;
        let mut all = Vec::new();
        loop {
            let orders = page(&self.q, self.agent, id, fence).await.orders;
            if orders.is_empty() {
                break;
            }
            let results: Vec<OrderResult> = orders
                .iter()
                .map(|o| OrderResult {
                    id: o.id.clone(),
                    outcome: answer(o),
                })
                .collect();
            self.q
                .order_results(self.agent, id, &OrderResults { fence, results })
                .await
                .unwrap();
            all.extend(orders);
        }
        all
    }

    /// Stores an export of the target: entries of any type with several values per attribute.
    pub async fn export_target(&self, entries: &[Entry<'_>]) -> i64 {
        let mut b = BatchBuffer::with_capacity(4096);
        for (entity_type, key, attrs) in entries {
            let at = b.begin_entry(EntryOp::Upsert, entity_type, key);
            for (name, values) in *attrs {
                b.attribute(name, values.iter().copied());
            }
            b.end_entry(at, attrs.len() as u32);
        }
        self.store(&b).await
    }

    pub fn pass_days(&self, days: i64) {
        self.clock.fetch_add(days * DAY, Ordering::SeqCst);
    }
}

pub fn done(_: &idgard_protocol::model::Order) -> OrderOutcome {
    OrderOutcome::Done
}
