//! Between idgard's flat attributes and SCIM resources (RFC 7643): which attribute is which SCIM
//! path, the JSON of a create, and the PATCH operations of an update. Pure: unit-tested here.

use idgard_sdk::{AttributeChange, AttributeValues, ChangeOp};
use serde_json::{Value, json};

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// A PATCH request's schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Where a flat attribute lives in a User.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// A top-level string.
    Top(&'static str),
    /// A sub-attribute of `name`.
    Name(&'static str),
    /// The work e-mail (`emails`, type `work`, primary).
    Email,
    /// The work phone (`phoneNumbers`, type `work`, primary).
    Phone,
    /// `active`, a boolean.
    Active,
    /// An attribute of the enterprise extension.
    Enterprise(&'static str),
}

/// The User attributes the connector maps, by their idgard name. The key is `userName`.
const USER_ATTRIBUTES: &[(&str, Path)] = &[
    ("externalId", Path::Top("externalId")),
    ("displayName", Path::Top("displayName")),
    ("givenName", Path::Name("givenName")),
    ("familyName", Path::Name("familyName")),
    ("email", Path::Email),
    ("phone", Path::Phone),
    ("title", Path::Top("title")),
    ("active", Path::Active),
    ("employeeNumber", Path::Enterprise("employeeNumber")),
    ("department", Path::Enterprise("department")),
    ("organization", Path::Enterprise("organization")),
    ("division", Path::Enterprise("division")),
    ("costCenter", Path::Enterprise("costCenter")),
];

/// The names of the mapped User attributes, for the schema and for messages.
pub fn user_attribute_names() -> impl Iterator<Item = &'static str> {
    USER_ATTRIBUTES.iter().map(|(n, _)| *n)
}

fn path_of(name: &str) -> Result<Path, String> {
    USER_ATTRIBUTES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            format!(
                "the SCIM connector maps no user attribute `{name}` (it maps: userName, {})",
                user_attribute_names().collect::<Vec<_>>().join(", ")
            )
        })
}

/// A User's flat attributes, as exported: `(name, value)`, `userName` first.
pub fn user_attributes(user: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(u) = user["userName"].as_str() {
        out.push(("userName", u.to_owned()));
    }
    for (name, path) in USER_ATTRIBUTES {
        let v = match path {
            Path::Top(a) => user[*a].clone(),
            Path::Name(a) => user["name"][*a].clone(),
            Path::Email => work(&user["emails"]),
            Path::Phone => work(&user["phoneNumbers"]),
            Path::Active => user["active"].clone(),
            Path::Enterprise(a) => user[ENTERPRISE][*a].clone(),
        };
        match v {
            Value::String(s) => out.push((name, s)),
            Value::Bool(b) => out.push((name, b.to_string())),
            Value::Number(n) => out.push((name, n.to_string())),
            _ => {}
        }
    }
    out
}

/// The work (or primary, or first) value of a multi-valued attribute.
fn work(values: &Value) -> Value {
    let list = values.as_array().map(Vec::as_slice).unwrap_or(&[]);
    shown(list).map_or(Value::Null, |i| list[i]["value"].clone())
}

/// Which value of a multi-valued attribute idgard shows: the work one, else the primary, else
/// the first.
fn shown(list: &[Value]) -> Option<usize> {
    list.iter()
        .position(|v| v["type"] == "work")
        .or_else(|| list.iter().position(|v| v["primary"] == true))
        .or((!list.is_empty()).then_some(0))
}

fn typed(path: Path, value: &str) -> Result<Value, String> {
    match path {
        Path::Active => match value {
            "true" | "TRUE" | "1" => Ok(Value::Bool(true)),
            "false" | "FALSE" | "0" => Ok(Value::Bool(false)),
            other => Err(format!("`active` must be true or false, not `{other}`")),
        },
        Path::Email | Path::Phone => {
            Ok(json!([{ "value": value, "type": "work", "primary": true }]))
        }
        _ => Ok(Value::String(value.to_owned())),
    }
}

