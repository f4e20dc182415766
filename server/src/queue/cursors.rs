//! Where each connection's incremental export starts. An export's cursor is kept only once the
//! server has synchronized that export, so an export nobody synchronized (one run by hand, one
//! whose job was cancelled, a dry run) moves nothing: the next incremental export starts from
//! what the repository holds, and no change is skipped.

use crate::db::Tx;
use crate::error::Result;
use crate::queue::Queue;
use idgard_protocol::ExportResult;
use idgard_protocol::model::Cursor;
use sqlx::Row;

impl Queue {
    /// Keeps the cursor of the export that made `upload_id`, once it is synchronized (in the
    /// synchronize's transaction). An older upload synchronized late does not move it back.
    pub(crate) async fn keep_cursor(
        tx: &mut Tx,
        connection: &str,
        upload_id: i64,
        now: i64,
    ) -> Result<()> {
        let result = sqlx::query(
            "SELECT t.result FROM uploads u JOIN tasks t ON t.id = u.task_id WHERE u.id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(text) = result
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
        else {
            return Ok(());
        };
        let cursor = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .and_then(|v| ExportResult::parse(&v))
            .and_then(|r| r.cursor);
        let Some(cursor) = cursor else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO cursors (connection, cursor, upload_id, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connection) DO UPDATE SET cursor = excluded.cursor, \
             upload_id = excluded.upload_id, updated_ms = excluded.updated_ms \
             WHERE cursors.upload_id < excluded.upload_id",
        )
        .bind(connection)
        .bind(serde_json::to_string(&cursor).map_err(anyhow::Error::from)?)
        .bind(upload_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The cursor an incremental export of `connection` starts from, if an export of it was
    /// ever synchronized.
    pub async fn cursor(&self, connection: &str) -> Result<Option<Cursor>> {
        let row = sqlx::query("SELECT cursor FROM cursors WHERE connection = $1")
            .bind(connection)
            .fetch_optional(&self.db.read)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(
                serde_json::from_str(&r.try_get::<String, _>(0)?)
                    .map_err(|e| anyhow::anyhow!("stored cursor of `{connection}`: {e}"))?,
            )),
        }
    }

    /// An incremental export's arguments with the cursor it starts from (unchanged when it has
    /// one already, or is not an incremental export).
    pub(crate) async fn with_cursor(
        &self,
        connection: &str,
        mut args: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let wanted = args.get("incremental").and_then(|v| v.as_bool()) == Some(true)
            && args.get("cursor").is_none_or(|c| c.is_null());
        if wanted
            && let Some(cursor) = self.cursor(connection).await?
            && let Some(obj) = args.as_object_mut()
        {
            obj.insert(
                "cursor".into(),
                serde_json::to_value(cursor).map_err(anyhow::Error::from)?,
            );
        }
        Ok(args)
    }
}
