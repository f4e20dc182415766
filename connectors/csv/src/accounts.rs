//! Fulfil: keep an accounts CSV file in line with provisioning orders. Every order is safe to
//! repeat: a create of an existing account converges on the asked values, a delete of a missing
//! one is done. A batch of creates of new accounts is appended to the file (its keys are
//! known from `keys.rs`); any other batch reads the file for the rows it touches, applies
//! itself to them, and writes the file again row by row, replacing it atomically: memory
//! follows the batch, not the file.

use crate::Config;
use crate::export::resolve;
use crate::keys;
use idgard_sdk::{AttributeChange, ChangeOp, Error, Order, OrderKind, OrderResult};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The column that says whether an account is enabled.
pub const ENABLED: &str = "enabled";
/// The entity type this connector maintains.
pub const ACCOUNT: &str = "account";

struct Table {
    headers: Vec<String>,
    rows: Vec<Option<Vec<String>>>,
    index: HashMap<String, usize>,
    /// Keys deleted by the batch (their rows are not written again).
    deleted: HashSet<String>,
    key: usize,
    separator: String,
}

/// A reader of the accounts file, if it exists.
fn reader(path: &Path, config: &Config) -> Result<Option<csv::Reader<std::fs::File>>, Error> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(idgard_sdk::fs::io_error(path, "open", e)),
    };
    Ok(Some(
        csv::ReaderBuilder::new()
            .delimiter(config.delimiter_byte()?)
            .from_reader(f),
    ))
}

impl Table {
    /// The file's header, and of its rows only those whose key is `wanted`: what a batch
    /// touches, not the whole file.
    fn load(path: &Path, config: &Config, wanted: &HashSet<&str>) -> Result<Self, Error> {
        let mut t = Table {
            headers: vec![config.accounts_key.clone(), ENABLED.into()],
            rows: Vec::new(),
            index: HashMap::new(),
            deleted: HashSet::new(),
            key: 0,
            separator: config.multi_value_separator.clone(),
        };
        let Some(mut r) = reader(path, config)? else {
            return Ok(t);
        };
        let bad = |e: csv::Error| Error::invalid_data(format!("{}: {e}", path.display()));
        t.headers = r
            .headers()
            .map_err(bad)?
            .iter()
            .map(str::to_owned)
            .collect();
        t.key = t
            .headers
            .iter()
            .position(|h| *h == config.accounts_key)
            .ok_or_else(|| {
                Error::invalid_data(format!(
                    "{}: no key column `{}`",
                    path.display(),
                    config.accounts_key
                ))
            })?;
        let mut record = csv::StringRecord::new();
        while r.read_record(&mut record).map_err(bad)? {
            let key = record.get(t.key).unwrap_or_default();
            if wanted.contains(key) && !t.index.contains_key(key) {
                t.index.insert(key.to_owned(), t.rows.len());
                t.rows
                    .push(Some(record.iter().map(str::to_owned).collect()));
            }
        }
        Ok(t)
    }

