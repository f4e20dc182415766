//! The LDAP connector's `active-directory` dialect through the real host against a real Samba 4
//! AD DC (one per test process, `idgard_tests::samba`; each test works in an OU of its own):
//! objectGUID keys in the form Windows writes them, every order kind with values that need
//! escaping, `unicodePwd` and `userAccountControl`, binds by user principal name, and simple
//! binds refused without TLS.
//!
//! Samba is not Windows in a few ways these tests cannot show: it honours pages larger than
//! 1,000 entries and unpaged searches of any size, and it returns every value of a large
//! `member` (it never answers with `member;range=0-1499`).

use crate::ldap::{change, created_key, fulfilled, ldap, order};
use crate::support::*;
use idgard_host::model::{ChangeOp, ErrorKind, Order, OrderKind, OrderOutcome};
use idgard_host::{Connection, Outcome, Request};
use idgard_tests::samba::{self, Ou, Samba};
use std::collections::BTreeMap;

/// A GUID no entry has.
const NO_SUCH_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// LDAPS, checked against the test CA; the certificate names the DC's address.
const DIRECT: &str = "tls = \"direct\"\nca = \"ca.pem\"";

/// A connection to the DC's `port` as `who` (a UPN), accounts and groups in `ou`, with `extra`
/// settings lines and `grant` as the endpoint's TLS lines.
fn connection(
    s: &Scratch,
    dc: &Samba,
    ou: &Ou,
    who: (&str, &str),
    port: u16,
    extra: &str,
    grant: &str,
) -> Connection {
    s.write("ca.pem", &dc.ca_pem);
    s.connection(&format!(
        "name = \"ad\"\nconnector = \"ldap\"\n\
         [settings]\ndialect = \"active-directory\"\nbind_dn = {:?}\n\
         accounts_base = {:?}\ngroups_base = {:?}\npage_size = 200\n{extra}\n\
         [secrets]\nbind_password = {{ value = {:?} }}\n\
         [grants.endpoints.directory]\naddress = \"{}:{port}\"\n{grant}\n",
        who.0, ou.people, ou.groups, who.1, dc.host
    ))
}

/// As Administrator (by UPN), over LDAPS.
fn ldaps(s: &Scratch, dc: &Samba, ou: &Ou) -> Connection {
    let admin = (dc.admin_upn.as_str(), dc.admin_password.as_str());
    connection(s, dc, ou, admin, dc.ldaps_port, "", DIRECT)
}

/// Attributes of a create order; a name given twice has two values.
fn entry(pairs: &[(&str, &str)]) -> OrderKind {
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in pairs {
        attributes
            .entry((*name).to_owned())
            .or_default()
            .push((*value).to_owned());
    }
    OrderKind::Create { attributes }
}

/// An account created by ldapadd (no password: Samba makes it `userAccountControl` 546,
/// disabled).
fn user_ldif(dc: &Samba, ou: &Ou, cn: &str) -> String {
    let sam = ou.sam(cn);
    format!(
        "dn: CN={cn},{}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {}\n\n",
        ou.people,
        dc.upn(&sam)
    )
}

/// The test connection's outcome: Ok, or the error's kind and message.
fn test_connection(s: &Scratch, conn: &Connection) -> Result<(), (ErrorKind, String)> {
    match s.run(ldap(), conn, Request::TestConnection).0 {
        Ok(Outcome::Tested) => Ok(()),
        Ok(Outcome::Failed { kind, message }) => Err((kind, message)),
        other => panic!("{other:?}"),
    }
}

/// The objectGUID of the entry at `dn`, in the form Windows writes it (the first three fields
/// little-endian), read from the DC's bytes.
fn guid_of(dc: &Samba, dn: &str) -> String {
    let found = dc.search(dn, "(objectClass=*)", &["objectGUID"]);
    let e = found.first().unwrap_or_else(|| panic!("no entry at {dn}"));
    let raw = e.bytes("objectGUID").expect("objectGUID");
    assert_eq!(raw.len(), 16, "{dn}");
    let reversed =
        |from: usize, to: usize| raw[from..to].iter().rev().copied().collect::<Vec<u8>>();
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(reversed(0, 4)),
        hex::encode(reversed(4, 6)),
        hex::encode(reversed(6, 8)),
        hex::encode(&raw[8..10]),
        hex::encode(&raw[10..16])
    )
}

