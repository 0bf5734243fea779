//! The vehicle-registry simulator (đăng ký xe): a vehicle by its plate over gRPC
//! (`vehicles.v1.VehicleRegistry`), behind an API key in the `x-api-key` metadata, with
//! server reflection. Its interface is not compiled into the gateway's descriptors: a gateway
//! learns it by an uploaded descriptor set ([`crate::proto::VEHICLES_DESCRIPTOR_SET`], as
//! the registry would hand it over) or by reflection.
//!
//! A plate is written `{province:2}{series}-{number:5}`, e.g. `29A-01234`: the province of
//! the owner's residence, a series letter and a number.

use super::control::{Control, Fault};
use super::data::SimData;
use crate::proto::vehicles::vehicle_registry_server::{VehicleRegistry, VehicleRegistryServer};
use crate::proto::vehicles::{ChuXe, PhuongTien, TraCuuPhuongTienRequest};
use axum::Router;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The operation name, as counted in `/_sim/stats`.
pub const OPERATION: &str = "TraCuuPhuongTien";
/// The full method, as a connector names it.
pub const METHOD: &str = "vehicles.v1.VehicleRegistry/TraCuuPhuongTien";
/// The dataset name the docs and `lienthong sim samples` use for it.
pub const DATASET: &str = "vehicles.vehicle";
const SERIES: &[u8] = b"ABCDEFGHKLMNPSTUVXYZ";
const MAKES: &[(&str, &str)] = &[
    ("Honda", "Xe mô tô"),
    ("Yamaha", "Xe mô tô"),
    ("Toyota", "Xe ô tô con"),
    ("Hyundai", "Xe ô tô con"),
    ("VinFast", "Xe ô tô con"),
    ("Thaco", "Xe ô tô tải"),
];
const COLOURS: &[&str] = &["Đen", "Trắng", "Đỏ", "Xanh", "Bạc", "Xám"];

struct Sim {
    data: Arc<SimData>,
    api_key: String,
    control: Arc<Control>,
    /// Access tokens of the sector's authorization server (the social-insurance
    /// simulator's token endpoint), accepted as `authorization: Bearer …`.
    tokens: Arc<super::insurance::Tokens>,
}

/// gRPC service, reflection and control routes on one port.
pub fn router(
    data: Arc<SimData>,
    api_key: String,
    control: Arc<Control>,
    tokens: Arc<super::insurance::Tokens>,
) -> Router {
    let service = VehicleRegistryServer::new(Sim {
        data,
        api_key,
        control: control.clone(),
        tokens,
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::VEHICLES_DESCRIPTOR_SET)
        .build_v1()
        .expect("the build's vehicle descriptors");
    tonic::service::Routes::new(service)
        .add_service(reflection)
        .into_axum_router()
        .merge(control.router())
}

/// The plate of the vehicle of the citizen at generation index `i` (one in three has one).
pub fn plate_of(data: &SimData, i: u32) -> Option<String> {
    if !i.is_multiple_of(3) {
        return None;
    }
    let c = data.citizen_at(i)?;
    let residence = c.permanent_residence.as_ref()?;
    let province: u32 = residence.province_code.parse().ok()?;
    let n = i / 3;
    // Numbers run from 00001 to 99999 in each series.
    let series = *SERIES.get((n / 99_999) as usize)? as char;
    Some(format!(
        "{:02}{series}-{:05}",
        province % 100,
        n % 99_999 + 1
    ))
}

/// The vehicle with this plate, if one was generated.
pub fn vehicle(data: &SimData, plate: &str) -> Option<PhuongTien> {
    let (head, number) = plate.split_once('-')?;
    let series = head.chars().nth(2)?;
    let s = SERIES.iter().position(|c| *c as char == series)? as u32;
    let n = (s * 99_999 + number.parse::<u32>().ok()?).checked_sub(1)?;
    let i = n.checked_mul(3)?;
    if plate_of(data, i).as_deref() != Some(plate) {
        return None;
    }
    let c = data.citizen_at(i)?;
    let (make, kind) = MAKES[(n as usize) % MAKES.len()];
    let year = 2010 + (n % 15);
    Some(PhuongTien {
        bien_so: plate.to_owned(),
        loai_xe: kind.into(),
        nhan_hieu: make.into(),
        so_khung: format!("RL{:015}", u64::from(n) * 7919 % 1_000_000_000_000_000),
        so_may: format!("E{:09}", u64::from(n) * 104_729 % 1_000_000_000),
        mau_son: COLOURS[(n as usize) % COLOURS.len()].into(),
        ngay_dang_ky: format!("{year}-{:02}-{:02}", n % 12 + 1, n % 28 + 1),
        chu_xe: Some(ChuXe {
            ho_ten: c.full_name,
            so_dinh_danh: c.personal_id,
        }),
        thoi_diem_du_lieu: super::stated_time(plate),
    })
}

#[tonic::async_trait]
impl VehicleRegistry for Sim {
    async fn tra_cuu_phuong_tien(
        &self,
        request: Request<TraCuuPhuongTienRequest>,
    ) -> Result<Response<PhuongTien>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let key = request
            .metadata()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok());
        match bearer {
            Some(token) => self.tokens.check(token).map_err(Status::unauthenticated)?,
            None if key != Some(self.api_key.as_str()) => {
                return Err(Status::unauthenticated("thiếu hoặc sai x-api-key"));
            }
            None => {}
        }
        let r = request.get_ref();
        let seen = [
            ("ma_dvc", r.ma_dvc.clone()),
            ("ma_can_bo", r.ma_can_bo.clone()),
        ];
        match self.control.on_call(OPERATION, seen).await {
            Fault::Down => return Err(Status::unavailable("hệ thống đang bảo trì")),
            Fault::Error => return Err(Status::internal("lỗi hệ thống")),
            Fault::Malformed => return Ok(Response::new(PhuongTien::default())),
            Fault::None => {}
        }
        match vehicle(&self.data, r.bien_so.trim()) {
            Some(v) => Ok(Response::new(v)),
            None => Err(Status::not_found("không tìm thấy phương tiện")),
        }
    }
}
