//! A gRPC dataset registered at run time with its provider's descriptors, uploaded through
//! the admin API as a `FileDescriptorSet`: looked up with no restart. A descriptor set
//! without the method, a request template naming a field the message lacks, and bytes that
//! are not a descriptor set are each refused with a 400 naming what is wrong, and nothing is
//! applied.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "demo-operator-token";

async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    h.admin_call(method, path, OPERATOR, body).await
}

/// The descriptor set of the file that declares `service`, as a provider would hand it over
/// (`protoc --descriptor_set_out --include_imports`), in Base64.
fn descriptor_set_of(service: &str) -> String {
    let pool = lienthong::domain::dataset::descriptors();
    let file = pool
        .get_service_by_name(service)
        .expect("a compiled service")
        .parent_file();
    let mut files: Vec<prost_types::FileDescriptorProto> = file
        .dependencies()
        .map(|d| d.file_descriptor_proto().clone())
        .collect();
    files.push(file.file_descriptor_proto().clone());
    let set = prost_types::FileDescriptorSet { file: files };
    BASE64.encode(set.encode_to_vec())
}

fn land_brief(h: &Harness, name: &str, descriptor_set: &str, request: Value) -> Value {
    json!({
        "name": name,
        "description": "A parcel's area and the commune it lies in",
        "key": {"pattern": "[0-9]{5}-[0-9]+-[0-9]+"},
        "key_field": "parcel_id",
        "fields": [
            {"name": "parcel_id", "type": "string"},
            {"name": "commune_code", "type": "string"},
            {"name": "area_m2", "type": "double"}
        ],
        "connector": {
            "name": format!("{name}-grpc"),
            "kind": "grpc",
            "endpoint": format!("http://{}", h.sims.land_addr),
            "timeout_ms": 3000,
            "grpc": {
                "method": "cadastre.v1.CadastreService/TraCuuThuaDat",
                "descriptor_set": descriptor_set,
                "request": request
            },
            "mapping": {
                "parcel_id": {"join": ["ma_xa", "so_to", "so_thua"], "sep": "-"},
                "commune_code": "ma_xa",
                "area_m2": "dien_tich"
            }
        }
    })
}

fn parcel_request() -> Value {
    json!({"ma_xa": "{key.0}", "so_to": "{key.1}", "so_thua": "{key.2}"})
}

#[tokio::test]
async fn a_grpc_dataset_joins_with_its_uploaded_descriptors() {
    let h = Harness::start().await;
    let parcel = h.sample("land.parcel");
    let cadastre = descriptor_set_of("cadastre.v1.CadastreService");

    // The descriptors of another service: the method is not among them.
    let other = descriptor_set_of("lienthong.v1.LookupService");
    let (status, body) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        Some(land_brief(&h, "land.brief", &other, parcel_request())),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("grpc.method")
            && detail.contains("is not a method of the uploaded descriptors"),
        "{detail}"
    );
    assert!(
        detail.contains("lienthong.v1.LookupService/GetCitizen"),
        "{detail}"
    );

    // A template field the request message lacks.
    let mut request = parcel_request();
    request["so_nha"] = json!("{key.0}");
    let (status, body) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        Some(land_brief(&h, "land.brief", &cadastre, request)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("grpc.request.so_nha")
            && detail.contains("cadastre.v1.TraCuuThuaDatRequest has no field \"so_nha\""),
        "{detail}"
    );

    // Bytes that are not a descriptor set.
    let (status, body) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        Some(land_brief(
            &h,
            "land.brief",
            &BASE64.encode(b"not protobuf"),
            parcel_request(),
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("grpc.descriptor_set: is not a usable FileDescriptorSet"),
        "{body}"
    );
    let (_, versions) = admin(&h, Method::GET, "/admin/v1/registry/versions", None).await;
    assert_eq!(versions["running"], 1, "nothing applied: {versions}");

    // With the right descriptors: registered (probed first), granted, looked up.
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={parcel}"),
        Some(land_brief(&h, "land.brief", &cadastre, parcel_request())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h.grant_all("land.brief").await;
    assert_eq!(status, 200, "{body}");
    let r = h
        .get(&format!("/v1/datasets/land.brief/records/{parcel}"))
        .await;
    assert_eq!(r.status(), 200);
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["parcel_id"], parcel.as_str(), "{record}");
    let id = lienthong::domain::ids::ParcelId::parse(&parcel).unwrap();
    let expected = h.sims.data.parcel(&id).unwrap();
    assert_eq!(record["area_m2"], json!(expected.area_m2), "{record}");
}