/// The JSON of a User to create.
pub fn new_user(key: &str, attributes: &[AttributeValues]) -> Result<Value, String> {
    let mut user = json!({ "schemas": [USER], "userName": key });
    let mut enterprise = serde_json::Map::new();
    for a in attributes {
        let path = path_of(&a.name)?;
        let Some(first) = a.values.first() else {
            continue;
        };
        let v = typed(path, first)?;
        match path {
            Path::Top(n) => user[n] = v,
            Path::Name(n) => user["name"][n] = v,
            Path::Email => user["emails"] = v,
            Path::Phone => user["phoneNumbers"] = v,
            Path::Active => user["active"] = v,
            Path::Enterprise(n) => {
                enterprise.insert(n.to_owned(), v);
            }
        }
    }
    if !enterprise.is_empty() {
        user["schemas"] = json!([USER, ENTERPRISE]);
        user[ENTERPRISE] = Value::Object(enterprise);
    }
    Ok(user)
}

fn scim_path(path: Path) -> String {
    match path {
        Path::Top(n) => n.to_owned(),
        Path::Name(n) => format!("name.{n}"),
        Path::Email => "emails".into(),
        Path::Phone => "phoneNumbers".into(),
        Path::Active => "active".into(),
        Path::Enterprise(n) => format!("{ENTERPRISE}:{n}"),
    }
}

/// The PATCH operations of a User's changes. Every mapped attribute is single-valued: `add` and
/// `replace` set it to the first value, `remove` (or a change to no value) removes it. The work
/// e-mail and phone are changed in the user's list (`current`), which keeps its other values.
pub fn user_patch(changes: &[AttributeChange], current: &Value) -> Result<Vec<Value>, String> {
    changes
        .iter()
        .map(|c| {
            let path = path_of(&c.name)?;
            let p = scim_path(path);
            let value = match c.op {
                ChangeOp::Remove => None,
                _ => c.values.first(),
            };
            if matches!(path, Path::Email | Path::Phone) {
                let list = with_work(&current[p.as_str()], value.map(String::as_str));
                return Ok(json!({ "op": "replace", "path": p, "value": list }));
            }
            Ok(match value {
                None => json!({ "op": "remove", "path": p }),
                Some(v) => json!({ "op": "replace", "path": p, "value": typed(path, v)? }),
            })
        })
        .collect()
}

/// A multi-valued attribute's list with its work value replaced by `value` (or removed); the
/// others are kept, and lose `primary` when the new work value takes it.
fn with_work(list: &Value, value: Option<&str>) -> Value {
    let old = list.as_array().cloned().unwrap_or_default();
    let shown = shown(&old);
    let mut out: Vec<Value> = old
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != shown)
        .map(|(_, mut v)| {
            if value.is_some() {
                v["primary"] = Value::Bool(false);
            }
            v
        })
        .collect();
    if let Some(v) = value {
        out.insert(0, json!({ "value": v, "type": "work", "primary": true }));
    }
    Value::Array(out)
}

/// The PATCH body of operations.
pub fn patch(operations: Vec<Value>) -> Value {
    json!({ "schemas": [PATCH_OP], "Operations": operations })
}

/// The JSON of a Group to create, its members given by their ids.
pub fn new_group(key: &str, members: &[String]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({ "value": id })).collect();
    json!({ "schemas": [GROUP], "displayName": key, "members": members })
}

/// The PATCH operations of a Group's `member` change, its values given as ids.
pub fn member_patch(op: ChangeOp, ids: &[String]) -> Vec<Value> {
    let values: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
    match op {
        ChangeOp::Add if ids.is_empty() => vec![],
        ChangeOp::Add => vec![json!({ "op": "add", "path": "members", "value": values })],
        ChangeOp::Replace => vec![json!({ "op": "replace", "path": "members", "value": values })],
        ChangeOp::Remove => ids
            .iter()
            .map(
                |id| json!({ "op": "remove", "path": format!("members[value eq {}]", quoted(id)) }),
            )
            .collect(),
    }
}

