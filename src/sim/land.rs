//! The land-registry simulator: parcel lookup over gRPC (`cadastre.v1.CadastreService`), its
//! own message names mapped by the gateway's connector.

use super::control::{Control, Fault};
use super::data::SimData;
use crate::domain::ids::ParcelId;
use crate::proto::cadastre::cadastre_service_server::{CadastreService, CadastreServiceServer};
use crate::proto::cadastre::{DiaChi, NguoiSuDung, ThuaDat, TraCuuThuaDatRequest};
use crate::proto::lienthong::LandParcel;
use axum::Router;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The operation name, as counted in `/_sim/stats`.
pub const OPERATION: &str = "TraCuuThuaDat";

struct Sim {
    data: Arc<SimData>,
    control: Arc<Control>,
}

/// gRPC service and control routes on one port.
pub fn router(data: Arc<SimData>, control: Arc<Control>) -> Router {
    let service = CadastreServiceServer::new(Sim {
        data,
        control: control.clone(),
    });
    // Server reflection, as a provider that offers it: a client needs no proto file.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::CADASTRE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the build's cadastre descriptors");
    tonic::service::Routes::new(service)
        .add_service(reflection)
        .into_axum_router()
        .merge(control.router())
}

fn render(p: &LandParcel) -> ThuaDat {
    let a = p.address.clone().unwrap_or_default();
    ThuaDat {
        ma_xa: p.commune_code.clone(),
        so_to: p.map_sheet,
        so_thua: p.parcel_number,
        dien_tich: p.area_m2,
        muc_dich_su_dung: p.land_use_purposes.clone(),
        thoi_han_su_dung: if p.term_of_use == "long-term" {
            "Lâu dài".into()
        } else {
            p.term_of_use.clone()
        },
        hinh_thuc_su_dung: if p.form_of_use == "shared" {
            "Sử dụng chung".into()
        } else {
            "Sử dụng riêng".into()
        },
        nguoi_su_dung: p
            .land_users
            .iter()
            .map(|u| NguoiSuDung {
                ho_ten: u.full_name.clone(),
                loai_giay_to: if u.id_kind == "enterprise_code" {
                    "MSDN".into()
                } else {
                    "CCCD".into()
                },
                so_giay_to: u.id.clone(),
            })
            .collect(),
        so_phat_hanh_gcn: p.certificate_serial.clone(),
        the_chap: p.mortgaged,
        tranh_chap: p.disputed,
        dia_chi: Some(DiaChi {
            ma_tinh: a.province_code,
            ten_tinh: a.province_name,
            ma_xa: a.commune_code,
            ten_xa: a.commune_name,
            chi_tiet: a.detail,
        }),
        thoi_diem_du_lieu: super::stated_time(&p.parcel_id),
    }
}

#[tonic::async_trait]
impl CadastreService for Sim {
    async fn tra_cuu_thua_dat(
        &self,
        request: Request<TraCuuThuaDatRequest>,
    ) -> Result<Response<ThuaDat>, Status> {
        let mut seen: Vec<(&str, String)> = ["traceparent", "authorization"]
            .into_iter()
            .filter_map(|k| Some((k, request.metadata().get(k)?.to_str().ok()?.to_owned())))
            .map(|(k, v)| {
                if k == "authorization" {
                    (k, "present".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        let r = request.get_ref();
        seen.extend([
            ("ma_dvc", r.ma_dvc.clone()),
            ("ma_can_bo", r.ma_can_bo.clone()),
            ("ma_don_vi", r.ma_don_vi.clone()),
        ]);
        match self.control.on_call(OPERATION, seen).await {
            Fault::Down => return Err(Status::unavailable("hệ thống đang bảo trì")),
            Fault::Error => return Err(Status::internal("lỗi hệ thống")),
            // A reply missing the parcel's identity: decodable, but not a usable record.
            Fault::Malformed => {
                return Ok(Response::new(ThuaDat {
                    dien_tich: -1.0,
                    ..ThuaDat::default()
                }));
            }
            Fault::None => {}
        }
        let key = format!("{}-{}-{}", r.ma_xa, r.so_to, r.so_thua);
        let id = ParcelId::parse(&key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.data.parcel(&id) {
            Some(p) => Ok(Response::new(render(&p))),
            None => Err(Status::not_found("không tìm thấy thửa đất")),
        }
    }
}
