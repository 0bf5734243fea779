//! The civil-status simulator (hộ tịch, the Ministry of Justice's electronic civil-status
//! database): birth and marriage registrations over SOAP 1.2, behind WS-Security
//! UsernameToken with PasswordDigest.
//!
//! A registration is found by its number as a nested element:
//! `<TraCuuKhaiSinh><SoDangKy><MaCoQuan>…</MaCoQuan><Nam>…</Nam><Quyen>…</Quyen><So>…</So>
//! </SoDangKy></TraCuuKhaiSinh>` (a marriage: `TraCuuKetHon`, the same number). The gateway's key writes it without `/`:
//! `{authority}-{year}-{book}-{number}`, e.g. `00004-2025-01-000123`.
//!
//! The token is checked as the profile says: the digest over the nonce, the created time and
//! the password; a created time within five minutes; a nonce never seen twice in that time.
//! A failure is a SOAP 1.2 `Sender` fault with the subcode `wsse:FailedAuthentication`.

use super::control::{Control, Fault, recorded};
use super::data::SimData;
use crate::domain::date::now_ms;
use crate::domain::wsse::{WSSE, password_digest};
use crate::domain::xml::xml_escape as escape;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The dataset name the docs and `lienthong sim samples` use for it (a provider agency
/// registers it under a name of its choosing).
pub const DATASET: &str = "civil.birth";
/// Path of the service.
pub const PATH: &str = "/hotich/ws";
/// The service's namespace.
pub const NAMESPACE: &str = "http://hotich.moj.gov.vn/ws";
/// The operation, as named in the body and counted in `/_sim/stats`.
pub const OPERATION: &str = "TraCuuKhaiSinh";
/// Marriage registrations: the operation, and the dataset name the docs use.
pub const MARRIAGE_OPERATION: &str = "TraCuuKetHon";
pub const MARRIAGE_DATASET: &str = "civil.marriage";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// How far a token's created time may be from the simulator's clock.
const SKEW_MS: i64 = 5 * 60 * 1000;

/// The account the simulator accepts.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub password: String,
}

struct Sim {
    data: Arc<SimData>,
    account: Account,
    control: Arc<Control>,
    /// Nonces seen, with when: a replayed token is refused.
    nonces: Mutex<HashMap<String, i64>>,
}

pub fn router(data: Arc<SimData>, account: Account, control: Arc<Control>) -> Router {
    let sim = Arc::new(Sim {
        data,
        account,
        control: control.clone(),
        nonces: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(PATH, post(lookup))
        .with_state(sim)
        .merge(control.router())
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><env:Envelope xmlns:env=\"{SOAP12}\" xmlns:ht=\"{NAMESPACE}\"><env:Body>{body}</env:Body></env:Envelope>"
    )
}

fn reply(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        envelope(&body),
    )
        .into_response()
}

/// A SOAP 1.2 fault: `code` is `Sender` or `Receiver`, `subcode` a qualified name.
fn fault(status: StatusCode, code: &str, subcode: &str, reason: &str) -> Response {
    reply(
        status,
        format!(
            "<env:Fault><env:Code><env:Value>env:{code}</env:Value><env:Subcode><env:Value xmlns:wsse=\"{WSSE}\">{subcode}</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang=\"vi\">{}</env:Text></env:Reason></env:Fault>",
            escape(reason)
        ),
    )
}

fn text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