    /// Writes the file again, row by row: each row the batch touched as the table holds it
    /// (or not at all, if deleted), every other row as it was, then the new rows. Replaces the
    /// file atomically and the key index with it.
    fn write_merged(&self, path: &Path, config: &Config) -> Result<(), Error> {
        let delimiter = config.delimiter_byte()?;
        let tmp = idgard_sdk::fs::temporary_beside(path);
        let io = |action: &'static str| {
            move |e: std::io::Error| idgard_sdk::fs::io_error(path, action, e)
        };
        let csv_io = |e: csv::Error| Error::internal(format!("{}: {e}", path.display()));
        let file = std::fs::File::create(&tmp).map_err(io("create"))?;
        let mut w = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
        w.write_record(&self.headers).map_err(csv_io)?;
        let mut keys = keys::Records::default();
        let mut written: HashSet<usize> = HashSet::new();
        if let Some(mut r) = reader(path, config)? {
            let bad = |e: csv::Error| Error::invalid_data(format!("{}: {e}", path.display()));
            r.headers().map_err(bad)?;
            let mut record = csv::StringRecord::new();
            while r.read_record(&mut record).map_err(bad)? {
                let key = record.get(self.key).unwrap_or_default();
                match self.index.get(key) {
                    Some(&at) => {
                        if written.insert(at)
                            && let Some(row) = &self.rows[at]
                        {
                            keys.push(&row[self.key]);
                            w.write_record(row).map_err(csv_io)?;
                        }
                    }
                    None if self.was_deleted(key) => {}
                    None => {
                        keys.push(key);
                        let mut row: Vec<&str> = record.iter().collect();
                        row.resize(self.headers.len(), "");
                        w.write_record(&row).map_err(csv_io)?;
                    }
                }
            }
        }
        for (at, row) in self.rows.iter().enumerate() {
            if let Some(row) = row
                && !written.contains(&at)
            {
                keys.push(&row[self.key]);
                w.write_record(row).map_err(csv_io)?;
            }
        }
        let out = w.into_inner().map_err(|e| Error::internal(e.to_string()))?;
        let file = out.into_inner().map_err(|e| io("write")(e.into_error()))?;
        file.sync_all().map_err(io("write"))?;
        std::fs::rename(&tmp, path).map_err(io("replace"))?;
        keys.save(path)
    }

    /// Whether the batch deleted the account `key` (its row was loaded and is gone).
    fn was_deleted(&self, key: &str) -> bool {
        self.deleted.contains(key)
    }

    fn column(&mut self, name: &str) -> usize {
        if let Some(i) = self.headers.iter().position(|h| h == name) {
            return i;
        }
        self.headers.push(name.to_owned());
        for row in self.rows.iter_mut().flatten() {
            row.push(String::new());
        }
        self.headers.len() - 1
    }

    fn row(&mut self, key: &str) -> Option<usize> {
        self.index
            .get(key)
            .copied()
            .filter(|&i| self.rows[i].is_some())
    }

    fn set(&mut self, at: usize, name: &str, values: &[String]) {
        let col = self.column(name);
        let joined = values.join(&self.separator);
        self.rows[at].as_mut().expect("live row")[col] = joined;
    }

    fn values(&self, at: usize, col: usize) -> Vec<String> {
        let cell = &self.rows[at].as_ref().expect("live row")[col];
        if cell.is_empty() {
            Vec::new()
        } else {
            cell.split(self.separator.as_str())
                .map(str::to_owned)
                .collect()
        }
    }

    fn apply(&mut self, order: &Order) -> Result<(), String> {
        if order.entity_type != ACCOUNT {
            return Err(format!(
                "this connector maintains `{ACCOUNT}` entries, not `{}`",
                order.entity_type
            ));
        }
        let key = order.key.as_str();
        if key.is_empty() {
            return Err("the order has an empty key".into());
        }
        let missing = || format!("no account `{key}`");
        match &order.kind {
            OrderKind::Create(attributes) => {
                let at = match self.row(key) {
                    Some(at) => at,
                    None => {
                        // The column first: a file without one gains it, rows and header alike,
                        // before the new row is sized.
                        let enabled = self.column(ENABLED);
                        let at = self.rows.len();
                        let mut row = vec![String::new(); self.headers.len()];
                        row[self.key] = key.to_owned();
                        row[enabled] = "true".into();
                        self.rows.push(Some(row));
                        self.index.insert(key.to_owned(), at);
                        at
                    }
                };
                for a in attributes {
                    if a.name == self.headers[self.key] {
                        continue;
                    }
                    self.set(at, &a.name, &a.values);
                }
                Ok(())
            }
            OrderKind::Update(changes) => {
                let at = self.row(key).ok_or_else(missing)?;
                for c in changes {
                    self.change(at, c)?;
                }
                Ok(())
            }
            OrderKind::Delete => {
                if let Some(at) = self.row(key) {
                    self.rows[at] = None;
                    self.index.remove(key);
                }
                self.deleted.insert(key.to_owned());
                Ok(())
            }
            OrderKind::Enable | OrderKind::Disable => {
                let at = self.row(key).ok_or_else(missing)?;
                let value = if matches!(order.kind, OrderKind::Enable) {
                    "true"
                } else {
                    "false"
                };
                self.set(at, ENABLED, &[value.to_owned()]);
                Ok(())
            }
            OrderKind::SetPassword(_) => {
                Err("an accounts file holds no passwords; set-password is not supported".into())
            }
        }
    }

    fn change(&mut self, at: usize, c: &AttributeChange) -> Result<(), String> {
        if c.name == self.headers[self.key] {
            return Err(format!(
                "the key column `{}` cannot be changed; delete and create instead",
                c.name
            ));
        }
        let col = self.column(&c.name);
        let mut values = self.values(at, col);
        match c.op {
            ChangeOp::Replace => values = c.values.clone(),
            ChangeOp::Add => {
                for v in &c.values {
                    if !values.contains(v) {
                        values.push(v.clone());
                    }
                }
            }
            ChangeOp::Remove => values.retain(|v| !c.values.contains(v)),
        }
        if values.iter().any(|v| v.contains(self.separator.as_str())) {
            return Err(format!(
                "a value of `{}` contains the separator `{}`",
                c.name, self.separator
            ));
        }
        self.set(at, &c.name, &values);
        Ok(())
    }
}

