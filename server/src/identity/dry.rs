//! Dry runs: what a run would change, with nothing kept. A dry run's synchronize counts and
//! rolls back; its provisioning applies the job's exports and computes the orders inside one
//! transaction that is rolled back too, then keeps only those orders, as `dry` (never sent).
//! The repository, the links, the provisioning marks and the export cursors stay as they were.

use super::Engine;
use super::provision::ProvisionReport;
use super::repo::Checked;
use super::rules::Rules;
use crate::db::{Col, Tx, multi_row_values};
use crate::error::{Error, Result};
use sqlx::Row;

/// The columns of an order row, copied out of the rolled-back transaction.
const ORDER_COLUMNS: &str = "id, job_id, connection, entity_type, key, identity, kind, body, \
     state, attempts, message, next_ms, created_ms, updated_ms";

/// One order row, as the dry run computed it.
type OrderRow = (
    String,
    Option<i64>,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    i64,
);

impl Engine {
    /// The orders a run would make for `target`, as if the job's exports had been synchronized;
    /// only those orders are kept.
    pub async fn provision_dry(
        &self,
        rules: &Rules,
        target: &str,
        job: Option<i64>,
        complete: bool,
    ) -> Result<ProvisionReport> {
        let now = self.queue.now();
        let mut tx = self.queue.begin_large().await?;
        if let Some(job) = job {
            for (connection, upload, incremental) in self.job_exports(&mut tx, job).await? {
                self.synchronize_in(&mut tx, &connection, upload, incremental, Some(job), now)
                    .await?;
            }
        }
        let report = match self
            .provision_in(&mut tx, rules, target, job, complete, true, true)
            .await?
        {
            Checked::Done(r) | Checked::Blocked { report: r, .. } => r,
        };
        let orders = dry_orders(&mut tx, target, job, now).await?;
        self.queue.end_large(tx, false).await?;
        let mut tx = self.queue.begin().await?;
        keep(&mut tx, &orders).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// The uploads of a job's finished exports: connection, upload, incremental.
    async fn job_exports(&self, tx: &mut Tx, job: i64) -> Result<Vec<(String, i64, bool)>> {
        let rows = sqlx::query(
            "SELECT connection, upload_id, args FROM tasks WHERE job_id = $1 \
             AND operation = 'export' AND state = 'succeeded' ORDER BY id",
        )
        .bind(job)
        .fetch_all(&mut **tx)
        .await?;
        let mut out: Vec<(String, i64, bool)> = Vec::new();
        for r in rows {
            let connection: String = r.try_get(0)?;
            let upload = r.try_get::<Option<i64>, _>(1)?.ok_or_else(|| {
                Error::invalid(format!("the export of `{connection}` names no upload"))
            })?;
            let args = idgard_protocol::TaskArgs::parse_stored(&r.try_get::<String, _>(2)?);
            // A connection exported twice (a retried step): its latest export.
            out.retain(|(c, _, _)| *c != connection);
            out.push((connection, upload, args.incremental));
        }
        Ok(out)
    }
}

/// The dry orders computed in `tx` (created since `since`).
async fn dry_orders(
    tx: &mut Tx,
    target: &str,
    job: Option<i64>,
    since: i64,
) -> Result<Vec<OrderRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE connection = $1 AND state = 'dry' \
         AND created_ms >= $2 AND (($3 IS NULL AND job_id IS NULL) OR job_id = $3)"
    ))
    .bind(target)
    .bind(since)
    .bind(job)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
                r.try_get(9)?,
                r.try_get(10)?,
                r.try_get(11)?,
                r.try_get(12)?,
                r.try_get(13)?,
            ))
        })
        .collect()
}

async fn keep(tx: &mut Tx, orders: &[OrderRow]) -> Result<()> {
    for chunk in orders.chunks(50) {
        let cols: Vec<Col> = (0..14).map(Col::Row).collect();
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {}",
            multi_row_values(chunk.len(), 0, 14, &cols)
        );
        let mut q = sqlx::query(&sql);
        for o in chunk {
            q = q
                .bind(o.0.clone())
                .bind(o.1)
                .bind(o.2.clone())
                .bind(o.3.clone())
                .bind(o.4.clone())
                .bind(o.5.clone())
                .bind(o.6.clone())
                .bind(o.7.clone())
                .bind(o.8.clone())
                .bind(o.9)
                .bind(o.10.clone())
                .bind(o.11)
                .bind(o.12)
                .bind(o.13);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
