//! A refused request's body is read to its end (within bounds) before the connection moves on.
//!
//! When a handler answers before reading the whole body (a body over the limit, a bad token on an
//! upload), dropping the rest would make the server close the connection with bytes unread, and
//! the client, still sending, sees the connection reset instead of the answer: most HTTP clients
//! send the whole body before they read. So a body dropped unfinished is read on, in the
//! background, and thrown away: at most [`DRAIN_BYTES`], for at most [`DRAIN_TIME`], and only
//! while bytes keep coming ([`DRAIN_IDLE`]); past that the connection is closed as before.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use futures_util::StreamExt as _;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Most bytes read on and thrown away after a refusal.
pub const DRAIN_BYTES: usize = 16 << 20;
/// Longest time spent reading on.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes while reading on (a client that went quiet, or whose body
/// timed out, is not waited for).
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Wraps a request's body so that it is read to its end when dropped unfinished.
pub async fn lingering(req: Request) -> Request {
    req.map(|body| Body::new(Lingering(Some(body))))
}

struct Lingering(Option<Body>);

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(body) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Read to its end (or broken): nothing to read on.
            self.0 = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.0.take().filter(|b| !b.is_end_stream()) else {
            return;
        };
        // A body announced larger than what would be read on is cut at once.
        if body.size_hint().lower() > DRAIN_BYTES as u64 {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(DRAIN_IDLE, data.next()).await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}
