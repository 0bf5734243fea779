//! The door's per-request checks, ahead of the router: who the source is (believing
//! `X-Forwarded-For` only from trusted proxies), whether it is shut out or over its budget,
//! whether the request head is within bounds and the listener has room; then the request
//! goes on with its body bounded, and an answer that says the credentials were not
//! recognised counts against its source.

use super::body::{FaultCell, Guarded, Holding};
use super::sources::{SourceKey, listed};
use super::{Door, Listener, Reason};
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::authenticate::ClientCertificate;
use axum::Router;
use axum::body::Body;
use futures::future::{BoxFuture, Either, Ready, ready};
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

/// The header a REST caller sets to bound its call, in milliseconds: the REST twin of
/// `grpc-timeout`.
pub const REQUEST_TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// What a connection's watchdog needs to know, kept without reading a clock per request:
/// requests in progress, and a count of request events (each start and each end) that the
/// watchdog compares from one tick to the next.
pub(super) struct Activity {
    active: AtomicUsize,
    events: AtomicU64,
}

/// The watchdog's own view of a connection: when it opened, and since when nothing happened.
pub(super) struct Watch {
    opened: tokio::time::Instant,
    seen_events: u64,
    quiet_since: tokio::time::Instant,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            active: AtomicUsize::new(0),
            events: AtomicU64::new(0),
        }
    }

    fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn seen(&self) -> bool {
        self.events.load(Ordering::Relaxed) > 0
    }
}

impl Watch {
    pub(super) fn new() -> Watch {
        let now = tokio::time::Instant::now();
        Watch {
            opened: now,
            seen_events: 0,
            quiet_since: now,
        }
    }

    /// Whether the connection should close: no request head within `header` of opening,
    /// or no request in progress for `idle`.
    pub(super) fn expired(
        &mut self,
        a: &Activity,
        header: Duration,
        idle: Duration,
    ) -> Option<Expiry> {
        let now = tokio::time::Instant::now();
        let events = a.events.load(Ordering::Relaxed);
        if events == 0 {
            return (now.duration_since(self.opened) >= header).then_some(Expiry::NoRequestHead);
        }
        if events != self.seen_events {
            self.seen_events = events;
            self.quiet_since = now;
            return None;
        }
        let idle_for = now.duration_since(self.quiet_since);
        (a.active.load(Ordering::Relaxed) == 0 && idle_for >= idle).then_some(Expiry::Idle)
    }
}

/// Why a connection's time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    NoRequestHead,
    Idle,
}

/// A request's places: in its connection's activity and its listener's in-flight count,
/// given back when its answer has been sent.
struct Place {
    activity: Arc<Activity>,
    door: Arc<Door>,
    listener: Listener,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.activity.active.fetch_sub(1, Ordering::Relaxed);
        self.activity.event();
        self.door.in_flight[self.listener.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The service one connection's requests go through.
#[derive(Clone)]
pub(super) struct DoorService {
    pub(super) door: Arc<Door>,
    pub(super) listener: Listener,
    pub(super) peer: SocketAddr,
    pub(super) certificate: Option<Arc<ClientCertificate>>,
    pub(super) activity: Arc<Activity>,
    pub(super) router: Router,
}

type Answer = Result<Response<Body>, Infallible>;

impl hyper::service::Service<Request<Incoming>> for DoorService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, BoxFuture<'static, Answer>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let activity = &self.activity;
        activity.event();
        let door = &self.door;
        let ip = client_ip(self.peer.ip(), &req, &door.config.trusted_proxies);
        let source = SourceKey::of(ip);
        let exempt = door.exempt(ip);
        let grpc = crate::transport::is_grpc(req.headers());
        let refuse = |reason: Reason, error: LookupError| {
            door.refused(self.listener, source, reason);
            Either::Left(ready(Ok(crate::transport::refusal(
                grpc,
                &error,
                &crate::transport::request_id(),
            ))))
        };
        // 1. a back-off after failed authentications, then the source's budget.
        if !exempt && let Err(r) = door.sources.admit(source) {
            let (reason, message) = if r.backoff {
                (
                    Reason::AuthBackoff,
                    format!(
                        "too many failed authentications from {source}: every request from it is refused for {} s",
                        whole_seconds(r.retry_after)
                    ),
                )
            } else {
                (
                    Reason::SourceBudget,
                    format!(
                        "too many requests from {source} (door.source_rate {}); retry after {} s",
                        door.config.source_rate,
                        whole_seconds(r.retry_after)
                    ),
                )
            };
            return refuse(
                reason,
                LookupError {
                    retry_after: Some(r.retry_after),
                    ..LookupError::new(ErrorCode::RateLimited, message)
                },
            );
        }
        // 2. the request head's size.
        if let Some(message) = head_too_large(&req, &door.config) {
            return refuse(
                Reason::HeadersTooLarge,
                LookupError::new(ErrorCode::HeadersTooLarge, message),
            );
        }
        // 3. room on the listener.
        let l = self.listener.index();
        let max = door.limits(self.listener).max_in_flight;
        if door.in_flight[l].fetch_add(1, Ordering::Relaxed) >= max {
            door.in_flight[l].fetch_sub(1, Ordering::Relaxed);
            return refuse(
                Reason::Overloaded,
                LookupError {
                    retry_after: Some(Duration::from_secs(1)),
                    ..LookupError::new(
                        ErrorCode::Overloaded,
                        format!("the gateway is answering {max} requests already; retry shortly"),
                    )
                },
            );
        }
        activity.active.fetch_add(1, Ordering::Relaxed);
        let place = Place {
            activity: activity.clone(),
            door: door.clone(),
            listener: self.listener,
        };
        // 4. on, with the body bounded. gRPC's decoder only sees an error message, so it
        //    gets a cell that says why the body was cut off.
        let fault = grpc.then(|| Arc::new(FaultCell::default()));
        let mut req = req.map(|body| {
            if http_body::Body::is_end_stream(&body) {
                // Nothing to wait for or to bound.
                return Body::new(body);
            }
            // gRPC frames its message: room for the frame header, so that the decoder's
            // own limit (the same number) is the one that speaks.
            let limit = door.config.max_body_bytes + if grpc { 1024 } else { 0 };
            let arrived = tokio::time::Instant::now();
            Body::new(Guarded::new(
                body,
                limit,
                (arrived, door.config.body_timeout),
                fault.clone(),
            ))
        });
        if let Some(fault) = fault {
            req.extensions_mut().insert(fault);
        }
        if let Some(c) = &self.certificate {
            req.extensions_mut().insert(c.clone());
        }
        let (router, door, listener) = (self.router.clone(), door.clone(), self.listener);
        Either::Right(Box::pin(async move {
            let Ok(response) = router.oneshot(req).await;
            if not_authenticated(&response) {
                door.refused(listener, source, Reason::Unauthenticated);
                if !exempt && let Some(lasts) = door.sources.failed(source) {
                    tracing::warn!(
                        listener = listener.as_str(),
                        source = %source,
                        backoff_ms = lasts.as_millis() as u64,
                        "too many failed authentications: the source is shut out"
                    );
                }
            }
            Ok(response.map(|body| {
                Body::new(Holding {
                    inner: body,
                    _held: place,
                })
            }))
        }))
    }
}

fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Whether an answer says the credentials named no one: 401, or gRPC UNAUTHENTICATED.
fn not_authenticated(response: &Response<Body>) -> bool {
    response.status() == http::StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes() == b"16")
}

/// The request head over `max_header_bytes` (names, values and the target) or
/// `max_headers` fields: what to tell the caller.
fn head_too_large(req: &Request<Incoming>, c: &super::DoorConfig) -> Option<String> {
    let h = req.headers();
    if h.len() > c.max_headers {
        return Some(format!(
            "{} header fields, over the limit of {}",
            h.len(),
            c.max_headers
        ));
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let bytes: usize = target
        + h.iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum::<usize>();
    (bytes > c.max_header_bytes).then(|| {
        format!(
            "the request head is {bytes} bytes, over the limit of {}",
            c.max_header_bytes
        )
    })
}

/// The client's address: the peer's, or (from a trusted proxy) the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
fn client_ip<B>(
    peer: IpAddr,
    req: &Request<B>,
    trusted: &[crate::transport::door::Cidr],
) -> IpAddr {
    if trusted.is_empty() || !listed(trusted, peer) {
        return peer;
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if listed(trusted, ip) => continue,
            Ok(ip) => return ip,
            // A hop that is not an address: the proxy's word ends there.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::door::Cidr;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let req = Request::builder()
            .header("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1")
            .body(())
            .unwrap();
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &req, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the nearest hop that is not a trusted proxy"
        );
        assert_eq!(client_ip(stranger, &req, &trusted), stranger);
        assert_eq!(client_ip(proxy, &req, &[]), proxy);
        let bare = Request::builder().body(()).unwrap();
        assert_eq!(client_ip(proxy, &bare, &trusted), proxy);
        let junk = Request::builder()
            .header("x-forwarded-for", "not-an-address")
            .body(())
            .unwrap();
        assert_eq!(client_ip(proxy, &junk, &trusted), proxy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_expires_without_a_request_head_or_when_idle() {
        let (header, idle) = (Duration::from_secs(2), Duration::from_secs(10));
        let a = Activity::new();
        let mut w = Watch::new();
        assert_eq!(w.expired(&a, header, idle), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(w.expired(&a, header, idle), Some(Expiry::NoRequestHead));

        let b = Activity::new();
        let mut w = Watch::new();
        b.event();
        b.active.fetch_add(1, Ordering::Relaxed);
        assert_eq!(w.expired(&b, header, idle), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(w.expired(&b, header, idle), None, "a request in progress");
        b.active.fetch_sub(1, Ordering::Relaxed);
        b.event();
        assert_eq!(w.expired(&b, header, idle), None, "it just ended");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(w.expired(&b, header, idle), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(w.expired(&b, header, idle), Some(Expiry::Idle));
    }
}