/// `userAccountControl` of the entry keyed `guid`.
fn account_control(dc: &Samba, guid: &str) -> u32 {
    let e = dc
        .entry_by_guid(guid)
        .unwrap_or_else(|| panic!("no entry {guid}"));
    let flags = e.get("userAccountControl").expect("userAccountControl");
    flags.parse().unwrap_or_else(|_| panic!("{flags}"))
}

#[test]
fn active_directory_takes_simple_binds_over_tls_only() {
    let dc = samba::shared();
    // The DC itself: LDAPS, StartTLS, and no simple bind in the clear.
    dc.bind(&dc.admin_upn, &dc.admin_password).unwrap();
    let clear = dc
        .plain_bind(&dc.admin_upn, &dc.admin_password)
        .unwrap_err();
    assert!(clear.contains("(8)"), "strongerAuthRequired: {clear}");

    let ou = dc.new_ou("tls");
    let s = Scratch::new();
    let admin = (dc.admin_upn.as_str(), dc.admin_password.as_str());
    assert_eq!(test_connection(&s, &ldaps(&s, dc, &ou)), Ok(()));
    let start_tls = "tls = \"start-tls\"\nca = \"ca.pem\"";
    let conn = connection(&s, dc, &ou, admin, dc.ldap_port, "", start_tls);
    assert_eq!(test_connection(&s, &conn), Ok(()));

    // Without TLS the connector refuses before binding (a bind would be answered with result 8,
    // a `denied` error).
    let conn = connection(&s, dc, &ou, admin, dc.ldap_port, "", "tls = \"none\"");
    let (kind, message) = test_connection(&s, &conn).unwrap_err();
    assert_eq!(kind, ErrorKind::Configuration, "{message}");
    assert!(
        message.contains("refuses simple binds without TLS"),
        "{message}"
    );

    s.write(
        "other-ca.pem",
        idgard_tests::slapd::Slapd::unrelated_ca_pem(),
    );
    let other_ca = "tls = \"direct\"\nca = \"other-ca.pem\"";
    let conn = connection(&s, dc, &ou, admin, dc.ldaps_port, "", other_ca);
    let (kind, message) = test_connection(&s, &conn).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "{message}");
}

