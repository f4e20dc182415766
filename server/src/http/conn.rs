//! Connections: how many may be open (in all, per address, with room kept for the addresses
//! agents sign in from), and how long one may hold the server while doing nothing: before its
//! first request, between requests, or while not reading an answer. A request under way (a
//! held poll, a synchronize run on the server) is never cut by these; a request body that
//! stops is, by the body timeout of the router. What a limit refuses or closes is logged,
//! at most once per period.

use axum::http::Request;
use axum_server::accept::Accept;
use std::collections::{HashMap, HashSet};
use std::future::{Future, Ready};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Descriptors kept for the database, files and the listener when fitting the cap.
const DESCRIPTORS_KEPT: u64 = 64;
/// Addresses remembered as agents' at most (then forgotten all at once).
const AGENT_ADDRESSES_MAX: usize = 65_536;
/// Warnings of one kind at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max: usize,
    /// Open connections from one address at most (agents' addresses excepted).
    pub per_peer: usize,
    /// From the connection's start to its first request's header.
    pub first_request: Duration,
    /// No request under way and no byte moving; or an answer not read.
    pub idle: Duration,
}

impl Limits {
    /// Connections kept for agents' addresses.
    fn reserve(&self) -> usize {
        self.max / 8
    }

    /// Lowers `max` to what the process's descriptor limit allows (raised to its hard limit
    /// first), with a warning when it had to.
    pub fn fitted_to_descriptors(mut self) -> Self {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut nofile = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (nofile.current, nofile.maximum)
            && soft < hard
        {
            nofile.current = Some(hard);
            let _ = setrlimit(Resource::Nofile, nofile);
        }
        if let Some(soft) = getrlimit(Resource::Nofile).current {
            let room = soft.saturating_sub(DESCRIPTORS_KEPT).max(16) as usize;
            if room < self.max {
                tracing::warn!(
                    descriptors = soft,
                    "the descriptor limit allows {room} open connections, fewer than \
                     limits.connections = {}: serving {room} at most",
                    self.max
                );
                self.max = room;
            }
        }
        self.per_peer = self.per_peer.min(self.max);
        self
    }
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// The open connections, shared by the listener and the handlers.
pub struct Connections {
    limits: Limits,
    open: Mutex<Open>,
    refused: AtomicU64,
    silent: AtomicU64,
    pace: Pace,
}

/// Lets a kind of warning through at most once per period.
#[derive(Default)]
pub struct Pace(Mutex<HashMap<&'static str, Instant>>);

impl Pace {
    /// Whether a warning of this kind may be logged now.
    pub fn ready(&self, kind: &'static str) -> bool {
        let now = Instant::now();
        let mut warned = self.0.lock().expect("pace");
        match warned.get(kind) {
            Some(at) if now < *at + WARN_EVERY => false,
            _ => {
                warned.insert(kind, now);
                true
            }
        }
    }
}

#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
    agents: HashSet<IpAddr>,
}

impl Connections {
    /// No connection yet.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::default(),
            refused: AtomicU64::new(0),
            silent: AtomicU64::new(0),
            pace: Pace::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// An agent signed in from `ip`: its connections may use the reserve and are not
    /// counted against the limit per address.
    pub fn agent_at(&self, ip: IpAddr) {
        let mut open = self.open.lock().expect("connections");
        if open.agents.len() >= AGENT_ADDRESSES_MAX {
            open.agents.clear();
        }
        open.agents.insert(ip);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("connections").total
    }

