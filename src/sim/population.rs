//! The population database simulator: the citizen lookup (service "037",
//! `TraCuuThongTinCongDan`) over SOAP/XML, with the signed `Authorization` header checked the
//! way the real service checks it.

use super::control::{Control, Fault, recorded};
use super::data::SimData;
use crate::domain::ids::PersonalId;
use crate::domain::signed_header::{SIGNATURE_MAX_SKEW_MS, signed_header_digest};
use crate::domain::xml::xml_escape as escape;
use crate::proto::lienthong::{Address, Citizen, Relative};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use std::fmt::Write;
use std::sync::Arc;

/// Path of the lookup operation.
pub const PATH: &str = "/csdlqgdc/037/TraCuuThongTinCongDan";
/// SOAP namespace of the population service.
pub const NAMESPACE: &str = "http://dancuquocgia.bca";
/// The operation name, as counted in `/_sim/stats`.
pub const OPERATION: &str = "TraCuuThongTinCongDan";

/// The account the simulator accepts.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub secret: String,
}

struct Sim {
    data: Arc<SimData>,
    account: Account,
    control: Arc<Control>,
}

pub fn router(data: Arc<SimData>, account: Account, control: Arc<Control>) -> Router {
    let sim = Arc::new(Sim {
        data,
        account,
        control: control.clone(),
    });
    Router::new()
        .route(PATH, post(lookup))
        .with_state(sim)
        .merge(control.router())
}

fn soap(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

fn fault(status: StatusCode, code: &str, message: &str) -> Response {
    let body = soap(&format!(
        "<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{}</faultstring></soap:Fault>",
        escape(message)
    ));
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Checks `Timestamp` and `Authorization: Basic base64(user:sha256(url+user+timestamp+secret))`.
fn check_signature(sim: &Sim, headers: &HeaderMap) -> Result<(), &'static str> {
    let timestamp = headers
        .get("timestamp")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing Timestamp header")?;
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| "Timestamp is not milliseconds")?;
    let now = crate::domain::date::now_ms();
    if (now - sent).abs() > SIGNATURE_MAX_SKEW_MS {
        return Err("Timestamp is stale");
    }
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or("missing or malformed Authorization header")?;
    let (user, digest) = credentials
        .split_once(':')
        .ok_or("malformed Authorization header")?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = format!("http://{host}{PATH}");
    if user != sim.account.user
        || digest != signed_header_digest(&url, user, timestamp, &sim.account.secret)
    {
        return Err("signature does not match");
    }
    Ok(())
}

/// The request fields the simulator reads.
#[derive(Default)]
struct Query {
    id: String,
    name: Option<String>,
    birth: Option<String>,
    context: Vec<(&'static str, String)>,
}

/// A lookup request the simulator cannot read; its fault string says why.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("request is not XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("body does not hold a {OPERATION} element")]
    NoOperation,
    #[error("SoDinhDanh is required")]
    NoId,
}

fn parse_request(body: &str) -> Result<Query, RequestError> {
    let doc = roxmltree::Document::parse(body)?;
    let text = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    if !doc.descendants().any(|n| n.tag_name().name() == OPERATION) {
        return Err(RequestError::NoOperation);
    }
    let id = text("SoDinhDanh")
        .or_else(|| text("SoCMND"))
        .ok_or(RequestError::NoId)?;
    let context = [
        ("MaDVC", "ma_dvc"),
        ("MaCanBo", "ma_can_bo"),
        ("MaDonVi", "ma_don_vi"),
        ("MaYeuCau", "ma_yeu_cau"),
    ]
    .into_iter()
    .filter_map(|(tag, name)| Some((name, text(tag)?)))
    .collect();
    Ok(Query {
        id,
        name: text("HoVaTen"),
        birth: text("NgayThangNam").or_else(|| text("Nam")),
        context,
    })
}

async fn lookup(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: String) -> Response {
    let query = parse_request(&body);
    let mut seen = recorded(&headers);
    if let Ok(q) = &query {
        seen.extend(q.context.iter().cloned());
    }
    match sim.control.on_call(OPERATION, seen).await {
        Fault::Down => {
            return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
        }
        Fault::Error => {
            return fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server",
                "Lỗi hệ thống, vui lòng thử lại sau",
            );
        }
        Fault::Malformed => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/xml")],
                "<soap:Envelope><soap:Body><TraCuu",
            )
                .into_response();
        }
        Fault::None => {}
    }
    if let Err(reason) = check_signature(&sim, &headers) {
        return fault(
            StatusCode::UNAUTHORIZED,
            "Client",
            &format!("Xác thực thất bại: {reason}"),
        );
    }
    let query = match query {
        Ok(q) => q,
        Err(reason) => return fault(StatusCode::BAD_REQUEST, "Client", &reason.to_string()),
    };
    let citizen = PersonalId::parse(&query.id, 9999)
        .ok()
        .and_then(|id| sim.data.citizen(&id))
        .filter(|c| {
            query
                .name
                .as_ref()
                .is_none_or(|n| n.to_lowercase() == c.full_name.to_lowercase())
        })
        .filter(|c| {
            let compact = c.date_of_birth.replace('-', "");
            query
                .birth
                .as_ref()
                .is_none_or(|b| compact.starts_with(b.as_str()))
        });
    let mut body = format!("<{OPERATION}Response xmlns=\"{NAMESPACE}\"><CongdanCollection>");
    if let Some(c) = citizen {
        write_citizen(&mut body, &c);
    }
    body.push_str(&format!("</CongdanCollection></{OPERATION}Response>"));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        soap(&body),
    )
        .into_response()
}