#[test]
fn a_full_export_keys_entries_by_object_guid_and_names_members_by_key() {
    let dc = samba::shared();
    let ou = dc.new_ou("export");
    let n = 250; // over two pages of 200
    let people: String = (0..n)
        .map(|i| user_ldif(dc, &ou, &format!("p{i}")))
        .collect();
    dc.ldapadd(&people);
    // A computer is a `user` but not a person: not an account.
    dc.ldapadd(&format!(
        "dn: CN=pc,{}\nobjectClass: computer\nsAMAccountName: {}$\n",
        ou.people,
        ou.sam("pc")
    ));
    // Administrator is outside the accounts' base: a member that names no exported account.
    dc.ldapadd(&format!(
        "dn: CN=staff,{}\nobjectClass: group\nsAMAccountName: {}\n\
         member: CN=p1,{people}\nmember: CN=p2,{people}\n\
         member: CN=Administrator,CN=Users,{base}\n",
        ou.groups,
        ou.sam("staff"),
        people = ou.people,
        base = dc.base
    ));
    let s = Scratch::new();
    let (out, cap) = s.run(ldap(), &ldaps(&s, dc, &ou), full());
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?} {:?}", cap.logs())
    };
    assert_eq!(summary.entries, n as u64 + 1);
    let cursor = summary
        .cursor
        .expect("a DirSync cursor for the next, incremental export");
    assert_eq!(cursor.format, "ad-dirsync-cookie-v1");
    let entries = cap.entries();
    let accounts: Vec<_> = entries
        .iter()
        .filter(|e| e.entity_type == "account")
        .collect();
    assert_eq!(accounts.len(), n, "paged past 200, the computer left out");
    let account = |cn: &str| {
        let sam = ou.sam(cn);
        accounts
            .iter()
            .find(|e| e.get("sAMAccountName") == Some(sam.as_str()))
            .unwrap_or_else(|| panic!("{cn} not exported"))
    };

    let p1 = account("p1");
    let parts: Vec<usize> = p1.key.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "{}", p1.key);
    // The DC reads the key as the entry's GUID: the Windows form, first three fields
    // little-endian in the stored bytes.
    let found = dc.entry_by_guid(&p1.key).expect("the key names p1");
    assert_eq!(p1.get("dn"), Some(found.dn.as_str()));
    assert_eq!(
        found.dn.to_ascii_lowercase(),
        format!("cn=p1,{}", ou.people).to_ascii_lowercase()
    );
    assert_eq!(p1.key, guid_of(dc, &found.dn));
    for cn in ["p0", "p199", "p249"] {
        let e = account(cn);
        assert_eq!(dc.dn_of_guid(&e.key).as_deref(), e.get("dn"), "{cn}");
    }
    assert_eq!(
        p1.get("objectGUID"),
        None,
        "the key is not an attribute too"
    );
    assert!(
        p1.get("objectSid")
            .is_some_and(|sid| sid.starts_with("AQUAAAAAAAUV")),
        "objectSid (S-1-5-21-...) in base64: {:?}",
        p1.get("objectSid")
    );
    assert_eq!(
        p1.get("userPrincipalName"),
        Some(dc.upn(&ou.sam("p1")).as_str())
    );
    let pc = ou.sam("pc$");
    assert!(
        !accounts
            .iter()
            .any(|e| e.get("sAMAccountName") == Some(pc.as_str()))
    );

    let groups: Vec<_> = entries
        .iter()
        .filter(|e| e.entity_type == "group")
        .collect();
    assert_eq!(groups.len(), 1);
    let staff = groups[0];
    assert_eq!(dc.dn_of_guid(&staff.key).as_deref(), staff.get("dn"));
    let mut members: Vec<&str> = staff
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map(|(_, v)| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    members.sort_unstable();
    let mut expected = [p1.key.as_str(), account("p2").key.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    assert!(
        cap.logged("1 group members name no exported account"),
        "{:?}",
        cap.logs()
    );
}

#[test]
fn every_order_kind_lands_in_active_directory_with_values_escaped() {
    let dc = samba::shared();
    let ou = dc.new_ou("orders");
    dc.ldapadd(&format!(
        "dn: OU=moved,{}\nobjectClass: organizationalUnit\n",
        ou.people
    ));
    let s = Scratch::new();
    // A create carries the password as text in `unicodePwd`; the connector encodes it.
    let conn = ldaps(&s, dc, &ou);
    let password = "Fresh-Pa55word";
    let pwd = password.to_owned();
    let odd = ["O'Brien, Pat", "a,b=c", "#x", "*)(uid=*", "Zoë", " lead"];
    let sams: Vec<String> = (0..odd.len()).map(|i| ou.sam(&format!("u{i}"))).collect();
    let mut orders: Vec<Order> = odd
        .iter()
        .zip(&sams)
        .enumerate()
        .map(|(i, (cn, sam))| {
            let upn = dc.upn(sam);
            order(
                &format!("c{i}"),
                "account",
                sam,
                entry(&[
                    ("cn", cn),
                    ("sAMAccountName", sam),
                    ("userPrincipalName", &upn),
                    ("description", cn),
                    ("unicodePwd", &pwd),
                    ("userAccountControl", "512"),
                ]),
            )
        })
        .collect();
    // `mail` is single-valued: that order fails, not the batch.
    let zed = ou.sam("zed");
    orders.push(order(
        "two-mails",
        "account",
        &zed,
        entry(&[
            ("cn", "Zed"),
            ("sAMAccountName", &zed),
            ("mail", "a@example.org"),
            ("mail", "b@example.org"),
        ]),
    ));
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders.clone())).0);
    let keys: Vec<String> = results[..odd.len()].iter().map(created_key).collect();
    assert!(
        matches!(&results[odd.len()].outcome, OrderOutcome::Failed(m) if m.contains("mail")),
        "{:?}",
        results[odd.len()]
    );
    for ((cn, sam), key) in odd.iter().zip(&sams).zip(&keys) {
        let e = dc
            .entry_by_guid(key)
            .unwrap_or_else(|| panic!("{cn:?}: no entry keyed {key}"));
        assert_eq!(e.get("cn").as_deref(), Some(*cn));
        assert_eq!(e.get("description").as_deref(), Some(*cn));
        assert_eq!(e.get("sAMAccountName").as_ref(), Some(sam));
        assert_eq!(
            e.get("userAccountControl").as_deref(),
            Some("512"),
            "{cn:?}"
        );
        dc.bind(&dc.upn(sam), password)
            .unwrap_or_else(|e| panic!("{cn:?} binds by UPN: {e}"));
    }
    assert!(
        dc.search(&ou.dn, &format!("(sAMAccountName={zed})"), &["cn"])
            .is_empty()
    );
    // Repeating the creates finds the same entries, keyed the same.
    let again = fulfilled(
        s.run(
            ldap(),
            &conn,
            Request::Fulfill(orders[..odd.len()].to_vec()),
        )
        .0,
    );
    assert_eq!(again.iter().map(created_key).collect::<Vec<_>>(), keys);

    let pat = &keys[0];
    let admins_sam = ou.sam("admins");
    let group = fulfilled(
        s.run(
            ldap(),
            &conn,
            Request::Fulfill(vec![order(
                "g",
                "group",
                "admins",
                entry(&[
                    ("cn", "admins"),
                    ("sAMAccountName", &admins_sam),
                    ("member", pat),
                    ("member", &keys[4]),
                ]),
            )]),
        )
        .0,
    );
    let admins = created_key(&group[0]);
    let members = dc.entry_by_guid(&admins).expect("admins").values("member");
    assert_eq!(members.len(), 2, "{members:?}");

    let moved_dn = format!("CN=pat,OU=moved,{}", ou.people);
    let new_password = "Changed-Pa55word";
    let batch = vec![
        order(
            "u1",
            "account",
            pat,
            OrderKind::Update {
                changes: vec![
                    change("otherMailbox", ChangeOp::Add, &["O'Brien", "*)(uid=*"]),
                    change("description", ChangeOp::Replace, &["Zoë"]),
                    change("mail", ChangeOp::Replace, &["pat@example.org"]),
                ],
            },
        ),
        order(
            "u2",
            "account",
            pat,
            OrderKind::Update {
                changes: vec![change("dn", ChangeOp::Replace, &[&moved_dn])],
            },
        ),
        order(
            "pw",
            "account",
            pat,
            OrderKind::SetPassword {
                password: new_password.into(),
            },
        ),
        order("off", "account", &keys[1], OrderKind::Disable),
        order(
            "m",
            "group",
            &admins,
            OrderKind::Update {
                changes: vec![
                    change("member", ChangeOp::Remove, &[keys[4].as_str()]),
                    change("member", ChangeOp::Add, &[keys[2].as_str()]),
                ],
            },
        ),
        order("del", "account", &keys[3], OrderKind::Delete),
        order("gone", "account", NO_SUCH_GUID, OrderKind::Delete),
        order("nobody", "account", NO_SUCH_GUID, OrderKind::Enable),
    ];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(batch)).0);
    let outcomes: Vec<&OrderOutcome> = results.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[..7], [&OrderOutcome::Done; 7], "{results:?}");
    assert!(
        matches!(outcomes[7], OrderOutcome::Failed(m) if m.contains("no account")),
        "{results:?}"
    );

    // Renamed and moved, the same GUID, its values changed, still in its group.
    let moved = dc.entry_by_guid(pat).expect("pat");
    assert!(moved.dn.eq_ignore_ascii_case(&moved_dn), "{}", moved.dn);
    let mut mailboxes = moved.values("otherMailbox");
    mailboxes.sort();
    assert_eq!(mailboxes, ["*)(uid=*", "O'Brien"]);
    assert_eq!(moved.get("description").as_deref(), Some("Zoë"));
    assert_eq!(moved.get("mail").as_deref(), Some("pat@example.org"));
    let member_of = moved.values("memberOf");
    assert!(
        member_of.iter().any(|g| g.starts_with("CN=admins,")),
        "the membership follows the move: {member_of:?}"
    );
    dc.bind(&dc.upn(&sams[0]), new_password).unwrap();
    dc.bind(&moved_dn, new_password).unwrap();
    // (Samba 4.17 still takes the old password in a simple bind after a reset: not checked.)

    assert_eq!(account_control(dc, &keys[1]), 514);
    let refused = dc.bind(&dc.upn(&sams[1]), password).unwrap_err();
    assert!(refused.contains("data 533"), "disabled: {refused}");

    let mut members = dc.entry_by_guid(&admins).expect("admins").values("member");
    members.sort();
    let mut expected = vec![moved.dn.clone(), dc.dn_of_guid(&keys[2]).expect("#x")];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(dc.dn_of_guid(&keys[3]), None, "deleted");
    assert!(dc.dn_of_guid(&keys[4]).is_some(), "Zoë left the group only");

    let enable = vec![order("on", "account", &keys[1], OrderKind::Enable)];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(enable)).0);
    assert_eq!(results[0].outcome, OrderOutcome::Done);
    assert_eq!(account_control(dc, &keys[1]), 512);
    dc.bind(&dc.upn(&sams[1]), password).unwrap();
}

