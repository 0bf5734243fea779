//! Statuses tonic answers by itself, before a handler runs (a message over the limit or
//! one that does not decode, a body the door cut off, a method the service lacks), put in
//! the documented form: the stable code with its ErrorInfo, `unauthenticated` first for a
//! caller whose credentials name no one, and one audit record for a known caller.

use super::status;
use crate::core::live::Live;
use crate::core::request::{Caller, ClientCertificate};
use crate::domain::error::{ErrorCode, LookupError};
use crate::transport::door::FaultCell;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;

/// `inner` (a generated gRPC server) with its own refusals in the documented form.
#[derive(Clone)]
pub struct Refusals<S> {
    inner: S,
    live: Arc<Live>,
    max_message_bytes: usize,
}

impl<S> Refusals<S> {
    pub fn new(inner: S, live: Arc<Live>, max_message_bytes: usize) -> Refusals<S> {
        Refusals {
            inner,
            live,
            max_message_bytes,
        }
    }
}

impl<S: NamedService> NamedService for Refusals<S> {
    const NAME: &'static str = S::NAME;
}

/// What is needed to name the caller once the request is gone.
struct Asked {
    authorization: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    certificate: Option<Arc<ClientCertificate>>,
    fault: Option<Arc<FaultCell>>,
    path: String,
}

impl Asked {
    fn caller(&self) -> Caller {
        fn text(v: &Option<HeaderValue>) -> Option<&str> {
            v.as_ref().and_then(|v| v.to_str().ok())
        }
        crate::transport::caller(
            text(&self.authorization),
            text(&self.traceparent),
            self.certificate.clone(),
            "grpc",
        )
    }
}

impl<S> tower::Service<Request<Body>> for Refusals<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let asked = Asked {
            authorization: req.headers().get(http::header::AUTHORIZATION).cloned(),
            traceparent: req.headers().get("traceparent").cloned(),
            certificate: req.extensions().get::<Arc<ClientCertificate>>().cloned(),
            fault: req.extensions().get::<Arc<FaultCell>>().cloned(),
            path: req.uri().path().chars().take(100).collect(),
        };
        let (live, max) = (self.live.clone(), self.max_message_bytes);
        let call = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = call.await;
            let Some(code) = own_status(&response) else {
                return Ok(response);
            };
            let message = response
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode_lossy)
                .unwrap_or_default();
            let error = documented(code, &message, &asked, max);
            let caller = asked.caller();
            let error = live.current().refuse(&caller, "request", error).await;
            Ok(status(&error, &caller.request_id).into_http())
        })
    }
}

/// The status of a trailers-only answer that carries no details: one tonic made itself.
fn own_status(response: &Response<Body>) -> Option<tonic::Code> {
    let h = response.headers();
    let code = h.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    (code != 0 && !h.contains_key("grpc-status-details-bin")).then(|| tonic::Code::from_i32(code))
}

fn documented(code: tonic::Code, message: &str, asked: &Asked, max: usize) -> LookupError {
    let cut = asked.fault.as_ref().and_then(|f| f.too_large());
    match (cut, code) {
        (Some(true), _) | (None, tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) => {
            LookupError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request message is over the limit of {max} bytes (door.max_body_bytes)"
                ),
            )
        }
        (Some(false), _) => LookupError::new(
            ErrorCode::RequestTimeout,
            "the request message did not arrive within door.body_timeout_ms",
        ),
        (None, tonic::Code::Unimplemented) => LookupError::new(
            ErrorCode::UnknownRoute,
            format!(
                "no gRPC method {} here: the services are listed by server reflection",
                asked.path
            ),
        ),
        (None, _) => LookupError::new(
            ErrorCode::InvalidRequest,
            format!(
                "the request message does not decode: {}",
                message.chars().take(200).collect::<String>()
            ),
        ),
    }
}

/// `grpc-message` is percent-encoded; what does not decode is shown as sent.
fn percent_decode_lossy(m: &str) -> String {
    crate::transport::percent_decode(m).unwrap_or_else(|| m.to_owned())
}
