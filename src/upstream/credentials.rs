//! A connector's credentials at run time: the headers, query parameter or metadata each
//! scheme adds to a call, and the OAuth2 client-credentials token, fetched once for many
//! calls, refreshed before it expires and fetched again (once) when the provider answers
//! 401 to it.

use super::auth::{ClientAuth, KeyPlace, OAuth2, UpstreamAuth};
use super::connector::{UpstreamError, http_error};
use crate::domain::signed_header::signed_header_authorization;
use crate::domain::urlencode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a token is taken to live when the token endpoint does not say (`expires_in` is
/// only RECOMMENDED by RFC 6749 section 5.1).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires, or at four fifths of its life when
/// that is shorter, so that no call carries a token about to expire.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// One connector's credentials.
pub struct Credentials {
    auth: UpstreamAuth,
    endpoint: String,
    tokens: Option<Tokens>,
    /// `name=value` of an API key sent in the query, encoded once.
    query: Option<String>,
}

struct Tokens {
    settings: OAuth2,
    http: reqwest::Client,
    timeout: Duration,
    current: Mutex<Option<Token>>,
    /// One fetch at a time: calls that find no valid token wait for it instead of each
    /// asking the token endpoint.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Clone)]
struct Token {
    value: Arc<str>,
    refresh_at: Instant,
}

impl Credentials {
    /// `http` is the client the token endpoint is called with; `timeout` bounds that call.
    pub fn new(
        auth: &UpstreamAuth,
        endpoint: &str,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Credentials {
        let tokens = match auth {
            UpstreamAuth::OAuth2(settings) => Some(Tokens {
                settings: settings.clone(),
                http,
                timeout,
                current: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
            }),
            _ => None,
        };
        let query = match auth {
            UpstreamAuth::ApiKey {
                place: KeyPlace::Query,
                name,
                key,
            } => Some(format!("{}={}", urlencode(name), urlencode(key))),
            _ => None,
        };
        Credentials {
            auth: auth.clone(),
            endpoint: endpoint.to_owned(),
            tokens,
            query,
        }
    }

    /// How many tokens have been fetched (for tests and diagnostics).
    pub fn token_fetches(&self) -> u64 {
        self.tokens
            .as_ref()
            .map_or(0, |t| t.fetches.load(Ordering::Relaxed))
    }

    /// `url` with the API key's query parameter, for the `api-key` scheme with `query`.
    pub fn url(&self, url: String) -> String {
        match &self.query {
            Some(query) => {
                let join = if url.contains('?') { '&' } else { '?' };
                format!("{url}{join}{query}")
            }
            None => url,
        }
    }

    /// Sends an HTTP request with this connector's credentials. With OAuth2, a 401 drops
    /// the token it was sent with, and the request goes once more with a new one.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        let again = self.tokens.as_ref().and(request.try_clone());
        let (request, used) = self.apply(request).await?;
        let response = request.send().await.map_err(http_error)?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        match (&self.tokens, used, again) {
            (Some(tokens), Some(used), Some(again)) => {
                tokens.reject(&used);
                let (again, _) = self.apply(again).await?;
                again.send().await.map_err(http_error)
            }
            _ => Ok(response),
        }
    }

    async fn apply(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::RequestBuilder, Option<Arc<str>>), UpstreamError> {
        let mut used = None;
        match &self.auth {
            UpstreamAuth::None | UpstreamAuth::WsSecurity { .. } => {}
            UpstreamAuth::SignedHeader {
                user,
                secret,
                client_id,
                api_key,
            } => {
                let timestamp = crate::domain::date::now_ms().to_string();
                request = request.header("Timestamp", &timestamp).header(
                    "Authorization",
                    signed_header_authorization(&self.endpoint, user, &timestamp, secret),
                );
                if !client_id.is_empty() {
                    request = request.header("X-Road-Client", client_id);
                }
                if let Some(key) = api_key {
                    request = request.header("ApiKey", key);
                }
            }
            UpstreamAuth::Bearer { token } => request = request.bearer_auth(token),
            UpstreamAuth::ApiKey {
                place: KeyPlace::Header,
                name,
                key,
            } => request = request.header(name.as_str(), key.as_str()),
            UpstreamAuth::ApiKey { .. } => {}
            UpstreamAuth::OAuth2(_) => {
                let token = self.token().await?;
                request = request.bearer_auth(&*token);
                used = Some(token);
            }
        }
        Ok((request, used))
    }

    /// Adds credentials to a gRPC call's metadata; returns the OAuth2 token sent, if any.
    pub async fn metadata(
        &self,
        metadata: &mut tonic::metadata::MetadataMap,
    ) -> Result<Option<Arc<str>>, UpstreamError> {
        let bad = |what: &str| UpstreamError::Refused(format!("{what} cannot be sent as metadata"));
        let bearer = |token: &str| {
            tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| bad("the token"))
        };
        match &self.auth {
            UpstreamAuth::Bearer { token } => {
                metadata.insert("authorization", bearer(token)?);
            }
            UpstreamAuth::ApiKey { name, key, .. } => {
                let name =
                    tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| bad("the key's header name"))?;
                let value = key.parse().map_err(|_| bad("the key"))?;
                metadata.insert(name, value);
            }
            UpstreamAuth::OAuth2(_) => {
                let token = self.token().await?;
                metadata.insert("authorization", bearer(&token)?);
                return Ok(Some(token));
            }
            _ => {}
        }
        Ok(None)
    }

    /// Drops an OAuth2 token the provider refused (401 / UNAUTHENTICATED), unless a newer
    /// one has replaced it already.
    pub fn reject(&self, used: &str) {
        if let Some(tokens) = &self.tokens {
            tokens.reject(used);
        }
    }

    /// The current OAuth2 token, fetched when there is none or it is due for refresh.
    async fn token(&self) -> Result<Arc<str>, UpstreamError> {
        let tokens = self
            .tokens
            .as_ref()
            .ok_or_else(|| UpstreamError::Unavailable("no OAuth2 settings".into()))?;
        if let Some(t) = tokens.valid() {
            return Ok(t);
        }
        let _one = tokens.fetching.lock().await;
        if let Some(t) = tokens.valid() {
            return Ok(t);
        }
        let token = tokens.fetch().await?;
        let value = token.value.clone();
        *tokens.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(value)
    }
}