#[test]
fn an_account_made_by_orders_binds_by_upn_and_a_wrong_password_is_denied() {
    let dc = samba::shared();
    let ou = dc.new_ou("bind");
    let s = Scratch::new();
    let admin = ldaps(&s, dc, &ou);
    let sam = ou.sam("reader");
    let upn = dc.upn(&sam);
    let password = "Kestrel-Pa55word";
    // As an administrator does it: the account without a password (disabled), then its password,
    // then enabled.
    let made = fulfilled(
        s.run(
            ldap(),
            &admin,
            Request::Fulfill(vec![order(
                "c",
                "account",
                &sam,
                entry(&[
                    ("cn", "Service, Reader"),
                    ("sAMAccountName", &sam),
                    ("userPrincipalName", &upn),
                ]),
            )]),
        )
        .0,
    );
    let key = created_key(&made[0]);
    assert_ne!(account_control(dc, &key) & 2, 0, "disabled until enabled");
    let results = fulfilled(
        s.run(
            ldap(),
            &admin,
            Request::Fulfill(vec![
                order(
                    "pw",
                    "account",
                    &key,
                    OrderKind::SetPassword {
                        password: password.into(),
                    },
                ),
                order("on", "account", &key, OrderKind::Enable),
            ]),
        )
        .0,
    );
    assert!(
        results.iter().all(|r| r.outcome == OrderOutcome::Done),
        "{results:?}"
    );
    assert_eq!(account_control(dc, &key) & 2, 0, "enabled");

    // The new account binds by its UPN and reads its OU (as any authenticated user may).
    let reader = connection(&s, dc, &ou, (&upn, password), dc.ldaps_port, "", DIRECT);
    assert_eq!(test_connection(&s, &reader), Ok(()));
    let wrong = connection(
        &s,
        dc,
        &ou,
        (&upn, "Wrong-Pa55word"),
        dc.ldaps_port,
        "",
        DIRECT,
    );
    let (kind, message) = test_connection(&s, &wrong).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "{message}");
    assert!(message.contains("invalid credentials"), "{message}");

    let off = vec![order("off", "account", &key, OrderKind::Disable)];
    let results = fulfilled(s.run(ldap(), &admin, Request::Fulfill(off)).0);
    assert_eq!(results[0].outcome, OrderOutcome::Done);
    let (kind, message) = test_connection(&s, &reader).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "a disabled account: {message}");
}