/// Checks the UsernameToken; the reason it fails otherwise.
fn check_token(sim: &Sim, doc: &roxmltree::Document<'_>) -> Result<(), &'static str> {
    let token = doc
        .descendants()
        .find(|n| n.tag_name().name() == "UsernameToken" && n.tag_name().namespace() == Some(WSSE))
        .ok_or("no wsse:UsernameToken in the header")?;
    let user = text(token, "Username").ok_or("no Username")?;
    let password = token
        .descendants()
        .find(|n| n.tag_name().name() == "Password")
        .ok_or("no Password")?;
    if !password
        .attribute("Type")
        .is_some_and(|t| t.ends_with("#PasswordDigest"))
    {
        return Err("the password must be a PasswordDigest");
    }
    let digest = password.text().map(str::trim).unwrap_or("");
    let nonce = text(token, "Nonce").ok_or("no Nonce")?;
    let created = text(token, "Created").ok_or("no Created")?;
    let nonce_bytes = BASE64
        .decode(nonce)
        .map_err(|_| "the Nonce is not Base64")?;
    let at = crate::domain::date::parse_rfc3339_ms(created).ok_or("Created is not a time")?;
    let now = now_ms();
    if (now - at).abs() > SKEW_MS {
        return Err("Created is more than five minutes from now");
    }
    if user != sim.account.user
        || digest != password_digest(&nonce_bytes, created, &sim.account.password)
    {
        return Err("wrong user name or password");
    }
    let mut nonces = sim.nonces.lock().unwrap_or_else(|p| p.into_inner());
    nonces.retain(|_, seen| now - *seen <= SKEW_MS);
    if nonces.insert(nonce.to_owned(), now).is_some() {
        return Err("the Nonce was used before (replay)");
    }
    Ok(())
}

async fn lookup(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: String) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/soap+xml") {
        // SOAP 1.2's HTTP binding: a 1.1 envelope (text/xml) is not understood.
        return fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Sender",
            "env:VersionMismatch",
            "this service speaks SOAP 1.2 (application/soap+xml)",
        );
    }
    let Ok(doc) = roxmltree::Document::parse(&body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Sender",
            "env:Sender",
            "malformed XML",
        );
    };
    if doc.root_element().tag_name().namespace() != Some(SOAP12) {
        return fault(
            StatusCode::BAD_REQUEST,
            "Sender",
            "env:VersionMismatch",
            "the envelope is not SOAP 1.2",
        );
    }
    if let Err(why) = check_token(&sim, &doc) {
        return fault(
            StatusCode::BAD_REQUEST,
            "Sender",
            "wsse:FailedAuthentication",
            why,
        );
    }
    let Some(operation) = doc
        .descendants()
        .find(|n| [OPERATION, MARRIAGE_OPERATION].contains(&n.tag_name().name()))
    else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Sender",
            "env:Sender",
            "unknown operation",
        );
    };
    let name = operation.tag_name().name();
    let answer = |inner: String| format!("<ht:{name}Response>{inner}</ht:{name}Response>");
    match sim.control.on_call(name, recorded(&headers)).await {
        Fault::Down | Fault::Error => {
            return fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "env:Receiver",
                "hệ thống đang bận",
            );
        }
        Fault::Malformed => return reply(StatusCode::OK, format!("<ht:{name}Response>")),
        Fault::None => {}
    }
    let number = operation
        .children()
        .find(|n| n.tag_name().name() == "SoDangKy");
    let parts = number
        .map(|n| ["MaCoQuan", "Nam", "Quyen", "So"].map(|p| text(n, p).unwrap_or("").to_owned()));
    let Some([authority, year, book, serial]) = parts else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Sender",
            "env:Sender",
            "SoDangKy with MaCoQuan, Nam, Quyen and So is required",
        );
    };
    let key = format!("{authority}-{year}-{book}-{serial}");
    let found = if name == OPERATION {
        birth(&sim.data, &key)
    } else {
        marriage(&sim.data, &key)
    };
    let record = found.map(|b| {
        let mut out = String::from("<ht:KetQua>");
        for (name, value) in b {
            out.push_str(&format!("<ht:{name}>{}</ht:{name}>", escape(&value)));
        }
        out.push_str("</ht:KetQua>");
        out
    });
    reply(StatusCode::OK, answer(record.unwrap_or_default()))
}

/// The birth registration key of the citizen at generation index `i`: the commune of birth,
/// the year of birth, book 01 and the index as the number.
pub fn key_of(data: &SimData, i: u32) -> Option<String> {
    let c = data.citizen_at(i)?;
    let place = c.birth_registration_place.as_ref()?;
    let year = c.date_of_birth.get(..4)?;
    Some(format!("{}-{year}-01-{i:06}", place.commune_code))
}