#[tokio::test]
async fn a_grpc_dataset_joins_with_descriptors_read_by_server_reflection() {
    let h = Harness::start().await;
    let parcel = h.sample("land.parcel");
    let reflected = |endpoint: String| {
        let mut d = land_brief(&h, "land.reflected", "", parcel_request());
        d["connector"]["endpoint"] = json!(endpoint);
        let grpc = d["connector"]["grpc"].as_object_mut().unwrap();
        grpc.remove("descriptor_set");
        grpc.insert("reflection".into(), json!(true));
        d
    };

    // A provider that offers no reflection (the business registry speaks REST), and one
    // that is not there: refused, naming why, nothing applied.
    for endpoint in [format!("http://{}", h.sims.business_addr), {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        format!("http://127.0.0.1:{port}")
    }] {
        let (status, body) = admin(
            &h,
            Method::POST,
            "/admin/v1/datasets",
            Some(reflected(endpoint.clone())),
        )
        .await;
        assert_eq!(status, 400, "{endpoint}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(
                "grpc.reflection: the descriptors of cadastre.v1.CadastreService could not be read"
            ),
            "{detail}"
        );
    }
    let (_, versions) = admin(&h, Method::GET, "/admin/v1/registry/versions", None).await;
    assert_eq!(versions["running"], 1, "nothing applied: {versions}");

    // The land registry offers reflection: its descriptors are read and kept.
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={parcel}"),
        Some(reflected(format!("http://{}", h.sims.land_addr))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let shown = body["after"]["connector"]["grpc"]["descriptor_set"]
        .as_str()
        .unwrap_or_default();
    assert!(shown.starts_with("sha256:"), "{body}");
    let running = h.gateway.live.current();
    let (_, connectors) = running
        .config()
        .settings
        .files
        .iter()
        .find(|(role, _)| role == "connectors")
        .expect("the connectors file");
    assert!(
        connectors.contains("descriptor_set = "),
        "kept in the registry"
    );
    assert!(!connectors.contains("reflection"), "{connectors}");
    let (status, body) = h.grant_all("land.reflected").await;
    assert_eq!(status, 200, "{body}");
    let r = h
        .get(&format!("/v1/datasets/land.reflected/records/{parcel}"))
        .await;
    assert_eq!(r.status(), 200);
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["parcel_id"], parcel.as_str(), "{record}");
}

/// The vehicle registry: its interface is not compiled into the gateway.
fn vehicles(h: &Harness, name: &str, grpc: Value, api_key: &str) -> Value {
    json!({
        "name": name,
        "description": "A vehicle by its plate, and its owner",
        "key": {"pattern": "[0-9]{2}[A-Z]-[0-9]{5}"},
        "key_field": "plate",
        "fields": [
            {"name": "plate", "type": "string"},
            {"name": "make", "type": "string"},
            {"name": "registered_on", "type": "string"},
            {"name": "owner_name", "type": "string"},
            {"name": "owner_id", "type": "string", "personal_id": true}
        ],
        "connector": {
            "name": format!("{name}-grpc"),
            "kind": "grpc",
            "endpoint": format!("http://{}", h.sims.vehicles_addr),
            "timeout_ms": 3000,
            "auth": {"scheme": "api-key", "header": "x-api-key", "api_key": api_key},
            "grpc": grpc,
            "mapping": {
                "plate": "bien_so",
                "make": "nhan_hieu",
                "registered_on": "ngay_dang_ky",
                "owner_name": "chu_xe.ho_ten",
                "owner_id": "chu_xe.so_dinh_danh"
            }
        }
    })
}