#[test]
fn the_schema_comes_from_active_directory() {
    let dc = samba::shared();
    let ou = dc.new_ou("schema");
    let s = Scratch::new();
    let Ok(Outcome::Schema(schema)) = s.run(ldap(), &ldaps(&s, dc, &ou), Request::Schema).0 else {
        panic!("no schema")
    };
    let account = schema.iter().find(|e| e.name == "account").unwrap();
    let attr = |n: &str| {
        account
            .attributes
            .iter()
            .find(|a| a.name == n)
            .unwrap_or_else(|| panic!("no {n} in the account schema"))
    };
    assert!(attr("objectGUID").key);
    assert!(attr("cn").required);
    assert_eq!(attr("unicodePwd").kind, "binary");
    assert_eq!(attr("userAccountControl").kind, "integer");
    assert_eq!(attr("whenCreated").kind, "datetime");
    assert!(!attr("mail").multi_valued, "single-valued in AD");
    assert!(attr("otherMailbox").multi_valued);
    let group = schema.iter().find(|e| e.name == "group").unwrap();
    let member = group
        .attributes
        .iter()
        .find(|a| a.name == "member")
        .unwrap();
    assert_eq!(member.kind, "reference");
    assert_eq!(member.references.as_deref(), Some("account"));
}

#[test]
fn an_incremental_export_brings_changes_and_deletions_through_dirsync() {
    use idgard_sdk::wire::EntryOp;
    let dc = samba::shared();
    let ou = dc.new_ou("dirsync");
    let people: String = (0..4)
        .map(|i| user_ldif(dc, &ou, &format!("d{i}")))
        .collect();
    dc.ldapadd(&people);
    dc.ldapadd(&format!(
        "dn: CN=crew,{}\nobjectClass: group\nsAMAccountName: {}\nmember: CN=d0,{}\n",
        ou.groups,
        ou.sam("crew"),
        ou.people
    ));
    let s = Scratch::new();
    let conn = ldaps(&s, dc, &ou);
    let (out, _) = s.run(ldap(), &conn, full());
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?}")
    };
    let cursor = summary
        .cursor
        .expect("a full export gives a DirSync cursor");
    assert_eq!(cursor.format, "ad-dirsync-cookie-v1");
    let key = |cn: &str| guid_of(dc, &format!("CN={cn},{}", ou.people));
    let (d1, d2, d3) = (key("d1"), key("d2"), key("d3"));
    let crew = guid_of(dc, &format!("CN=crew,{}", ou.groups));
    // A change, a deletion, a move out of the accounts' base, a new account, a new member.
    dc.ldapmodify(&format!(
        "dn: CN=d1,{0}\nchangetype: modify\nreplace: description\ndescription: Changed\n\n\
         dn: CN=d2,{0}\nchangetype: delete\n\n\
         dn: CN=d3,{0}\nchangetype: modrdn\nnewrdn: CN=d3\ndeleteoldrdn: 1\nnewsuperior: {1}\n\n\
         dn: CN=crew,{2}\nchangetype: modify\nadd: member\nmember: CN=d1,{0}\n",
        ou.people, ou.dn, ou.groups
    ));
    dc.ldapadd(&user_ldif(dc, &ou, "d9"));
    let d9 = key("d9");
    let (out, cap) = s.run(ldap(), &conn, since(Some(cursor.clone())));
    let Ok(Outcome::Exported(next)) = out else {
        panic!("{out:?} {:?}", cap.logs())
    };
    let changes = cap.entries();
    let find = |k: &str, t: &str| {
        changes
            .iter()
            .find(|e| e.key == k && e.entity_type == t)
            .unwrap_or_else(|| panic!("no {t} {k} in {changes:?}"))
    };
    assert_eq!(find(&d1, "account").get("description"), Some("Changed"));
    assert_eq!(find(&d1, "account").op, EntryOp::Upsert);
    assert_eq!(find(&d2, "account").op, EntryOp::Delete, "deleted");
    assert_eq!(
        find(&d3, "account").op,
        EntryOp::Delete,
        "moved out of the base"
    );
    assert_eq!(find(&d9, "account").op, EntryOp::Upsert, "new");
    let group = find(&crew, "group");
    let mut members: Vec<String> = group
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    members.sort();
    let mut expected = vec![key("d0"), d1.clone()];
    expected.sort();
    assert_eq!(members, expected, "members by key");
    assert!(
        !changes
            .iter()
            .any(|e| e.key == key("d0") && e.entity_type == "account"),
        "an account that did not change is not exported: {changes:?}"
    );
    // From the new cursor, nothing of this test's entries changed.
    let (out, cap) = s.run(ldap(), &conn, since(next.cursor));
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let mine = [&d1, &d2, &d9, &crew];
    assert!(
        !cap.entries()
            .iter()
            .any(|e| mine.contains(&&e.key) && e.op == EntryOp::Upsert),
        "{:?}",
        cap.entries()
    );
}

