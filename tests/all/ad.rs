//! The LDAP connector's `active-directory` dialect through the real host against a real Samba 4
//! AD DC (one per test process, `idgard_tests::samba`; each test works in an OU of its own):
//! objectGUID keys in the form Windows writes them, binds by user principal name, simple binds
//! refused without TLS, the schema with auxiliary classes, incremental export by DirSync. Orders
//! are in `ad_orders.rs`.
//!
//! Samba is not Windows in a few ways these tests cannot show: it honours pages larger than
//! 1,000 entries and unpaged searches of any size, and it returns every value of a large
//! `member` unless asked for a range (Windows answers `member;range=0-1499` by itself). The range
//! test asks for ranges with the `member_range` setting, so the connector reads the rest range
//! by range as it does from Windows.

use crate::ldap::ldap;
use crate::support::*;
use idgard_host::model::{ErrorKind, OrderKind};
use idgard_host::{Connection, Outcome, Request};
use idgard_tests::samba::{self, Ou, Samba};
use std::collections::BTreeMap;

/// LDAPS, checked against the test CA; the certificate names the DC's address.
pub(crate) const DIRECT: &str = "tls = \"direct\"\nca = \"ca.pem\"";

/// A connection to the DC's `port` as `who` (a UPN), accounts and groups in `ou`, with `extra`
/// settings lines and `grant` as the endpoint's TLS lines.
pub(crate) fn connection(
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
pub(crate) fn ldaps(s: &Scratch, dc: &Samba, ou: &Ou) -> Connection {
    let admin = (dc.admin_upn.as_str(), dc.admin_password.as_str());
    connection(s, dc, ou, admin, dc.ldaps_port, "", DIRECT)
}

/// Attributes of a create order; a name given twice has two values.
pub(crate) fn entry(pairs: &[(&str, &str)]) -> OrderKind {
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
pub(crate) fn user_ldif(dc: &Samba, ou: &Ou, cn: &str) -> String {
    let sam = ou.sam(cn);
    format!(
        "dn: CN={cn},{}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {}\n\n",
        ou.people,
        dc.upn(&sam)
    )
}

/// The test connection's outcome: Ok, or the error's kind and message.
pub(crate) fn test_connection(s: &Scratch, conn: &Connection) -> Result<(), (ErrorKind, String)> {
    match s.run(ldap(), conn, Request::TestConnection).0 {
        Ok(Outcome::Tested) => Ok(()),
        Ok(Outcome::Failed { kind, message }) => Err((kind, message)),
        other => panic!("{other:?}"),
    }
}

/// The objectGUID of the entry at `dn`, in the form Windows writes it (the first three fields
/// little-endian), read from the DC's bytes.
pub(crate) fn guid_of(dc: &Samba, dn: &str) -> String {
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
pub(crate) fn account_control(dc: &Samba, guid: &str) -> u32 {
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

/// The members of the group keyed `key` in an export, sorted.
fn members_of(entries: &[idgard_sdk::wire::Entry], key: &str) -> Vec<String> {
    let group = entries
        .iter()
        .find(|e| e.key == key && e.entity_type == "group")
        .unwrap_or_else(|| panic!("group {key} not exported"));
    let mut members = group
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    members.sort();
    members
}

#[test]
fn a_large_group_is_read_range_by_range() {
    let dc = samba::shared();
    let ou = dc.new_ou("ranges");
    let n = 1_100;
    let people: String = (0..n)
        .map(|i| user_ldif(dc, &ou, &format!("r{i}")))
        .collect();
    dc.ldapadd(&people);
    let members: String = (0..n)
        .map(|i| format!("member: CN=r{i},{}\n", ou.people))
        .collect();
    dc.ldapadd(&format!(
        "dn: CN=many,{}\nobjectClass: group\nsAMAccountName: {}\n{members}",
        ou.groups,
        ou.sam("many")
    ));
    let many = guid_of(dc, &format!("CN=many,{}", ou.groups));
    let s = Scratch::new();
    let admin = (dc.admin_upn.as_str(), dc.admin_password.as_str());
    // Ranges of 400 members: 0-399, 400-799, then 800-* (as Windows hands out groups larger than
    // its MaxValRange whatever the connection says).
    let ranged = connection(
        &s,
        dc,
        &ou,
        admin,
        dc.ldaps_port,
        "member_range = 400",
        DIRECT,
    );
    let (out, cap) = s.run(ldap(), &ranged, full());
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?} {:?}", cap.logs())
    };
    let entries = cap.entries();
    let mut accounts: Vec<String> = entries
        .iter()
        .filter(|e| e.entity_type == "account")
        .map(|e| e.key.clone())
        .collect();
    accounts.sort();
    assert_eq!(accounts.len(), n);
    assert_eq!(
        members_of(&entries, &many),
        accounts,
        "every member, by key"
    );
    assert!(!cap.logged("name no exported account"), "{:?}", cap.logs());
    // Without ranges asked for, Samba sends every member at once: the same members.
    let (out, cap) = s.run(ldap(), &ldaps(&s, dc, &ou), full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    assert!(members_of(&cap.entries(), &many) == accounts);

    // A changed group comes whole in an incremental export too.
    dc.ldapadd(&user_ldif(dc, &ou, "late"));
    dc.ldapmodify(&format!(
        "dn: CN=many,{}\nchangetype: modify\nadd: member\nmember: CN=late,{}\n",
        ou.groups, ou.people
    ));
    let (out, cap) = s.run(ldap(), &ranged, since(summary.cursor));
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let mut expected = accounts;
    expected.push(guid_of(dc, &format!("CN=late,{}", ou.people)));
    expected.sort();
    let members = members_of(&cap.entries(), &many);
    assert_eq!(members.len(), n + 1);
    assert!(members == expected, "every member, by key");
}