#[tokio::test]
async fn a_grpc_provider_unknown_to_the_build_joins_by_upload_or_by_reflection() {
    let h = Harness::start().await;
    let plates = h.sims.data.samples("vehicles.vehicle", 3).unwrap();
    let request = json!({"bien_so": "{key}", "ma_can_bo": "{context.officer_id}", "ma_dvc": "{context.procedure_code}"});
    let method = lienthong::sim::vehicles::METHOD;
    let key = lienthong::sim::DEFAULT_VEHICLES_API_KEY;

    // Not in the gateway's compiled descriptors: refused without the provider's.
    let (status, body) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        Some(vehicles(
            &h,
            "vehicles.vehicle",
            json!({"method": method, "request": request}),
            key,
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is not a method of the gateway's compiled descriptors"),
        "{body}"
    );

    // Uploaded as the registry hands them over; a wrong API key is refused by the probe.
    let uploaded = json!({
        "method": method,
        "descriptor_set": BASE64.encode(lienthong::proto::VEHICLES_DESCRIPTOR_SET),
        "request": request,
    });
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={}", plates[0]),
        Some(vehicles(
            &h,
            "vehicles.vehicle",
            uploaded.clone(),
            "wrong-key",
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Unauthenticated"),
        "{body}"
    );
    for (name, grpc) in [
        ("vehicles.vehicle", uploaded),
        (
            "vehicles.reflected",
            json!({"method": method, "reflection": true, "request": request}),
        ),
    ] {
        let (status, body) = admin(
            &h,
            Method::POST,
            &format!("/admin/v1/datasets?probe_key={}", plates[0]),
            Some(vehicles(&h, name, grpc, key)),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, body) = h.grant_all(name).await;
        assert_eq!(status, 200, "{body}");
        let r = h
            .get(&format!("/v1/datasets/{name}/records/{}", plates[1]))
            .await;
        assert_eq!(r.status(), 200, "{name}");
        let record: Value = r.json().await.unwrap();
        let expected = lienthong::sim::vehicles::vehicle(&h.sims.data, &plates[1]).unwrap();
        let owner = expected.chu_xe.unwrap();
        assert_eq!(record["plate"], plates[1].as_str(), "{record}");
        assert_eq!(record["owner_name"], owner.ho_ten.as_str(), "{record}");
        assert_eq!(record["owner_id"], owner.so_dinh_danh.as_str(), "{record}");
    }
    assert_eq!(
        h.sims.vehicles.last_seen("ma_can_bo").as_deref(),
        Some(OFFICER),
        "the officer's context went on to the provider"
    );
}

#[tokio::test]
async fn a_grpc_provider_takes_oauth2_tokens_in_metadata_and_a_rejected_one_is_fetched_again() {
    let h = Harness::start().await;
    let plates = h.sims.data.samples("vehicles.vehicle", 3).unwrap();
    let mut dataset = vehicles(
        &h,
        "vehicles.oauth",
        json!({
            "method": lienthong::sim::vehicles::METHOD,
            "descriptor_set": BASE64.encode(lienthong::proto::VEHICLES_DESCRIPTOR_SET),
            "request": {"bien_so": "{key}"},
        }),
        "unused",
    );
    // The sector's authorization server (the social-insurance simulator's token endpoint)
    // issues the tokens the vehicle registry takes as `authorization: Bearer …`.
    dataset["connector"]["data_time"] = json!("thoi_diem_du_lieu");
    dataset["connector"]["auth"] = json!({
        "scheme": "oauth2",
        "token_url": format!("http://{}{}", h.sims.insurance_addr, lienthong::sim::insurance::TOKEN_PATH),
        "client_id": lienthong::sim::DEFAULT_INSURANCE_CLIENT_ID,
        "client_secret": lienthong::sim::DEFAULT_INSURANCE_CLIENT_SECRET,
        "client_auth": "basic",
    });
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={}", plates[0]),
        Some(dataset),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.grant_all("vehicles.oauth").await;
    assert_eq!(status, 200);
    let tokens = || {
        h.sims
            .insurance
            .calls(lienthong::sim::insurance::TOKEN_BASIC)
    };
    let fetched = tokens();
    assert!(fetched >= 1, "the probe fetched a token");
    let look = |plate: String| {
        let h = &h;
        async move {
            h.get(&format!("/v1/datasets/vehicles.oauth/records/{plate}"))
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(look(plates[1].clone()).await, 200);
    assert_eq!(tokens(), fetched, "the token is reused while it lasts");
    let stated = h
        .get(&format!(
            "/v1/datasets/vehicles.oauth/records/{}",
            plates[1]
        ))
        .await;
    assert_eq!(
        data_time_of(&stated),
        stated_time(&plates[1]),
        "the registry's own time of the record, passed on"
    );
    // The authorization server forgets every token: the provider answers UNAUTHENTICATED,
    // and the gateway fetches one new token and tries once more.
    let forgot = h
        .http
        .post(format!(
            "http://{}/_sim/revoke-tokens",
            h.sims.insurance_addr
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(forgot.status(), 200);
    assert_eq!(look(plates[2].clone()).await, 200);
    assert_eq!(tokens(), fetched + 1);
}