// What follows checks behaviour the README promises for Active Directory ("same" as OpenLDAP)
// that the connector does not have yet against a real DC.

#[test]
fn memberships_already_there_or_already_gone_are_done_on_active_directory() {
    // AD answers an add of a member already there with 68 (entryAlreadyExists), not 20, and the
    // removal of one already gone with 53 (unwillingToPerform), not 16.
    let dc = samba::shared();
    let ou = dc.new_ou("members");
    let people: String = (0..4)
        .map(|i| user_ldif(dc, &ou, &format!("m{i}")))
        .collect();
    dc.ldapadd(&people);
    dc.ldapadd(&format!(
        "dn: CN=team,{}\nobjectClass: group\nsAMAccountName: {}\nmember: CN=m0,{}\n",
        ou.groups,
        ou.sam("team"),
        ou.people
    ));
    let key = |dn: &str| guid_of(dc, dn);
    let team = key(&format!("CN=team,{}", ou.groups));
    let m: Vec<String> = (0..4)
        .map(|i| key(&format!("CN=m{i},{}", ou.people)))
        .collect();
    assert!(dc.dn_of_guid(&m[0]).is_some(), "the test's own GUID text");
    let s = Scratch::new();
    let conn = ldaps(&s, dc, &ou);
    let member = |id: &str, op: ChangeOp, who: &str| {
        let changes = vec![change("member", op, &[who])];
        order(id, "group", &team, OrderKind::Update { changes })
    };
    let outcomes = |orders: Vec<Order>| -> Vec<(String, OrderOutcome)> {
        fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0)
            .into_iter()
            .map(|r| (r.id, r.outcome))
            .collect()
    };
    let all_done = |out: &[(String, OrderOutcome)]| {
        assert!(out.iter().all(|(_, o)| *o == OrderOutcome::Done), "{out:?}");
    };
    // Two joins of one group go out in one modify.
    all_done(&outcomes(vec![
        member("j1", ChangeOp::Add, &m[1]),
        member("j2", ChangeOp::Add, &m[2]),
    ]));
    // m0 is there already: alone, and in a joint modify with m3.
    all_done(&outcomes(vec![member("again", ChangeOp::Add, &m[0])]));
    all_done(&outcomes(vec![
        member("j0", ChangeOp::Add, &m[0]),
        member("j3", ChangeOp::Add, &m[3]),
    ]));
    // m1 leaves; then leaves again, alone and with m2.
    all_done(&outcomes(vec![member("l1", ChangeOp::Remove, &m[1])]));
    all_done(&outcomes(vec![member("l1-again", ChangeOp::Remove, &m[1])]));
    all_done(&outcomes(vec![
        member("l1-third", ChangeOp::Remove, &m[1]),
        member("l2", ChangeOp::Remove, &m[2]),
    ]));
    let mut left = dc.dn_of_guid(&team).map_or_else(Vec::new, |dn| {
        dc.search(&dn, "(objectClass=*)", &["member"])[0].values("member")
    });
    left.sort();
    let expected = [
        format!("CN=m0,{}", ou.people),
        format!("CN=m3,{}", ou.people),
    ];
    assert_eq!(left, expected);
}

