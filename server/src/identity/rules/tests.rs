//! The rules file: parsing, checks with line numbers, schedules.
use super::*;

const GOOD: &str = r#"
version = 1

[identities]
connection = "hr"

[lookups.sites]
PAR = "Paris"

[[targets]]
connection = "accounts"
filter = 'identity.status == "active"'
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
enabled_attribute = "enabled"
correlation = { identity = "key", account = "account.employee_id" }
leave = { disable = true, delete_after_days = 30 }

[targets.attributes]
employee_id = "identity.key"
site = 'identity.site in lookups.sites ? lookups.sites[identity.site] : "elsewhere"'
groups = "values.groups"

[thresholds.accounts]
deletes = 10
updates_percent = 20.0

[[jobs]]
name = "daily"
agent = "paris"
connections = ["hr", "accounts"]
schedule = "30 2 * * *"
timezone = "Europe/Paris"
"#;

fn attrs(pairs: &[(&str, &[&str])]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn a_good_file_computes_accounts() {
    let r = Rules::parse(GOOD, "rules.toml").unwrap();
    let t = r.target("accounts").unwrap();
    let ev = r.evaluator();
    let id = attrs(&[
        ("first_name", &["Zoé"]),
        ("last_name", &["Martin"]),
        ("status", &["active"]),
        ("site", &["PAR"]),
        ("groups", &["a", "b"]),
    ]);
    let b = ev.identity("E1", &id);
    assert!(b.test(t.filter.as_ref().unwrap()).unwrap());
    assert_eq!(b.text(&t.key).unwrap(), "zoé.martin");
    let get = |n: &str| &t.attributes.iter().find(|(a, _)| a == n).unwrap().1;
    assert_eq!(b.values(get("employee_id")).unwrap(), ["E1"]);
    assert_eq!(b.values(get("site")).unwrap(), ["Paris"]);
    assert_eq!(b.values(get("groups")).unwrap(), ["a", "b"]);
    let acc = ev.account(&attrs(&[("employee_id", &["E1"])]));
    assert_eq!(acc.text(&t.correlation.account).unwrap(), "E1");
    let changes = Changes {
        inserts: 0,
        updates: 30,
        deletes: 0,
    };
    let th = r.thresholds("accounts");
    assert!(th.exceeded(&changes, 100).unwrap().contains("30.0%"));
    assert!(th.exceeded(&changes, 1000).is_none());
    let job = r.job("daily").unwrap();
    // 2026-01-10 00:00 UTC → 02:30 Paris (UTC+1) = 01:30 UTC.
    let next = job
        .schedule
        .as_ref()
        .unwrap()
        .next_after(1_768_003_200_000)
        .unwrap();
    assert_eq!(next, 1_768_003_200_000 + 90 * 60 * 1000);
}

#[test]
fn errors_name_the_line() {
    let bad_expr = GOOD.replace(
        r#"filter = 'identity.status == "active"'"#,
        r#"filter = 'identity.status == '"#,
    );
    let e = Rules::parse(&bad_expr, "r.toml").err().unwrap().to_string();
    assert!(e.starts_with("r.toml:12:"), "{e}");
    let unknown_var = GOOD.replace("account.employee_id", "identity.employee_id");
    let e = Rules::parse(&unknown_var, "r.toml")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("r.toml:15:") && e.contains("`identity`"), "{e}");
    let unknown_key = GOOD.replace("enabled_attribute", "enabled_attr");
    let e = Rules::parse(&unknown_key, "r.toml")
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("r.toml:14:"), "{e}");
    let bad_cron = GOOD.replace("30 2 * * *", "61 2 * * *");
    let e = Rules::parse(&bad_cron, "r.toml").err().unwrap().to_string();
    assert!(e.starts_with("r.toml:31:"), "{e}");
    let bad_tz = GOOD.replace("Europe/Paris", "Europe/Atlantis");
    let e = Rules::parse(&bad_tz, "r.toml").err().unwrap().to_string();
    assert!(e.starts_with("r.toml:32:"), "{e}");
    let version = GOOD.replace("version = 1", "version = 2");
    let e = Rules::parse(&version, "r.toml").err().unwrap().to_string();
    assert!(e.starts_with("r.toml:2:"), "{e}");
    let key_computed = GOOD.replace(
        "enabled_attribute = \"enabled\"",
        "enabled_attribute = \"enabled\"\nkey_attribute = \"site\"",
    );
    let e = Rules::parse(&key_computed, "r.toml")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`site` is the key attribute"), "{e}");
    let key_enabled = GOOD.replace(
        "enabled_attribute = \"enabled\"",
        "enabled_attribute = \"enabled\"\nkey_attribute = \"enabled\"",
    );
    let e = Rules::parse(&key_enabled, "r.toml")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("name the same attribute"), "{e}");
}

#[test]
fn a_wrong_type_at_run_time_is_an_error_not_a_panic() {
    let r = Rules::parse(
        &GOOD.replace(r#"'identity.status == "active"'"#, "'identity.status'"),
        "r",
    )
    .unwrap();
    let t = r.target("accounts").unwrap();
    let ev = r.evaluator();
    let b = ev.identity("E1", &attrs(&[("status", &["active"])]));
    assert!(b.test(t.filter.as_ref().unwrap()).is_err());
    // A missing attribute is an error the run reports for that identity.
    assert!(b.text(&t.key).is_err());
}
