//! Request bodies under the door's bounds (a size, and a time from the request's arrival),
//! and response bodies that hold the request's place until they are sent.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    #[error("the request body is over the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    TooSlow(Duration),
}

impl BodyFault {
    /// The fault behind a body error, if the door cut the body off.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<BodyFault> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(f) = err.downcast_ref::<BodyFault>() {
                return Some(*f);
            }
            cur = err.source();
        }
        None
    }
}

/// Set when the door cuts a request's body off, for layers that only see an error
/// message (tonic's decoder): a request extension.
#[derive(Debug, Default)]
pub struct FaultCell(AtomicU8);

impl FaultCell {
    fn set(&self, f: BodyFault) {
        let v = match f {
            BodyFault::TooLarge(_) => 1,
            BodyFault::TooSlow(_) => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// Whether the body was too large (`Some(true)`) or too slow (`Some(false)`).
    pub fn too_large(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
}

/// A request body that fails with [`BodyFault`] past `limit` bytes, or when it has not
/// ended by `deadline`. The timer is only set when the body has to be waited for.
pub(super) struct Guarded<B> {
    inner: B,
    limit: usize,
    read: usize,
    deadline: Instant,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    fault: Option<Arc<FaultCell>>,
    failed: bool,
}

impl<B: Body> Guarded<B> {
    pub(super) fn new(
        inner: B,
        limit: usize,
        (arrived, timeout): (Instant, Duration),
        fault: Option<Arc<FaultCell>>,
    ) -> Guarded<B> {
        Guarded {
            inner,
            limit,
            read: 0,
            deadline: arrived + timeout,
            timeout,
            timer: None,
            fault,
            failed: false,
        }
    }

    fn fail(&mut self, f: BodyFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        if let Some(cell) = &self.fault {
            cell.set(f);
        }
        Poll::Ready(Some(Err(Box::new(f))))
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        // A declared length over the limit is refused before a byte is read.
        if this.read == 0 && this.inner.size_hint().lower() > this.limit as u64 {
            return this.fail(BodyFault::TooLarge(this.limit));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len();
                    if this.read > this.limit {
                        return this.fail(BodyFault::TooLarge(this.limit));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyFault::TooSlow(this.timeout));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps `held` (the request's in-flight place, its connection's
/// activity mark) until the body is sent or dropped.
pub(super) struct Holding<B, H> {
    pub(super) inner: B,
    pub(super) _held: H,
}

impl<B, H> Body for Holding<B, H>
where
    B: Body + Unpin,
    H: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_limit_or_too_slow_fails_with_its_fault() {
        let fault = Arc::new(FaultCell::default());
        let body = http_body_util::Full::new(Bytes::from(vec![0u8; 100]));
        let guarded = Guarded::new(
            body,
            10,
            (Instant::now(), Duration::from_secs(1)),
            Some(fault.clone()),
        );
        let e = guarded.collect().await.err().unwrap();
        assert_eq!(BodyFault::of(e.as_ref()), Some(BodyFault::TooLarge(10)));
        assert_eq!(fault.too_large(), Some(true));

        // A body that never ends: the deadline cuts it off.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let fault = Arc::new(FaultCell::default());
        let guarded = Guarded::new(
            stream,
            10,
            (Instant::now(), Duration::from_secs(5)),
            Some(fault.clone()),
        );
        let started = Instant::now();
        let e = guarded.collect().await.err().unwrap();
        assert_eq!(
            BodyFault::of(e.as_ref()),
            Some(BodyFault::TooSlow(Duration::from_secs(5)))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(fault.too_large(), Some(false));

        let fine = Guarded::new(
            http_body_util::Full::new(Bytes::from_static(b"ok")),
            10,
            (Instant::now(), Duration::from_secs(1)),
            None,
        );
        assert_eq!(fine.collect().await.unwrap().to_bytes(), "ok");
    }
}