#[test]
fn an_order_names_only_entries_under_its_base() {
    // AD finds an entry by GUID anywhere in the domain (`<GUID=...>`): a key of an entry
    // outside the accounts' base, or of a group, is no account of this connection.
    let dc = samba::shared();
    let ou = dc.new_ou("confined");
    let outside = format!("OU=elsewhere,{}", ou.dn);
    let sam = ou.sam("far");
    dc.ldapadd(&format!(
        "dn: {outside}\nobjectClass: organizationalUnit\n\n\
         dn: CN=stranger,{outside}\nobjectClass: user\nsAMAccountName: {sam}\n\
         userPrincipalName: {}\nunicodePwd:: {}\nuserAccountControl: 512\n\n\
         dn: CN=crew,{}\nobjectClass: group\nsAMAccountName: {}\n",
        dc.upn(&sam),
        samba::unicode_pwd_base64("Distant-Pa55word"),
        ou.groups,
        ou.sam("crew")
    ));
    let s = Scratch::new();
    let conn = ldaps(&s, dc, &ou);
    let (out, cap) = s.run(ldap(), &conn, full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let entries = cap.entries();
    assert!(
        entries
            .iter()
            .all(|e| e.get("sAMAccountName") != Some(sam.as_str()))
    );
    let crew = entries
        .iter()
        .find(|e| e.entity_type == "group")
        .expect("crew exported")
        .key
        .clone();
    // The outside account's key, read from the DC.
    let outsider = dc
        .search(&outside, &format!("(sAMAccountName={sam})"), &["cn"])
        .pop()
        .expect("the outside account");
    let guid = guid_of(dc, &outsider.dn);
    assert_eq!(dc.dn_of_guid(&guid).as_deref(), Some(outsider.dn.as_str()));
    let orders = vec![
        order("off", "account", &guid, OrderKind::Disable),
        order("del", "account", &crew, OrderKind::Delete),
    ];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0);
    assert!(
        matches!(&results[0].outcome, OrderOutcome::Failed(m) if m.contains("no account")),
        "{results:?}"
    );
    assert_eq!(
        account_control(dc, &guid),
        512,
        "the outside account untouched"
    );
    assert!(
        dc.dn_of_guid(&crew).is_some(),
        "the group is no account: not deleted"
    );
}

