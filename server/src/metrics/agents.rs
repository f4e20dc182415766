//! The figures agents send with their polls (their connectors' runs): checked, kept in the
//! agent's row (the latest replace the earlier), and read back for `/metrics`.

use crate::error::{Error, Result};
use idgard_protocol::{AgentFigures, FIGURES_MAX};
use sqlx::{AnyPool, Row};

/// Longest connection name or limit name accepted in figures.
const NAME_MAX: usize = 128;

/// Refuses figures no agent of ours sends: too many lines, names too long, times that are not
/// a finite count of seconds.
pub fn check(figures: &AgentFigures) -> Result<()> {
    if figures.connectors.len() > FIGURES_MAX {
        return Err(Error::invalid(format!(
            "figures: {} lines, more than {FIGURES_MAX}",
            figures.connectors.len()
        )));
    }
    for c in &figures.connectors {
        let names_fit = c.connection.len() <= NAME_MAX
            && c.limit_hits.len() <= 16
            && c.limit_hits.keys().all(|k| k.len() <= NAME_MAX);
        if !names_fit || !c.seconds.is_finite() || c.seconds < 0.0 {
            return Err(Error::invalid(format!(
                "figures of `{}`: names too long, too many limits, or a time that is not a \
                 count of seconds",
                c.connection.chars().take(NAME_MAX).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Keeps `figures` as agent `agent`'s latest.
pub async fn record(db: &AnyPool, agent: i64, figures: &AgentFigures) -> Result<()> {
    check(figures)?;
    let text = serde_json::to_string(figures).map_err(anyhow::Error::from)?;
    sqlx::query("UPDATE agents SET figures = $1 WHERE id = $2")
        .bind(text)
        .bind(agent)
        .execute(db)
        .await?;
    Ok(())
}

/// Every agent's latest figures, by agent name.
pub async fn read(db: &AnyPool) -> Result<Vec<(String, AgentFigures)>> {
    let rows = sqlx::query(
        "SELECT name, figures FROM agents WHERE figures IS NOT NULL AND removed_ms IS NULL \
         ORDER BY name",
    )
    .fetch_all(db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0)?;
        let text: String = r.try_get(1)?;
        match serde_json::from_str(&text) {
            Ok(f) => out.push((name, f)),
            Err(e) => tracing::warn!(agent = %name, "stored figures unreadable: {e}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idgard_protocol::{ConnectorFigures, Operation};

    fn line(connection: &str, seconds: f64) -> ConnectorFigures {
        ConnectorFigures {
            connection: connection.into(),
            operation: Operation::Export,
            runs: 1,
            failures: 0,
            seconds,
            limit_hits: Default::default(),
        }
    }

    #[test]
    fn figures_out_of_bounds_are_refused() {
        let ok = AgentFigures {
            connectors: vec![line("hr", 1.5)],
        };
        check(&ok).unwrap();
        for bad in [
            vec![line("hr", f64::NAN)],
            vec![line("hr", -1.0)],
            vec![line(&"x".repeat(200), 1.0)],
            (0..=FIGURES_MAX).map(|_| line("hr", 1.0)).collect(),
        ] {
            assert!(check(&AgentFigures { connectors: bad }).is_err());
        }
    }
}