    /// Takes a place for a connection from `ip`, or says which limit refuses it.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().expect("connections");
        let agent = open.agents.contains(&ip);
        let from_peer = open.by_peer.get(&ip).copied().unwrap_or(0);
        let l = &self.limits;
        if open.total >= l.max {
            return Err("the limit of open connections");
        }
        if !agent && open.total >= l.max - l.reserve() {
            return Err("the limit of open connections (the rest is kept for agents)");
        }
        if !agent && from_peer >= l.per_peer {
            return Err("the limit of connections from one address");
        }
        open.total += 1;
        *open.by_peer.entry(ip).or_default() += 1;
        Ok(Slot {
            conns: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().expect("connections");
        open.total -= 1;
        if let Some(n) = open.by_peer.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&ip);
            }
        }
    }

    fn refused(&self, ip: IpAddr, why: &str) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if self.pace.ready("refused") {
            tracing::warn!(
                peer = %ip,
                open = self.open(),
                refused = n,
                "refusing connections: {why} is reached (limits.connections, \
                 limits.connections_per_peer)"
            );
        }
    }

    fn silent(&self, ip: IpAddr) {
        let n = self.silent.fetch_add(1, Ordering::Relaxed) + 1;
        if self.pace.ready("silent") {
            tracing::warn!(
                peer = %ip,
                closed = n,
                "closed a connection that sent no request within {} s \
                 (limits.header_timeout_s)",
                self.limits.first_request.as_secs()
            );
        }
    }
}

/// A connection's place; given back when the connection ends.
struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.release(self.ip);
    }
}

/// What a connection is doing, seen from its requests.
#[derive(Default)]
struct Activity {
    started: AtomicBool,
    in_flight: AtomicUsize,
}

/// The listener's first step (before TLS): admits a connection or refuses it, and watches
/// it for the rest of its life.
#[derive(Clone)]
pub struct Guard(pub Arc<Connections>);

impl<S> Accept<TcpStream, S> for Guard {
    type Stream = Guarded<TcpStream>;
    type Service = Tracked<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.admit(stream, service))
    }
}

impl Guard {
    fn admit<S>(
        &self,
        stream: TcpStream,
        service: S,
    ) -> io::Result<(Guarded<TcpStream>, Tracked<S>)> {
        let ip = stream.peer_addr()?.ip();
        let slot = self.0.admit(ip).map_err(|why| {
            self.0.refused(ip, why);
            io::Error::other(why)
        })?;
        stream.set_nodelay(true)?;
        let activity = Arc::new(Activity::default());
        let now = Instant::now();
        let stream = Guarded {
            inner: stream,
            activity: activity.clone(),
            limits: self.0.limits,
            opened: now,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + self.0.limits.first_request)),
            slot,
        };
        Ok((
            stream,
            Tracked {
                inner: service,
                activity,
                peer: Peer(ip),
            },
        ))
    }
}

/// A connection's stream, closed when it has been quiet too long.
pub struct Guarded<T> {
    inner: T,
    activity: Arc<Activity>,
    limits: Limits,
    opened: Instant,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    slot: Slot,
}

impl<T> Guarded<T> {
    /// Whether the connection waited too long; arms the timer otherwise. A read waiting
    /// while a request is under way is not a wait of the client's.
    fn expired(&mut self, cx: &mut Context<'_>, writing: bool) -> bool {
        let started = self.activity.started.load(Ordering::Acquire);
        if started && !writing && self.activity.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let deadline = if started {
            self.last + self.limits.idle
        } else {
            self.opened + self.limits.first_request
        };
        if Instant::now() >= deadline {
            if started {
                tracing::debug!(peer = %self.slot.ip, "closed a quiet connection");
            } else {
                self.slot.conns.silent(self.slot.ip);
            }
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        let _ = self.timer.as_mut().poll(cx);
        false
    }

    fn timed_out<R>(&mut self, cx: &mut Context<'_>, writing: bool) -> Poll<io::Result<R>> {
        if self.expired(cx, writing) {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was quiet too long",
            )))
        } else {
            Poll::Pending
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.timed_out(cx, false),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.timed_out(cx, true),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.timed_out(cx, true),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.timed_out(cx, true),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service: counts its requests under way and tells handlers the peer.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    peer: Peer,
}

/// A request under way; counted until its answer is ready.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        self.activity.started.store(true, Ordering::Release);
        let busy = Busy(self.activity.clone());
        request.extensions_mut().insert(self.peer);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    }
}