#[test]
fn a_key_that_is_no_guid_fails_its_own_order_only() {
    // AD answers `<GUID=not-a-guid>` with 34 (invalidDNSyntax).
    let dc = samba::shared();
    let ou = dc.new_ou("badkeys");
    dc.ldapadd(&user_ldif(dc, &ou, "k0"));
    let s = Scratch::new();
    let conn = ldaps(&s, dc, &ou);
    let (out, cap) = s.run(ldap(), &conn, full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let k0 = cap.entries()[0].key.clone();
    let describe = |v: &str| OrderKind::Update {
        changes: vec![change("description", ChangeOp::Replace, &[v])],
    };
    let orders = vec![
        order("odd", "account", "*)(uid=*", OrderKind::Enable),
        order(
            "injected",
            "account",
            &format!("{k0}>;<SID=S-1-5-32-544"),
            describe("x"),
        ),
        order("quote", "account", "O'Brien", OrderKind::Delete),
        order("fine", "account", &k0, describe("fine")),
    ];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0);
    let outcome = |id: &str| {
        let r = results.iter().find(|r| r.id == id);
        r.unwrap_or_else(|| panic!("no result for {id}"))
            .outcome
            .clone()
    };
    for id in ["odd", "injected"] {
        assert!(
            matches!(outcome(id), OrderOutcome::Failed(m) if m.contains("no account")),
            "{id}: {results:?}"
        );
    }
    assert!(
        matches!(
            outcome("quote"),
            OrderOutcome::Done | OrderOutcome::Failed(_)
        ),
        "{results:?}"
    );
    assert_eq!(outcome("fine"), OrderOutcome::Done);
    let e = dc.entry_by_guid(&k0).expect("k0");
    assert_eq!(e.get("description").as_deref(), Some("fine"));
}

#[test]
fn the_account_schema_holds_the_attributes_of_its_auxiliary_classes() {
    // `sAMAccountName` and `objectSid` come with `securityPrincipal`, an auxiliary class of
    // `user` that only the subschema's `dITContentRules` name (`AUX ( ... securityPrincipal
    // ... )`); the object classes alone do not.
    let dc = samba::shared();
    let ou = dc.new_ou("aux");
    let s = Scratch::new();
    let Ok(Outcome::Schema(schema)) = s.run(ldap(), &ldaps(&s, dc, &ou), Request::Schema).0 else {
        panic!("no schema")
    };
    let account = schema.iter().find(|e| e.name == "account").unwrap();
    let names: Vec<&str> = account.attributes.iter().map(|a| a.name.as_str()).collect();
    for wanted in ["sAMAccountName", "objectSid"] {
        assert!(names.contains(&wanted), "no {wanted} in {names:?}");
    }
    let sid = account
        .attributes
        .iter()
        .find(|a| a.name == "objectSid")
        .unwrap();
    assert_eq!(sid.kind, "binary");
}
