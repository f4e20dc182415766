//! One LDAP session over a granted endpoint: StartTLS when the grant asks for it, a simple bind,
//! then requests one at a time (searches paged with RFC 2696 simple paged results).

use crate::entry::{self, EntryRef, Peek};
use crate::settings::{Config, Dialect};
use bytes::{Buf, BytesMut};
use idgard_sdk::Error;
use idgard_sdk::net::{self, Stream};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapExtendedRequest, LdapModify, LdapModifyDNRequest, LdapMsg,
    LdapOp, LdapPartialAttribute, LdapResult, LdapResultCode, LdapSearchRequest,
    LdapSearchResultEntry,
};
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapIntermediateResponse, LdapSearchScope, SyncRequestMode,
    SyncStateValue,
};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use tokio_util::codec::{Decoder, Encoder};

/// The largest message accepted from the directory (a group of 100,000 members fits).
const MAX_MESSAGE: usize = 64 << 20;
/// LDAP's StartTLS extended operation (RFC 4511 §4.14).
const OID_START_TLS: &str = "1.3.6.1.4.1.1466.20037";
/// The post-read control (RFC 4527): an add answers with the new entry's attributes.
const OID_POST_READ: &str = "1.3.6.1.1.13.2";

/// An open, bound session.
pub struct Session {
    stream: Stream,
    codec: LdapCodec,
    buf: BytesMut,
    next_id: i32,
    /// Messages read while waiting for another request's (requests may be in flight together,
    /// and the directory answers them in any order).
    early: HashMap<i32, VecDeque<LdapMsg>>,
}

impl Session {
    /// Connects to the configured endpoint, upgrades it if the grant says StartTLS, and binds.
    pub fn open(config: &Config) -> Result<Self, Error> {
        let stream = net::connect(&config.endpoint)?;
        let needs_tls = stream.needs_start_tls();
        let mut s = Session {
            stream,
            codec: LdapCodec::new(Some(MAX_MESSAGE), None),
            buf: BytesMut::with_capacity(64 * 1024),
            next_id: 1,
            early: HashMap::new(),
        };
        if needs_tls {
            s = s.start_tls()?;
        }
        let password = idgard_sdk::secret(&config.password_secret).ok_or_else(|| {
            Error::configuration(format!(
                "the connection has no secret `{}` (the bind password)",
                config.password_secret
            ))
        })?;
        if password.is_empty() {
            // An empty password makes an unauthenticated bind, which some servers accept.
            return Err(Error::configuration("the bind password is empty"));
        }
        if config.dialect == Dialect::ActiveDirectory && !s.stream.is_tls() {
            return Err(Error::configuration(
                "Active Directory refuses simple binds without TLS: grant the endpoint with \
                 `tls = \"direct\"` (LDAPS) or `tls = \"start-tls\"`",
            ));
        }
        s.bind(&config.bind_dn, &password)?;
        Ok(s)
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    fn start_tls(mut self) -> Result<Self, Error> {
        let op = LdapOp::ExtendedRequest(LdapExtendedRequest {
            name: OID_START_TLS.into(),
            value: None,
        });
        let id = self.send(op, vec![])?;
        let res = match self.receive(id)?.op {
            LdapOp::ExtendedResponse(r) => r.res,
            other => return Err(unexpected(&other)),
        };
        if res.code != LdapResultCode::Success {
            return Err(Error::unavailable(format!(
                "the directory refused StartTLS: {}",
                describe(&res)
            )));
        }
        self.stream = self.stream.start_tls()?;
        Ok(self)
    }

    fn bind(&mut self, dn: &str, password: &str) -> Result<(), Error> {
        let op = LdapOp::BindRequest(LdapBindRequest {
            dn: dn.to_owned(),
            cred: LdapBindCred::Simple(password.to_owned()),
        });
        let id = self.send(op, vec![])?;
        let res = match self.receive(id)?.op {
            LdapOp::BindResponse(r) => r.res,
            other => return Err(unexpected(&other)),
        };
        match res.code {
            LdapResultCode::Success => Ok(()),
            LdapResultCode::InvalidCredentials => Err(Error::denied(format!(
                "the directory refused the bind as `{dn}`: invalid credentials"
            ))),
            _ => Err(error(&format!("bind as `{dn}`"), &res)),
        }
    }

    /// Sends one request; returns its message id.
    pub(crate) fn send(&mut self, op: LdapOp, ctrl: Vec<LdapControl>) -> Result<i32, Error> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut out = BytesMut::new();
        self.codec
            .encode(LdapMsg::new_with_ctrls(id, op, ctrl), &mut out)
            .map_err(|e| Error::internal(format!("cannot encode an LDAP request: {e}")))?;
        self.stream.write_all(&out).map_err(lost)?;
        self.stream.flush().map_err(lost)?;
        Ok(id)
    }