impl Tokens {
    fn valid(&self) -> Option<Arc<str>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }

    fn reject(&self, used: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|t| &*t.value == used) {
            *current = None;
        }
    }

    /// One client-credentials grant: `POST token_url` with
    /// `grant_type=client_credentials` (RFC 6749 section 4.4.2).
    async fn fetch(&self) -> Result<Token, UpstreamError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let s = &self.settings;
        let mut form = String::from("grant_type=client_credentials");
        if let Some(scope) = &s.scope {
            form.push_str("&scope=");
            form.push_str(&urlencode(scope));
        }
        let mut request = self
            .http
            .post(&s.token_url)
            .timeout(self.timeout)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        match s.client_auth {
            // Section 2.3.1: the id and secret are form-encoded, then joined and encoded
            // in base64 as HTTP Basic.
            ClientAuth::Basic => {
                let pair = format!(
                    "{}:{}",
                    urlencode(&s.client_id),
                    urlencode(&s.client_secret)
                );
                request = request.header("Authorization", format!("Basic {}", BASE64.encode(pair)));
            }
            ClientAuth::Post => {
                form.push_str("&client_id=");
                form.push_str(&urlencode(&s.client_id));
                form.push_str("&client_secret=");
                form.push_str(&urlencode(&s.client_secret));
            }
        }
        let started = Instant::now();
        let unreachable = |e: reqwest::Error| {
            UpstreamError::Unavailable(format!("oauth2 token endpoint {}: {e}", s.token_url))
        };
        let response = request.body(form).send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            // Section 5.2: `error` names what was wrong (invalid_client, ...).
            let error = json["error"].as_str().unwrap_or("no error code");
            let detail = format!("oauth2 token endpoint answered {status}: {error}");
            return Err(if status.is_client_error() {
                UpstreamError::Refused(detail)
            } else {
                UpstreamError::Unavailable(detail)
            });
        }
        let value = json["access_token"].as_str().filter(|t| !t.is_empty());
        let kind = json["token_type"].as_str().unwrap_or("");
        let Some(value) = value else {
            return Err(UpstreamError::BadResponse(
                "oauth2 token endpoint: no access_token in its answer".into(),
            ));
        };
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(UpstreamError::BadResponse(format!(
                "oauth2 token endpoint: token_type {kind:?} is not Bearer"
            )));
        }
        let life = json["expires_in"]
            .as_u64()
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let ahead = REFRESH_AHEAD.min(life / 5);
        Ok(Token {
            value: value.into(),
            refresh_at: started + life - ahead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::Mutex as StdMutex;

    /// What the token endpoint received: (authorization header, content type, body).
    type Seen = Arc<StdMutex<Vec<(String, String, String)>>>;

    /// A token endpoint that records each request and issues `token-N` for `life` seconds,
    /// and a resource that echoes the bearer token it got.
    async fn provider(life: u64) -> (String, Seen) {
        crate::certs::install_crypto();
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let app = Router::new()
            .route(
                "/token",
                post(move |headers: HeaderMap, body: String| {
                    let s = s.clone();
                    async move {
                        let header = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let mut seen = s.lock().unwrap();
                        seen.push((header("authorization"), header("content-type"), body));
                        axum::Json(serde_json::json!({
                            "access_token": format!("token-{}", seen.len()),
                            "token_type": "bearer",
                            "expires_in": life,
                        }))
                    }
                }),
            )
            .route(
                "/resource",
                get(|headers: HeaderMap| async move {
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, seen)
    }

    fn oauth(base: &str, client_auth: ClientAuth) -> Credentials {
        let auth = UpstreamAuth::OAuth2(OAuth2 {
            token_url: format!("{base}/token"),
            // Characters RFC 6749 section 2.3.1 has form-encoded before Basic.
            client_id: "one stop:7".into(),
            client_secret: "s&cr=t/+".into(),
            client_auth,
            scope: Some("citizen.read insured.read".into()),
        });
        let http = reqwest::Client::new();
        Credentials::new(&auth, base, http, Duration::from_secs(5))
    }

    async fn call(c: &Credentials, base: &str) -> String {
        let r = c
            .send(reqwest::Client::new().get(format!("{base}/resource")))
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    #[tokio::test]
    async fn client_secret_basic_follows_rfc_6749() {
        let (base, seen) = provider(300).await;
        let c = oauth(&base, ClientAuth::Basic);
        assert_eq!(call(&c, &base).await, "Bearer token-1");
        let seen = seen.lock().unwrap().clone();
        let (authorization, content_type, body) = &seen[0];
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=citizen.read%20insured.read"
        );
        let encoded = authorization.strip_prefix("Basic ").expect("HTTP Basic");
        let pair = String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap();
        assert_eq!(pair, "one%20stop%3A7:s%26cr%3Dt%2F%2B");
    }

    #[tokio::test]
    async fn client_secret_post_puts_the_client_in_the_form_and_sends_no_basic() {
        let (base, seen) = provider(300).await;
        let c = oauth(&base, ClientAuth::Post);
        assert_eq!(call(&c, &base).await, "Bearer token-1");
        let (authorization, _, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(authorization, "");
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=citizen.read%20insured.read&client_id=one%20stop%3A7&client_secret=s%26cr%3Dt%2F%2B"
        );
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_fetch_and_the_token_is_refreshed_before_it_expires() {
        let (base, seen) = provider(2).await;
        let c = Arc::new(oauth(&base, ClientAuth::Basic));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (c, base) = (c.clone(), base.clone());
                tokio::spawn(async move { call(&c, &base).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), "Bearer token-1");
        }
        assert_eq!(c.token_fetches(), 1, "twenty calls, one token");
        // A 2 s token is due for refresh at four fifths of its life (1.6 s), before it
        // expires: the next call gets a new one.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(call(&c, &base).await, "Bearer token-2");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
