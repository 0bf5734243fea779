//! The accept loop both listeners share, plaintext or TLS: connection caps at accept, the
//! TLS handshake's timeout, HTTP/1.1 and HTTP/2 under the door's limits, and a watchdog
//! that closes a connection that sends no request head in time or sits idle.

use super::service::{Activity, DoorService, Expiry, Watch};
use super::sources::SourceKey;
use super::{Door, DoorConfig, Listener, Reason};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The descriptors this process may hold open (its soft limit), as found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    pub limit: Option<u64>,
}

impl Descriptors {
    /// The listeners' connection caps (lookup, admin): as configured, lowered so that the
    /// connections and the reserve fit under the limit.
    pub(super) fn caps(&self, c: &DoorConfig) -> [usize; 2] {
        let (lookup, admin) = (c.lookup.max_connections, c.admin.max_connections);
        let Some(limit) = self.limit else {
            return [lookup, admin];
        };
        let room = limit.saturating_sub(c.descriptor_reserve) as usize;
        let admin = admin.min(room / 2).max(1);
        let lookup = lookup.min(room.saturating_sub(admin)).max(1);
        [lookup, admin]
    }
}

/// Raises the soft limit on open descriptors to the hard limit (Linux), and says what it
/// is now.
pub fn raise_descriptor_limit() -> Descriptors {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => limit = raised,
                Err(e) => tracing::warn!(error = %e, "the descriptor limit could not be raised"),
            }
        }
        Descriptors {
            limit: limit.current,
        }
    }
    #[cfg(not(target_os = "linux"))]
    Descriptors { limit: None }
}

/// One connection's hold on its listener's and its source's counts.
struct Held {
    door: Arc<Door>,
    listener: Listener,
    counted: Option<SourceKey>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let l = self.listener.index();
        self.door.open[l].fetch_sub(1, Ordering::Relaxed);
        self.door.metrics.connections[l].fetch_sub(1, Ordering::Relaxed);
        if let Some(k) = self.counted {
            self.door.sources.disconnect(k, l);
        }
    }
}

/// hyper's own HTTP/1.1 bounds when left alone.
const HYPER_MAX_HEADERS: usize = 100;
const HYPER_MAX_BUF: usize = 400 * 1024;

/// How long a connection told to close may take to finish what it is answering.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (over TLS when `tls` is set) until `stop` turns true;
/// then stops accepting, asks each connection to close once its requests are answered, and
/// returns when they have.
pub fn serve(
    door: Arc<Door>,
    which: Listener,
    listener: TcpListener,
    tls: Option<Arc<crate::transport::tls::TlsSlot>>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let builder = Arc::new(builder(&door.config));
    tokio::spawn(async move {
        let (open_tx, _) = watch::channel(());
        let mut last_accept_warning: Option<tokio::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning, and say
                    // so once a second at most.
                    if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(listener = which.as_str(), error = %e, "accept failed");
                        last_accept_warning = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Some(held) = admit(&door, which, peer.ip()) else {
                drop(tcp);
                continue;
            };
            // Answers leave at once: no Nagle delay on a response written in pieces.
            let _ = tcp.set_nodelay(true);
            let connection = Connection {
                door: door.clone(),
                which,
                peer,
                router: router.clone(),
                builder: builder.clone(),
                stop: stop.clone(),
                _open: open_tx.subscribe(),
                _held: held,
            };
            // Each connection takes the TLS configuration current when it arrives: a
            // certificate replaced meanwhile serves new connections, old ones keep theirs.
            let acceptor = tls
                .as_ref()
                .map(|slot| tokio_rustls::TlsAcceptor::from(slot.current()));
            tokio::spawn(connection.run(tcp, acceptor));
        }
        drop(listener);
        // Every connection task holds a receiver; all have ended when none is left.
        open_tx.closed().await;
    })
}

/// Counts a new connection in, or refuses it: over the listener's cap, or the source's.
fn admit(door: &Arc<Door>, which: Listener, ip: std::net::IpAddr) -> Option<Held> {
    let l = which.index();
    let source = SourceKey::of(ip);
    if door.open[l].load(Ordering::Relaxed) >= door.caps[l] {
        door.refused(which, source, Reason::Connections);
        return None;
    }
    let counted = if door.exempt(ip) {
        None
    } else {
        let cap = door.limits(which).max_connections_per_source;
        match door.sources.connect(source, l, cap) {
            Some(k) => Some(k),
            None => {
                door.refused(which, source, Reason::SourceConnections);
                return None;
            }
        }
    };
    door.open[l].fetch_add(1, Ordering::Relaxed);
    door.metrics.connections[l].fetch_add(1, Ordering::Relaxed);
    Some(Held {
        door: door.clone(),
        listener: which,
        counted,
    })
}

