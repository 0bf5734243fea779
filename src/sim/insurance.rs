//! The social-insurance simulator (Vietnam Social Security, BHXH): an insured person's
//! record over REST/JSON, nested (current employer, contribution periods, health card),
//! behind OAuth2 client credentials (RFC 6749 section 4.4) or an API key.
//!
//! - `POST /oauth2/token` takes `grant_type=client_credentials` with the client
//!   authenticated by HTTP Basic (`client_secret_basic`) or in the form
//!   (`client_secret_post`), and answers a bearer token with `expires_in`.
//! - `GET /api/bhxh/v1/nguoi-tham-gia/{ma_so_bhxh}` takes that token, or the API key in
//!   `X-Api-Key` or in the `api_key` query parameter.
//! - `POST /_sim/revoke-tokens` forgets every token issued, as a provider's key rotation
//!   would, so that a client's next call meets a 401.

use super::control::{Control, Fault, recorded};
use super::data::SimData;
use crate::domain::date::Date;
use crate::domain::ids::PersonalId;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The dataset name the docs and `lienthong sim samples` use for it (a provider agency
/// registers it under a name of its choosing).
pub const DATASET: &str = "insurance.person";
/// Path of the lookup operation.
pub const PATH: &str = "/api/bhxh/v1/nguoi-tham-gia";
/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Operation names, as counted in `/_sim/stats`.
pub const OPERATION: &str = "TraCuuNguoiThamGia";
pub const TOKEN_BASIC: &str = "token:client_secret_basic";
pub const TOKEN_POST: &str = "token:client_secret_post";

/// The clients the simulator knows.
#[derive(Debug, Clone)]
pub struct Account {
    pub client_id: String,
    pub client_secret: String,
    pub api_key: String,
    /// `expires_in` of the tokens it issues.
    pub token_lifetime: Duration,
}

struct Sim {
    data: Arc<SimData>,
    account: Account,
    control: Arc<Control>,
    tokens: Arc<Tokens>,
}

/// The access tokens the sector's authorization server (this simulator's token endpoint)
/// has issued, with when each expires; the vehicle registry accepts them too.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, Instant>>);

impl Tokens {
    fn issue(&self, lifetime: Duration) -> String {
        let mut raw = [0u8; 24];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
        let value = hex::encode(raw);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(value.clone(), Instant::now() + lifetime);
        value
    }

    /// Whether `token` was issued and has not expired; why not, if not.
    pub fn check(&self, token: &str) -> Result<(), &'static str> {
        let mut tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some(until) if Instant::now() < *until => Ok(()),
            Some(_) => {
                tokens.remove(token);
                Err("token expired")
            }
            None => Err("unknown token"),
        }
    }

    fn clear(&self) -> usize {
        let mut tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = tokens.len();
        tokens.clear();
        n
    }
}

pub fn router(
    data: Arc<SimData>,
    account: Account,
    control: Arc<Control>,
    tokens: Arc<Tokens>,
) -> Router {
    let sim = Arc::new(Sim {
        data,
        account,
        control: control.clone(),
        tokens,
    });
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(&format!("{PATH}/{{code}}"), get(lookup))
        .route("/_sim/revoke-tokens", post(revoke))
        .with_state(sim)
        .merge(control.router())
}

/// An OAuth2 error answer (RFC 6749 section 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn form(body: &str) -> Option<BTreeMap<String, String>> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| crate::domain::percent_decode(&s.replace('+', " "));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: String) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let Some(form) = form(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form");
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b| {
            let pair = BASE64
                .decode(b.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (id, secret) = pair.split_once(':').unwrap_or(("", ""));
            let decode = |s: &str| crate::domain::percent_decode(s).unwrap_or_default();
            (decode(id), decode(secret))
        });
    let in_form = form.get("client_id").zip(form.get("client_secret"));
    let (method, (id, secret)) = match (basic, in_form) {
        (Some(b), None) => (TOKEN_BASIC, b),
        (None, Some((i, s))) => (TOKEN_POST, (i.clone(), s.clone())),
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the client authenticated in two ways",
            );
        }
        (None, None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "no client authentication",
            );
        }
    };
    if let Fault::Down | Fault::Error = sim.control.on_call(method, recorded(&headers)).await {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "token service unavailable",
        );
    }
    if id != sim.account.client_id || secret != sim.account.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let lifetime = sim.account.token_lifetime;
    let value = sim.tokens.issue(lifetime);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": value,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
        })),
    )
        .into_response()
}

