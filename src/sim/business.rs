//! The business-registration simulator: enterprise details over REST/JSON, shaped like the
//! `ChiTietDoanhNghiep` lookup seen in provincial integration code, behind a bearer token.

use super::control::{Control, Fault, recorded};
use super::data::SimData;
use crate::domain::ids::EnterpriseCode;
use crate::proto::lienthong::Enterprise;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Path of the lookup operation.
pub const PATH: &str = "/api/dkkd/v1/doanhnghiep";
/// The operation name, as counted in `/_sim/stats`.
pub const OPERATION: &str = "ChiTietDoanhNghiep";

struct Sim {
    data: Arc<SimData>,
    token: String,
    control: Arc<Control>,
}

pub fn router(data: Arc<SimData>, token: String, control: Arc<Control>) -> Router {
    let sim = Arc::new(Sim {
        data,
        token,
        control: control.clone(),
    });
    Router::new()
        .route(PATH, post(lookup))
        .route(&format!("{PATH}/{{msdn}}"), get(lookup_by_path))
        .with_state(sim)
        .merge(control.router())
}

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "type")]
    kind: String,
    msdn: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "StatusCode": status.as_u16(), "Message": message, "Data": null })),
    )
        .into_response()
}

/// Status as the registry words it.
fn status_text(status: &str) -> &'static str {
    match status {
        "operating" => "Đang hoạt động",
        "suspended" => "Tạm ngừng kinh doanh",
        "not_at_registered_address" => "Không hoạt động tại địa chỉ đã đăng ký",
        "revoked_tax_enforcement" => "Bị thu hồi do cưỡng chế nợ thuế",
        "reorganizing" => "Đang làm thủ tục giải thể, chia, hợp nhất, sáp nhập",
        "bankruptcy" => "Đang làm thủ tục phá sản",
        _ => "Đã giải thể, phá sản, chấm dứt tồn tại",
    }
}

/// ISO date to the registry's dd/MM/yyyy.
fn registry_date(iso: &str) -> String {
    let parts: Vec<&str> = iso.split('-').collect();
    match parts[..] {
        [y, m, d] => format!("{d}/{m}/{y}"),
        _ => String::new(),
    }
}

fn render(e: &Enterprise) -> Value {
    let office = e.head_office.clone().unwrap_or_default();
    json!({
        "ThoiDiemCapNhat": super::stated_time(&e.enterprise_code),
        "MainInformation": {
            "ENTERPRISE_CODE": e.enterprise_code,
            "NAME": e.name,
            "NAME_F": e.foreign_name,
            "SHORT_NAME": e.short_name,
            "ENTERPRISE_TYPE": e.enterprise_type,
            "FOUNDING_DATE": registry_date(&e.founding_date),
            "CAPITAL": e.charter_capital,
            "STATUS": status_text(&e.status),
            "PARENT_CODE": if e.parent_code.is_empty() { Value::Null } else { json!(e.parent_code) },
        },
        "HOAdress": {
            "CITY_ID": office.province_code,
            "CITY_NAME": office.province_name,
            "WARD_ID": office.commune_code,
            "WARD_NAME": office.commune_name,
            "STREET": office.detail,
            "COUNTRY": office.country,
        },
        "Representatives": e.legal_representatives.iter().map(|r| json!({
            "FULL_NAME": r.full_name,
            "POSITION": r.title,
            "ID_NUMBER": r.personal_id,
        })).collect::<Vec<_>>(),
        "BusinessLines": e.business_lines.iter().map(|b| json!({
            "CODE": b.vsic_code,
            "NAME": b.name,
            "IS_MAIN": b.main,
        })).collect::<Vec<_>>(),
    })
}

/// The same lookup as a GET of `PATH/{msdn}`, which caching proxies can front as they are
/// (the benchmarks' nginx and HAProxy peers use it).
async fn lookup_by_path(
    state: State<Arc<Sim>>,
    headers: HeaderMap,
    Path(msdn): Path<String>,
) -> Response {
    let body = json!({ "type": OPERATION, "msdn": msdn }).to_string();
    lookup(state, headers, axum::body::Bytes::from(body)).await
}

async fn lookup(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match sim.control.on_call(OPERATION, recorded(&headers)).await {
        Fault::Down => return error(StatusCode::SERVICE_UNAVAILABLE, "Hệ thống đang bảo trì"),
        Fault::Error => return error(StatusCode::INTERNAL_SERVER_ERROR, "Lỗi hệ thống"),
        Fault::Malformed => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"Data\": {\"MainInfor",
            )
                .into_response();
        }
        Fault::None => {}
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == sim.token);
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Token không hợp lệ");
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Yêu cầu không hợp lệ: cần {type, msdn}",
            );
        }
    };
    if request.kind != OPERATION {
        return error(StatusCode::BAD_REQUEST, "type không được hỗ trợ");
    }
    let found = EnterpriseCode::parse(&request.msdn)
        .ok()
        .and_then(|c| sim.data.enterprise(&c));
    match found {
        Some(e) => {
            Json(json!({ "StatusCode": 200, "Message": "OK", "Data": render(&e) })).into_response()
        }
        None => Json(
            json!({ "StatusCode": 404, "Message": "Không tìm thấy doanh nghiệp", "Data": null }),
        )
        .into_response(),
    }
}