fn builder(c: &DoorConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own bounds sit above the door's, which answer in the documented form; past
    // hyper's, the answer is hyper's bare 431 or a closed stream.
    let mut h1 = b.http1();
    h1.timer(TokioTimer::new())
        .header_read_timeout(c.header_read_timeout);
    // Only raised when the door's limits need it: hyper's defaults (100 fields, a buffer of
    // about 400 KB) cost least per request.
    if c.max_headers.saturating_mul(2) > HYPER_MAX_HEADERS {
        h1.max_headers(c.max_headers.saturating_mul(2));
    }
    if c.max_header_bytes.saturating_mul(2) > HYPER_MAX_BUF {
        h1.max_buf_size(c.max_header_bytes.saturating_mul(2));
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(c.h2.max_concurrent_streams)
        .keep_alive_interval(c.h2.keepalive_interval)
        .keep_alive_timeout(c.h2.keepalive_timeout)
        .max_pending_accept_reset_streams(c.h2.max_pending_reset_streams)
        .max_local_error_reset_streams(c.h2.max_local_reset_streams)
        .max_header_list_size(
            u32::try_from(c.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
    b
}

struct Connection {
    door: Arc<Door>,
    which: Listener,
    peer: std::net::SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
    _held: Held,
}

impl Connection {
    async fn run(self, tcp: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let c = &self.door.config;
        let source = SourceKey::of(self.peer.ip());
        match acceptor {
            None => self.http(TokioIo::new(tcp), None).await,
            Some(acceptor) => {
                let tls = match tokio::time::timeout(c.tls_handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake refused");
                        self.door.refused(self.which, source, Reason::TlsHandshake);
                        return;
                    }
                    Err(_) => {
                        self.door.refused(self.which, source, Reason::TlsHandshake);
                        return;
                    }
                };
                let certificate = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| Arc::new(crate::transport::tls::identity(leaf)));
                self.http(TokioIo::new(tls), certificate).await
            }
        }
    }

    async fn http<I>(
        &self,
        io: TokioIo<I>,
        certificate: Option<Arc<crate::layers::authenticate::ClientCertificate>>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let c = &self.door.config;
        let activity = Arc::new(Activity::new());
        let service = DoorService {
            door: self.door.clone(),
            listener: self.which,
            peer: self.peer,
            certificate,
            activity: activity.clone(),
            router: self.router.clone(),
        };
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stop = self.stop.clone();
        let tick = (c.header_read_timeout.min(c.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut watch = tokio::time::interval(tick);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing: Option<tokio::time::Instant> = None;
        let mut watched = Watch::new();
        let source = SourceKey::of(self.peer.ip());
        let result = loop {
            tokio::select! {
                biased;
                result = conn.as_mut() => break result,
                _ = stop.wait_for(|s| *s), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now());
                }
                _ = watch.tick() => {
                    if let Some(since) = closing {
                        if since.elapsed() >= CLOSE_GRACE {
                            // Told to close and still holding on: dropped.
                            return;
                        }
                        continue;
                    }
                    match watched.expired(&activity, c.header_read_timeout, c.idle_timeout) {
                        Some(Expiry::NoRequestHead) => {
                            self.door.refused(self.which, source, Reason::HeaderTimeout);
                            // Nothing to finish: a connection that never sent a request
                            // head is dropped at once.
                            return;
                        }
                        Some(Expiry::Idle) => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now());
                        }
                        None => {}
                    }
                }
            }
        };
        if let Err(e) = result {
            let timed_out = e
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout);
            if timed_out && !activity.seen() {
                // hyper's header-read timeout before a first request head (after one, it
                // is how an idle HTTP/1.1 connection ends, not a refusal).
                self.door.refused(self.which, source, Reason::HeaderTimeout);
            } else {
                tracing::debug!(peer = %self.peer, error = %e, seen = activity.seen(), "connection ended with an error");
            }
        }
    }
}