/// A string as a SCIM filter's literal (RFC 7644, 3.4.2.2: a JSON string).
pub fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str, v: &[&str]) -> AttributeValues {
        AttributeValues {
            name: name.into(),
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_user_round_trips_through_its_json() {
        let attrs = [
            values("givenName", &["Ada"]),
            values("familyName", &["O'Brien"]),
            values("email", &["ada@example.test"]),
            values("active", &["false"]),
            values("employeeNumber", &["E1"]),
        ];
        let user = new_user("ada", &attrs).unwrap();
        assert_eq!(user["schemas"], json!([USER, ENTERPRISE]));
        assert_eq!(user["name"]["familyName"], "O'Brien");
        assert_eq!(user["active"], false);
        let back = user_attributes(&user);
        assert_eq!(back[0], ("userName", "ada".to_owned()));
        assert!(back.contains(&("email", "ada@example.test".to_owned())));
        assert!(back.contains(&("employeeNumber", "E1".to_owned())));
        assert!(back.contains(&("active", "false".to_owned())));
        assert!(
            new_user("ada", &[values("shoeSize", &["9"])])
                .unwrap_err()
                .contains("shoeSize")
        );
        assert!(new_user("ada", &[values("active", &["maybe"])]).is_err());
    }

    #[test]
    fn the_work_email_changes_and_the_others_stay() {
        let user = json!({"emails": [
            {"value": "home@x", "type": "home"},
            {"value": "old@x", "type": "work", "primary": true}
        ]});
        let change = |op, v: &[&str]| AttributeChange {
            name: "email".into(),
            op,
            values: v.iter().map(|s| s.to_string()).collect(),
        };
        let ops = user_patch(&[change(ChangeOp::Replace, &["new@x"])], &user).unwrap();
        assert_eq!(
            ops[0]["value"],
            json!([
                {"value": "new@x", "type": "work", "primary": true},
                {"value": "home@x", "type": "home", "primary": false}
            ])
        );
        let ops = user_patch(&[change(ChangeOp::Remove, &[])], &user).unwrap();
        assert_eq!(
            ops[0]["value"],
            json!([{"value": "home@x", "type": "home"}])
        );
        // No work e-mail: the primary one is the one replaced.
        let user = json!({"emails": [{"value": "a@x", "primary": true}, {"value": "b@x"}]});
        let ops = user_patch(&[change(ChangeOp::Replace, &["c@x"])], &user).unwrap();
        assert_eq!(ops[0]["value"][0]["value"], "c@x");
        assert_eq!(ops[0]["value"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn changes_become_patch_operations() {
        let ops = user_patch(
            &[
                AttributeChange {
                    name: "title".into(),
                    op: ChangeOp::Replace,
                    values: vec!["CTO".into()],
                },
                AttributeChange {
                    name: "phone".into(),
                    op: ChangeOp::Remove,
                    values: vec![],
                },
                AttributeChange {
                    name: "department".into(),
                    op: ChangeOp::Add,
                    values: vec!["R&D".into()],
                },
            ],
            &json!({}),
        )
        .unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "replace", "path": "title", "value": "CTO"})
        );
        assert_eq!(
            ops[1],
            json!({"op": "replace", "path": "phoneNumbers", "value": []})
        );
        assert_eq!(ops[2]["path"], format!("{ENTERPRISE}:department"));
        let ids = ["a\"b".to_owned()];
        assert_eq!(
            member_patch(ChangeOp::Remove, &ids)[0]["path"],
            "members[value eq \"a\\\"b\"]"
        );
        assert!(member_patch(ChangeOp::Add, &[]).is_empty());
    }

    #[test]
    fn the_work_value_is_preferred() {
        let user = json!({"userName": "u", "emails": [
            {"value": "home@x", "type": "home", "primary": true},
            {"value": "work@x", "type": "work"}
        ]});
        assert!(user_attributes(&user).contains(&("email", "work@x".to_owned())));
    }
}