fn leaf(out: &mut String, tag: &str, value: &str) {
    if !value.is_empty() {
        let _ = write!(out, "<{tag}>{}</{tag}>", escape(value));
    }
}

fn compact_date(iso: &str) -> String {
    iso.replace('-', "")
}

fn write_address(out: &mut String, tag: &str, a: Option<&Address>) {
    let Some(a) = a else { return };
    let _ = write!(out, "<{tag}>");
    leaf(out, "MaTinhThanh", &a.province_code);
    leaf(out, "TenTinhThanh", &a.province_name);
    leaf(out, "MaQuanHuyen", &a.district_code);
    leaf(out, "TenQuanHuyen", &a.district_name);
    leaf(out, "MaPhuongXa", &a.commune_code);
    leaf(out, "TenPhuongXa", &a.commune_name);
    leaf(out, "ChiTiet", &a.detail);
    leaf(out, "QuocGia", &a.country);
    let _ = write!(out, "</{tag}>");
}

fn write_relative(out: &mut String, tag: &str, r: Option<&Relative>) {
    let Some(r) = r else { return };
    let _ = write!(out, "<{tag}>");
    leaf(out, "HoVaTen", &r.full_name);
    leaf(out, "QuocTich", &r.nationality);
    leaf(out, "SoDinhDanh", &r.personal_id);
    leaf(out, "SoCMND", &r.old_id_number);
    let _ = write!(out, "</{tag}>");
}

/// Marital status as the population database codes it.
fn marital_code(status: &str) -> &'static str {
    match status {
        "single" => "1",
        "married" => "2",
        "divorced" => "3",
        "widowed" => "4",
        _ => "",
    }
}

fn write_citizen(out: &mut String, c: &Citizen) {
    out.push_str("<CongDan>");
    leaf(out, "SoDinhDanh", &c.personal_id);
    leaf(out, "SoCMND", &c.old_id_number);
    let words: Vec<&str> = c.full_name.split(' ').collect();
    out.push_str("<HoVaTen>");
    leaf(out, "Ho", words.first().copied().unwrap_or_default());
    leaf(
        out,
        "ChuDem",
        &words[1..words.len().saturating_sub(1).max(1)].join(" "),
    );
    leaf(
        out,
        "Ten",
        if words.len() > 1 {
            words[words.len() - 1]
        } else {
            ""
        },
    );
    out.push_str("</HoVaTen>");
    leaf(out, "TenGoiKhac", &c.other_name);
    leaf(out, "GioiTinh", if c.sex == "male" { "1" } else { "2" });
    out.push_str("<NgayThangNamSinh>");
    leaf(out, "NgayThangNam", &compact_date(&c.date_of_birth));
    out.push_str("</NgayThangNamSinh>");
    leaf(out, "DanToc", &c.ethnicity_code);
    leaf(out, "TonGiao", &c.religion);
    leaf(out, "QuocTich", &c.nationality);
    leaf(out, "NhomMau", &c.blood_group);
    leaf(out, "TinhTrangHonNhan", marital_code(&c.marital_status));
    write_address(
        out,
        "NoiDangKyKhaiSinh",
        c.birth_registration_place.as_ref(),
    );
    write_address(out, "QueQuan", c.home_town.as_ref());
    write_address(out, "ThuongTru", c.permanent_residence.as_ref());
    write_address(out, "TamTru", c.temporary_residence.as_ref());
    write_address(out, "NoiOHienTai", c.current_residence.as_ref());
    out.push_str("<ChuHo>");
    leaf(out, "SoDinhDanh", &c.household_head_id);
    leaf(out, "QuanHe", &c.relation_to_head);
    out.push_str("</ChuHo>");
    write_relative(out, "Cha", c.father.as_ref());
    write_relative(out, "Me", c.mother.as_ref());
    write_relative(out, "VoChong", c.spouse.as_ref());
    write_relative(out, "NguoiDaiDien", c.legal_representative.as_ref());
    leaf(out, "NgayMat", &compact_date(&c.date_of_death));
    leaf(out, "ThoiDiemDuLieu", &super::stated_time(&c.personal_id));
    out.push_str("</CongDan>");
}