/// A birth registration as (element, value) pairs, in the service's order.
pub fn birth(data: &SimData, key: &str) -> Option<Vec<(&'static str, String)>> {
    let serial = key.rsplit('-').next()?;
    if serial.len() != 6 {
        return None;
    }
    let i: u32 = serial.parse().ok()?;
    if key_of(data, i).as_deref() != Some(key) {
        return None;
    }
    let c = data.citizen_at(i)?;
    let place = c.birth_registration_place.clone().unwrap_or_default();
    let father = c.father.clone().unwrap_or_default();
    let mother = c.mother.clone().unwrap_or_default();
    let year = c.date_of_birth.get(..4).unwrap_or_default().to_owned();
    Some(vec![
        ("SoDangKy", key.to_owned()),
        ("CoQuanDangKy", place.commune_code.clone()),
        ("Nam", year),
        ("Quyen", "01".to_owned()),
        ("So", serial.to_owned()),
        ("NgayDangKy", c.date_of_birth.clone()),
        ("HoTen", c.full_name.clone()),
        ("NgaySinh", c.date_of_birth.clone()),
        ("GioiTinh", c.sex.clone()),
        ("DanToc", c.ethnicity.clone()),
        ("QuocTich", c.nationality.clone()),
        ("NoiSinh", place.commune_code),
        ("SoDinhDanh", c.personal_id.clone()),
        ("HoTenCha", father.full_name),
        ("SoDinhDanhCha", father.personal_id),
        ("HoTenMe", mother.full_name),
        ("SoDinhDanhMe", mother.personal_id),
        ("ThoiDiemDuLieu", super::stated_time(key)),
    ])
}

/// The marriage registration key of generated household `h` (its head and the head's
/// spouse): the commune of the head's permanent residence, the year they married, book 01
/// and the household as the number.
pub fn marriage_key_of(data: &SimData, h: u32) -> Option<String> {
    let (head, spouse) = couple(data, h)?;
    let place = head.permanent_residence.as_ref()?;
    Some(format!(
        "{}-{}-01-{h:06}",
        place.commune_code,
        married_in(&head, &spouse)
    ))
}

fn couple(
    data: &SimData,
    h: u32,
) -> Option<(
    crate::proto::lienthong::Citizen,
    crate::proto::lienthong::Citizen,
)> {
    let head = data.citizen_at(h.checked_mul(4)?)?;
    let spouse = data.citizen_at(h * 4 + 1)?;
    let married = head
        .spouse
        .as_ref()
        .is_some_and(|s| s.personal_id == spouse.personal_id);
    married.then_some((head, spouse))
}

/// The year a couple married: when the younger turned 24, and not after 2024.
fn married_in(a: &crate::proto::lienthong::Citizen, b: &crate::proto::lienthong::Citizen) -> i32 {
    let year = |c: &crate::proto::lienthong::Citizen| {
        c.date_of_birth
            .get(..4)
            .and_then(|y| y.parse::<i32>().ok())
            .unwrap_or(1980)
    };
    (year(a).max(year(b)) + 24).min(2024)
}

/// A marriage registration as (element, value) pairs, in the service's order.
pub fn marriage(data: &SimData, key: &str) -> Option<Vec<(&'static str, String)>> {
    let serial = key.rsplit('-').next()?;
    if serial.len() != 6 {
        return None;
    }
    let h: u32 = serial.parse().ok()?;
    if marriage_key_of(data, h).as_deref() != Some(key) {
        return None;
    }
    let (head, spouse) = couple(data, h)?;
    let (husband, wife) = if head.sex == "Nam" || head.sex == "male" {
        (head, spouse)
    } else {
        (spouse, head)
    };
    let place = husband
        .permanent_residence
        .clone()
        .or_else(|| wife.permanent_residence.clone())
        .unwrap_or_default();
    let year = married_in(&husband, &wife);
    Some(vec![
        ("SoDangKy", key.to_owned()),
        (
            "CoQuanDangKy",
            key.split('-').next().unwrap_or_default().to_owned(),
        ),
        ("Nam", year.to_string()),
        ("Quyen", "01".to_owned()),
        ("So", serial.to_owned()),
        ("NgayDangKy", format!("{year}-06-15")),
        ("HoTenChong", husband.full_name.clone()),
        ("NgaySinhChong", husband.date_of_birth.clone()),
        ("SoDinhDanhChong", husband.personal_id.clone()),
        ("HoTenVo", wife.full_name.clone()),
        ("NgaySinhVo", wife.date_of_birth.clone()),
        ("SoDinhDanhVo", wife.personal_id.clone()),
        ("NoiCuTru", place.commune_code),
        ("ThoiDiemDuLieu", super::stated_time(key)),
    ])
}