async fn revoke(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "revoked": sim.tokens.clear() }))
}

/// How the caller authenticated, or why not.
fn authenticated(
    sim: &Sim,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(query.get("api_key").map(String::as_str));
    let unauthorized = |why: &str| {
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
                )],
                Json(json!({ "maLoi": "401", "thongBao": why })),
            )
                .into_response(),
        )
    };
    match (bearer, key) {
        (Some(token), _) => sim.tokens.check(token).map_err(unauthorized),
        (None, Some(k)) if !sim.account.api_key.is_empty() && k == sim.account.api_key => Ok(()),
        (None, Some(_)) => Err(unauthorized("wrong API key")),
        (None, None) => Err(unauthorized("no credentials")),
    }
}

async fn lookup(
    State(sim): State<Arc<Sim>>,
    Path(code): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authenticated(&sim, &headers, &query) {
        return *refused;
    }
    match sim.control.on_call(OPERATION, recorded(&headers)).await {
        Fault::Down | Fault::Error => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "maLoi": "503", "thongBao": "hệ thống bận" })),
            )
                .into_response();
        }
        Fault::Malformed => return (StatusCode::OK, "{\"data\": ").into_response(),
        Fault::None => {}
    }
    match insured(&sim.data, &code) {
        Some(record) => Json(json!({ "maLoi": "0", "data": record })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "maLoi": "404", "thongBao": "không tìm thấy người tham gia" })),
        )
            .into_response(),
    }
}

/// The social-insurance code of the citizen at generation index `i`: two digits of the
/// province that registered them, then the index in eight digits.
pub fn code_of(data: &SimData, i: u32) -> Option<String> {
    let c = data.citizen_at(i)?;
    let province = &c.personal_id[1..3];
    Some(format!("{province}{i:08}"))
}

/// The insured person with this code, if the citizen behind it is of working age.
pub fn insured(data: &SimData, code: &str) -> Option<Value> {
    if code.len() != 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: u32 = code[2..].parse().ok()?;
    if code_of(data, i).as_deref() != Some(code) {
        return None;
    }
    let c = data.citizen_at(i)?;
    let birth_year: i32 = c.date_of_birth.get(..4)?.parse().ok()?;
    let start = birth_year + 22;
    let this_year = Date::today().year;
    if start > this_year {
        return None;
    }
    let id = PersonalId::parse(&c.personal_id, this_year).ok()?;
    let serial = id.serial();
    let employers: Vec<(String, String)> = (0..3)
        .filter_map(|n| {
            let j = (serial.wrapping_mul(31).wrapping_add(n * 7)) % data.enterprises().max(1);
            data.enterprise_at(j)
                .map(|(e, _)| (e.name.clone(), e.enterprise_code.clone()))
        })
        .collect();
    let span = (this_year - start + 1).max(1);
    let periods: Vec<Value> = employers
        .iter()
        .enumerate()
        .map(|(n, (name, code))| {
            let from = start + span * n as i32 / employers.len() as i32;
            let to = start + span * (n as i32 + 1) / employers.len() as i32 - 1;
            json!({
                "tuThang": format!("{from:04}-01"),
                "denThang": if n + 1 == employers.len() { String::new() } else { format!("{:04}-12", to.max(from)) },
                "tenDonVi": name,
                "maSoDoanhNghiep": code,
                "mucLuong": 5_000_000 + (serial % 20) as u64 * 1_000_000 + n as u64 * 2_000_000,
                "tyLe": 32.0,
            })
        })
        .collect();
    let current = employers.last().cloned().unwrap_or_default();
    let province = &c.personal_id[1..3];
    Some(json!({
        "thoiDiemCapNhat": super::stated_time(code),
        "maSoBhxh": code,
        "hoTen": c.full_name,
        "ngaySinh": c.date_of_birth,
        "gioiTinh": if c.sex == "male" { "Nam" } else { "Nữ" },
        "soDinhDanh": c.personal_id,
        "donViHienTai": { "tenDonVi": current.0, "maSoDoanhNghiep": current.1 },
        "quaTrinhDong": periods,
        "theBhyt": {
            "soThe": format!("DN4{province}{code}"),
            "tuNgay": format!("{this_year:04}-01-01"),
            "denNgay": format!("{this_year:04}-12-31"),
            "maNoiDangKy": format!("{province}001"),
        },
    }))
}