pub fn fulfill(config: &Config, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
    let path = resolve(
        &idgard_sdk::fs::granted("accounts")?,
        &config.accounts_file,
        "accounts_file",
    )?;
    if let Some(results) = append_creates(config, &path, &orders)? {
        return Ok(results);
    }
    let wanted: HashSet<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    let mut table = Table::load(&path, config, &wanted)?;
    let mut results = Vec::with_capacity(orders.len());
    for order in &orders {
        // An order is applied whole or not at all: its changes are tried on a copy of its row.
        let before = table
            .row(&order.key)
            .map(|at| (at, table.rows[at].clone(), table.headers.len()));
        match table.apply(order) {
            Ok(()) => results.push(OrderResult::done(&order.id)),
            Err(message) => {
                if let Some((at, row, _)) = before {
                    let width = table.headers.len();
                    table.rows[at] = row.map(|mut r| {
                        r.resize(width, String::new());
                        r
                    });
                }
                idgard_sdk::log::warn(&format!("order {}: {message}", order.id));
                results.push(OrderResult::failed(&order.id, message));
            }
        }
    }
    table.write_merged(&path, config)?;
    idgard_sdk::log::info(&format!(
        "{} orders applied to {}",
        orders.len(),
        path.display()
    ));
    Ok(results)
}

/// Appends a batch that only creates new accounts with columns the file has; `None` when the
/// batch is anything else (or the key index does not describe the file), for the whole-table
/// path.
fn append_creates(
    config: &Config,
    path: &Path,
    orders: &[Order],
) -> Result<Option<Vec<OrderResult>>, Error> {
    let creates = orders.iter().all(|o| {
        o.entity_type == ACCOUNT && !o.key.is_empty() && matches!(o.kind, OrderKind::Create(_))
    });
    if orders.is_empty() || !creates {
        return Ok(None);
    }
    let wanted: HashSet<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    if wanted.len() != orders.len() || keys::any_known(path, &wanted) != Some(false) {
        return Ok(None);
    }
    let delimiter = config.delimiter_byte()?;
    let Some(headers) = headers_of(path, delimiter)? else {
        return Ok(None);
    };
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(key_col), Some(enabled_col)) = (column(&config.accounts_key), column(ENABLED)) else {
        return Ok(None);
    };
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    for o in orders {
        let OrderKind::Create(attributes) = &o.kind else {
            return Ok(None);
        };
        let mut row = vec![String::new(); headers.len()];
        row[key_col] = o.key.clone();
        row[enabled_col] = "true".into();
        for a in attributes.iter().filter(|a| a.name != config.accounts_key) {
            let Some(col) = column(&a.name) else {
                return Ok(None);
            };
            row[col] = a.values.join(&config.multi_value_separator);
        }
        w.write_record(&row)
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::internal(e.to_string()))?;
    let io = |action: &'static str| move |e| idgard_sdk::fs::io_error(path, action, e);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io("open"))?;
    use std::io::Write as _;
    f.write_all(&bytes).map_err(io("write"))?;
    f.sync_data().map_err(io("write"))?;
    keys::append(path, orders.iter().map(|o| o.key.as_str()))?;
    idgard_sdk::log::info(&format!(
        "{} accounts appended to {}",
        orders.len(),
        path.display()
    ));
    Ok(Some(
        orders.iter().map(|o| OrderResult::done(&o.id)).collect(),
    ))
}

/// The header line of the accounts file, if it exists and ends with a line break.
fn headers_of(path: &Path, delimiter: u8) -> Result<Option<Vec<String>>, Error> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(idgard_sdk::fs::io_error(path, "open", e)),
    };
    let mut last = [0u8; 1];
    let ends_with_newline =
        f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] == b'\n';
    if !ends_with_newline {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(0))
        .map_err(|e| idgard_sdk::fs::io_error(path, "read", e))?;
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(f);
    let headers = r
        .headers()
        .map_err(|e| Error::invalid_data(format!("{}: {e}", path.display())))?;
    Ok(Some(headers.iter().map(str::to_owned).collect()))
}
