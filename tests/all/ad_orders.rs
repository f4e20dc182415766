//! Orders carried out on Active Directory (a Samba 4.17 DC): every kind with values that need
//! escaping, an account made by orders that binds, memberships already there or gone, keys
//! confined to the entity's base, keys that are no GUID. The DC and the helpers are `ad.rs`'s.

use crate::ad::{
    DIRECT, account_control, connection, entry, guid_of, ldaps, test_connection, user_ldif,
};
use crate::ldap::{change, created_key, fulfilled, ldap, order};
use crate::support::*;
use idgard_host::model::{ChangeOp, ErrorKind, Order, OrderKind, OrderOutcome};
use idgard_host::{Outcome, Request};
use idgard_tests::samba;

/// A GUID no entry has.
const NO_SUCH_GUID: &str = "00000000-0000-0000-0000-000000000000";

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