    /// The next message for request `id`; messages for other requests in flight are kept for
    /// them, unsolicited notices are read.
    pub(crate) fn receive(&mut self, id: i32) -> Result<LdapMsg, Error> {
        if let Some(m) = self.early.get_mut(&id).and_then(VecDeque::pop_front) {
            return Ok(m);
        }
        loop {
            let decoded = self.codec.decode(&mut self.buf).map_err(|e| {
                Error::invalid_data(format!(
                    "the directory sent a message that does not parse: {e}"
                ))
            })?;
            match decoded {
                Some(m) if m.msgid == id => return Ok(m),
                Some(m) if m.msgid == 0 => {
                    if let LdapOp::ExtendedResponse(r) = m.op {
                        return Err(Error::unavailable(format!(
                            "the directory ended the session: {}",
                            describe(&r.res)
                        )));
                    }
                }
                Some(m) => self.early.entry(m.msgid).or_default().push_back(m),
                None => self.fill()?,
            }
        }
    }

    /// Reads what the directory sent next into the buffer.
    fn fill(&mut self) -> Result<(), Error> {
        if self.buf.len() > MAX_MESSAGE {
            return Err(Error::invalid_data(format!(
                "the directory sent a message over {} MiB",
                MAX_MESSAGE >> 20
            )));
        }
        let mut chunk = [0u8; 32 * 1024];
        let n = self.stream.read(&mut chunk).map_err(lost)?;
        if n == 0 {
            return Err(Error::unavailable("the directory closed the connection"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Hands the next message to `each`, read in place, if it is a search result entry for
    /// request `id`; whether it was one.
    fn next_entry(
        &mut self,
        id: i32,
        each: &mut impl FnMut(EntryRef<'_>) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        if self.early.get(&id).is_some_and(|q| !q.is_empty()) {
            return Ok(false);
        }
        loop {
            match entry::peek(&self.buf) {
                Peek::Incomplete => self.fill()?,
                Peek::Entry {
                    id: got,
                    len,
                    entry,
                } if got == id => {
                    each(entry)?;
                    self.buf.advance(len);
                    return Ok(true);
                }
                _ => return Ok(false),
            }
        }
    }

    /// Sends a request answered by one result.
    fn request(&mut self, op: LdapOp) -> Result<LdapResult, Error> {
        let id = self.send(op, vec![])?;
        match self.receive(id)?.op {
            LdapOp::ModifyResponse(r) | LdapOp::DelResponse(r) | LdapOp::ModifyDNResponse(r) => {
                Ok(r)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends an add without waiting for its answer (see [`Session::added`]); with `read_back`,
    /// asks the directory to answer with that attribute of the new entry (post-read control).
    pub fn send_add(
        &mut self,
        dn: &str,
        attributes: Vec<LdapPartialAttribute>,
        read_back: Option<&str>,
    ) -> Result<i32, Error> {
        let ctrl = match read_back {
            Some(attribute) => vec![LdapControl::Unknown {
                oid: OID_POST_READ.into(),
                criticality: false,
                value: Some(attribute_selection(attribute)?),
            }],
            None => vec![],
        };
        let op = LdapOp::AddRequest(ldap3_proto::proto::LdapAddRequest {
            dn: dn.to_owned(),
            attributes,
        });
        self.send(op, ctrl)
    }

    /// The answer to an add sent with [`Session::send_add`], and the entry read back, if any.
    pub fn added(&mut self, id: i32) -> Result<(LdapResult, Option<LdapSearchResultEntry>), Error> {
        let msg = self.receive(id)?;
        let LdapOp::AddResponse(res) = msg.op else {
            return Err(unexpected(&msg.op));
        };
        let read = msg.ctrl.into_iter().find_map(|c| match c {
            LdapControl::Unknown {
                oid,
                value: Some(v),
                ..
            } if oid == OID_POST_READ => read_entry(&v),
            _ => None,
        });
        Ok((res, read))
    }

    /// Changes an entry's attributes.
    pub fn modify(&mut self, dn: &str, changes: Vec<LdapModify>) -> Result<LdapResult, Error> {
        self.request(LdapOp::ModifyRequest(
            ldap3_proto::proto::LdapModifyRequest {
                dn: dn.to_owned(),
                changes,
            },
        ))
    }

    /// Deletes an entry.
    pub fn delete(&mut self, dn: &str) -> Result<LdapResult, Error> {
        self.request(LdapOp::DelRequest(dn.to_owned()))
    }

    /// Renames or moves an entry.
    pub fn modify_dn(
        &mut self,
        dn: &str,
        new_rdn: &str,
        new_superior: Option<String>,
    ) -> Result<LdapResult, Error> {
        self.request(LdapOp::ModifyDNRequest(LdapModifyDNRequest {
            dn: dn.to_owned(),
            newrdn: new_rdn.to_owned(),
            deleteoldrdn: true,
            new_superior,
        }))
    }

    /// Runs a search, a page at a time when `page_size` is given, handing each entry to `each`.
    pub fn search(
        &mut self,
        request: &LdapSearchRequest,
        page_size: Option<i32>,
        mut each: impl FnMut(LdapSearchResultEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.search_in_place(request, page_size, |e| each(e.owned()))
    }

    /// [`Session::search`], each entry read in place from the received bytes (an export's
    /// entries are written out as they come: nothing of them is kept).
    pub fn search_in_place(
        &mut self,
        request: &LdapSearchRequest,
        page_size: Option<i32>,
        mut each: impl FnMut(EntryRef<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            let ctrl = match page_size {
                Some(size) => vec![LdapControl::SimplePagedResults {
                    size: size.into(),
                    cookie: std::mem::take(&mut cookie),
                }],
                None => vec![],
            };
            let id = self.send(LdapOp::SearchRequest(request.clone()), ctrl)?;
            loop {
                if self.next_entry(id, &mut each)? {
                    continue;
                }
                let msg = self.receive(id)?;
                match msg.op {
                    LdapOp::SearchResultEntry(e) => each(EntryRef::of(&e))?,
                    LdapOp::SearchResultReference(_) => {}
                    LdapOp::SearchResultDone(res) => {
                        match res.code {
                            LdapResultCode::Success => {}
                            LdapResultCode::NoSuchObject => return Ok(()),
                            _ => {
                                return Err(error(
                                    &format!("search under `{}`", request.base),
                                    &res,
                                ));
                            }
                        }
                        cookie = msg
                            .ctrl
                            .into_iter()
                            .find_map(|c| match c {
                                LdapControl::SimplePagedResults { cookie, .. } => Some(cookie),
                                _ => None,
                            })
                            .unwrap_or_default();
                        break;
                    }
                    other => return Err(unexpected(&other)),
                }
            }
            if page_size.is_none() || cookie.is_empty() {
                return Ok(());
            }
        }
    }
}

/// A search of `base` and everything under it.
pub fn subtree(base: &str, filter: LdapFilter, attrs: Vec<String>) -> LdapSearchRequest {
    LdapSearchRequest {
        base: base.to_owned(),
        scope: LdapSearchScope::Subtree,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter,
        attrs,
    }
}

/// A read of the entry at `dn` alone (`1.1`: no attributes).
pub fn entry_at(dn: &str, attrs: Vec<String>) -> LdapSearchRequest {
    LdapSearchRequest {
        scope: LdapSearchScope::Base,
        ..subtree(dn, LdapFilter::Present("objectClass".into()), attrs)
    }
}

/// What a content synchronisation (RFC 4533) refresh reports.
pub enum Sync {
    /// An entry added or changed since the cookie.
    Changed(LdapSearchResultEntry),
    /// Entries deleted since the cookie, by entryUUID.
    Deleted(Vec<String>),
    /// The directory answered with its present phase (it cannot list deletions since the
    /// cookie, say after a restart): the cookie is of no use any more.
    Present,
}

impl Session {
    /// A refresh-only content synchronisation from `cookie` (none: from now, which only yields a
    /// cookie when the search matches nothing); returns the cookie to start from next time.
    pub fn sync_refresh(
        &mut self,
        request: &LdapSearchRequest,
        cookie: Option<Vec<u8>>,
        mut each: impl FnMut(Sync) -> Result<(), Error>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let ctrl = vec![LdapControl::SyncRequest {
            criticality: true,
            mode: SyncRequestMode::RefreshOnly,
            cookie,
            reload_hint: false,
        }];
        let id = self.send(LdapOp::SearchRequest(request.clone()), ctrl)?;
        let mut next = None;
        loop {
            let msg = self.receive(id)?;
            match msg.op {
                LdapOp::SearchResultEntry(e) => {
                    let state = msg.ctrl.into_iter().find_map(|c| match c {
                        LdapControl::SyncState {
                            state, entry_uuid, ..
                        } => Some((state, entry_uuid)),
                        _ => None,
                    });
                    match state {
                        Some((SyncStateValue::Delete, uuid)) => {
                            each(Sync::Deleted(vec![uuid.hyphenated().to_string()]))?
                        }
                        Some((SyncStateValue::Present, _)) => each(Sync::Present)?,
                        _ => each(Sync::Changed(e))?,
                    }
                }
                LdapOp::IntermediateResponse(r) => match r {
                    LdapIntermediateResponse::SyncInfoIdSet {
                        cookie,
                        refresh_deletes,
                        syncuuids,
                    } => {
                        next = cookie.or(next);
                        if refresh_deletes {
                            each(Sync::Deleted(
                                syncuuids
                                    .iter()
                                    .map(|u| u.hyphenated().to_string())
                                    .collect(),
                            ))?;
                        } else if !syncuuids.is_empty() {
                            each(Sync::Present)?;
                        }
                    }
                    LdapIntermediateResponse::SyncInfoNewCookie { cookie } => next = Some(cookie),
                    LdapIntermediateResponse::SyncInfoRefreshDelete { cookie, .. } => {
                        next = cookie.or(next)
                    }
                    LdapIntermediateResponse::SyncInfoRefreshPresent { cookie, .. } => {
                        next = cookie.or(next);
                        each(Sync::Present)?;
                    }
                    LdapIntermediateResponse::Raw { .. } => {}
                },
                LdapOp::SearchResultReference(_) => {}
                LdapOp::SearchResultDone(res) => {
                    if res.code == LdapResultCode::EsyncRefreshRequired {
                        each(Sync::Present)?;
                        return Ok(None);
                    }
                    if res.code != LdapResultCode::Success {
                        return Err(error(
                            &format!("synchronisation of `{}`", request.base),
                            &res,
                        ));
                    }
                    for c in msg.ctrl {
                        if let LdapControl::SyncDone { cookie, .. } = c {
                            next = cookie.or(next);
                        }
                    }
                    return Ok(next);
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
}

/// The value of a post-read control: `SEQUENCE OF LDAPString`, one attribute.
fn attribute_selection(attribute: &str) -> Result<Vec<u8>, Error> {
    use ldap3_lber::common::TagClass;
    use ldap3_lber::structures::{ASNTag, OctetString, Sequence, Tag};
    use ldap3_lber::universal::Types;
    let tag = Tag::Sequence(Sequence {
        class: TagClass::Universal,
        id: Types::Sequence as u64,
        inner: vec![Tag::OctetString(OctetString {
            inner: attribute.as_bytes().to_vec(),
            ..Default::default()
        })],
    });
    let mut out = BytesMut::new();
    ldap3_lber::write::encode_into(&mut out, tag.into_structure())
        .map_err(|e| Error::internal(format!("cannot encode a control: {e}")))?;
    Ok(out.to_vec())
}

/// The entry of a post-read control's value (a `SearchResultEntry`).
fn read_entry(value: &[u8]) -> Option<LdapSearchResultEntry> {
    let (_, tag) = ldap3_lber::parse::Parser::new(16).parse(value).ok()?;
    match LdapOp::try_from(tag).ok()? {
        LdapOp::SearchResultEntry(e) => Some(e),
        _ => None,
    }
}

fn lost(e: std::io::Error) -> Error {
    Error::unavailable(format!("the connection to the directory failed: {e}"))
}

pub(crate) fn unexpected(op: &LdapOp) -> Error {
    let name = format!("{op:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or("?");
    Error::invalid_data(format!("the directory answered with an unexpected {name}"))
}

/// `code (name): message` of a result.
pub fn describe(res: &LdapResult) -> String {
    let code = res.code.clone() as i64;
    let mut s = format!("result {code} ({:?})", res.code);
    if !res.message.is_empty() {
        s.push_str(": ");
        s.push_str(&res.message);
    }
    s
}

/// Whether a result says "try again later" rather than "this will never work".
pub fn transient(code: &LdapResultCode) -> bool {
    matches!(
        code,
        LdapResultCode::Busy
            | LdapResultCode::Unavailable
            | LdapResultCode::TimeLimitExceeded
            | LdapResultCode::AdminLimitExceeded
            | LdapResultCode::Other
    )
}

/// A failed operation as the contract's error kinds see it.
pub fn error(what: &str, res: &LdapResult) -> Error {
    let message = format!("{what}: {}", describe(res));
    match res.code {
        LdapResultCode::InvalidCredentials
        | LdapResultCode::InsufficentAccessRights
        | LdapResultCode::InappropriateAuthentication
        | LdapResultCode::StrongerAuthRequired
        | LdapResultCode::ConfidentialityRequired => Error::denied(message),
        ref c if transient(c) => Error::unavailable(message),
        LdapResultCode::InvalidDNSyntax | LdapResultCode::UndefinedAttributeType => {
            Error::configuration(message)
        }
        _ => Error::internal(message),
    }
}
