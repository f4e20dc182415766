//! Evaluating expressions with one identity, account or group bound at a time.

use super::Expr;
use anyhow::{Result, anyhow, bail};
use cel::{Context, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Attributes of an entry: name → values.
pub type Attrs = BTreeMap<String, Vec<String>>;

/// Evaluates expressions with one identity (or account) bound at a time.
pub struct Evaluator<'r> {
    pub(super) root: Context<'r, 'r>,
}

/// The values an expression gave: none, one or several strings.
pub type Values = Vec<String>;

impl Evaluator<'_> {
    fn bind<'a>(&'a self, name: &str, attrs: &Attrs, with_values: bool) -> Context<'a, 'a> {
        let mut ctx = self.root.new_inner_scope();
        let first: HashMap<String, Value> = attrs
            .iter()
            .filter_map(|(k, v)| v.first().map(|f| (k.clone(), Value::from(f.clone()))))
            .collect();
        ctx.add_variable_from_value(name, Value::from(first));
        if with_values {
            let all: HashMap<String, Value> = attrs
                .iter()
                .map(|(k, v)| {
                    let list: Vec<Value> = v.iter().map(|s| Value::from(s.clone())).collect();
                    (k.clone(), Value::List(Arc::new(list)))
                })
                .collect();
            ctx.add_variable_from_value("values", Value::from(all));
        }
        ctx
    }

    /// A bound identity, for several expressions.
    pub fn identity<'a>(&'a self, key: &str, attrs: &Attrs) -> Bound<'a> {
        let mut with_key = attrs.clone();
        with_key
            .entry("key".to_owned())
            .or_insert_with(|| vec![key.to_owned()]);
        Bound {
            ctx: self.bind("identity", &with_key, true),
        }
    }

    /// A bound group name (`group.name`), for the expressions that manage and create groups.
    pub fn group<'a>(&'a self, name: &str) -> Bound<'a> {
        let attrs = Attrs::from([("name".to_owned(), vec![name.to_owned()])]);
        Bound {
            ctx: self.bind("group", &attrs, false),
        }
    }

    /// A bound account.
    pub fn account<'a>(&'a self, attrs: &Attrs) -> Bound<'a> {
        Bound {
            ctx: self.bind("account", attrs, false),
        }
    }
}

/// One entry bound to the expression variables.
pub struct Bound<'a> {
    ctx: Context<'a, 'a>,
}

impl Bound<'_> {
    fn eval(&self, e: &Expr) -> Result<Value> {
        e.program
            .execute(&self.ctx)
            .map_err(|err| anyhow!("line {}: `{}`: {err}", e.line, e.text))
    }

    /// A filter's answer.
    pub fn test(&self, e: &Expr) -> Result<bool> {
        match self.eval(e)? {
            Value::Bool(b) => Ok(b),
            other => bail!(
                "line {}: `{}` gives {other:?}, not true or false",
                e.line,
                e.text
            ),
        }
    }

    /// Values: a string is one value, an empty string or null none, a list several.
    pub fn values(&self, e: &Expr) -> Result<Values> {
        fn one(v: &Value, e: &Expr) -> Result<Option<String>> {
            Ok(match v {
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.to_string()),
                Value::Int(i) => Some(i.to_string()),
                Value::UInt(i) => Some(i.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null => None,
                other => bail!("line {}: `{}` gives {other:?}, not text", e.line, e.text),
            })
        }
        match self.eval(e)? {
            Value::List(l) => {
                let mut out = Vec::with_capacity(l.len());
                for v in l.iter() {
                    out.extend(one(v, e)?);
                }
                Ok(out)
            }
            v => Ok(one(&v, e)?.into_iter().collect()),
        }
    }

    /// One value (a key): it must not be empty.
    pub fn text(&self, e: &Expr) -> Result<String> {
        let mut v = self.values(e)?;
        match v.len() {
            1 => Ok(v.remove(0)),
            0 => bail!("line {}: `{}` gives no value", e.line, e.text),
            n => bail!("line {}: `{}` gives {n} values, not one", e.line, e.text),
        }
    }
}
