//! End to end over real sockets: the gateway in front of the real simulators.

mod common;

use common::*;
use lienthong::domain::ids::{EnterpriseCode, ParcelId, PersonalId};
use lienthong::proto::lienthong::*;
use lienthong::sim::control::Faults;
use serde_json::{Value, json};

fn canonical<T: serde::Serialize>(record: &T) -> Value {
    serde_json::to_value(record).expect("serialises")
}

async fn body(r: reqwest::Response) -> Value {
    r.json().await.expect("json body")
}

#[tokio::test]
async fn each_dataset_serves_the_simulators_record_over_rest_and_grpc() {
    let h = Harness::start().await;
    let mut grpc = h.grpc().await;

    let id = h.sample("population.citizen");
    let expected = h
        .sims
        .data
        .citizen(&PersonalId::parse(&id, 2026).expect("valid"))
        .expect("exists");
    let rest = h.get(&format!("/v1/citizens/{id}")).await;
    assert_eq!(rest.status(), 200);
    assert_eq!(rest.headers()["x-cache"], "miss");
    assert!(rest.headers().contains_key("x-request-id"));
    assert_eq!(
        body(rest).await,
        canonical(&expected),
        "REST citizen matches the simulator"
    );
    let reply = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id.clone(),
            fields: vec![],
        }))
        .await
        .expect("grpc citizen");
    // The same key again, now over gRPC: served from the cache, the provider asked once.
    assert_eq!(
        reply.metadata().get("x-cache").map(|v| v.to_str().ok()),
        Some(Some("hit"))
    );
    let reply = reply.into_inner();
    assert_eq!(reply.info.expect("info").cache, "hit");
    assert_eq!(
        reply.record,
        Some(expected),
        "gRPC citizen matches the simulator"
    );
    assert_eq!(h.sims.population.calls("TraCuuThongTinCongDan"), 1);

    let code = h.sample("business.enterprise");
    let expected = h
        .sims
        .data
        .enterprise(&EnterpriseCode::parse(&code).expect("valid"))
        .expect("exists");
    assert_eq!(
        body(h.get(&format!("/v1/enterprises/{code}")).await).await,
        canonical(&expected)
    );
    let reply = grpc
        .get_enterprise(authed(GetEnterpriseRequest {
            context: context(),
            enterprise_code: code,
            fields: vec![],
        }))
        .await
        .expect("grpc enterprise");
    assert_eq!(reply.into_inner().record, Some(expected));

    let parcel = h.sample("land.parcel");
    let expected = h
        .sims
        .data
        .parcel(&ParcelId::parse(&parcel).expect("valid"))
        .expect("exists");
    assert_eq!(
        body(h.get(&format!("/v1/land-parcels/{parcel}")).await).await,
        canonical(&expected)
    );
    let reply = grpc
        .get_land_parcel(authed(GetLandParcelRequest {
            context: context(),
            parcel_id: parcel.clone(),
            fields: vec![],
        }))
        .await
        .expect("grpc parcel");
    assert_eq!(reply.into_inner().record, Some(expected.clone()));

    // The generic routes serve the same record.
    let generic = body(
        h.get(&format!("/v1/datasets/land.parcel/records/{parcel}"))
            .await,
    )
    .await;
    assert_eq!(generic, canonical(&expected));
    let reply = grpc
        .get(authed(GetRequest {
            context: context(),
            dataset: "land.parcel".into(),
            key: parcel,
            fields: vec![],
        }))
        .await
        .expect("grpc get")
        .into_inner();
    let as_json = serde_json::to_value(reply.record.expect("record")).expect("struct to json");
    assert_eq!(as_json["parcel_id"], canonical(&expected)["parcel_id"]);
    assert_eq!(as_json["land_users"], canonical(&expected)["land_users"]);
}

#[tokio::test]
async fn fields_parameter_projects_the_record() {
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    let r = body(
        h.get(&format!("/v1/citizens/{id}?fields=full_name,date_of_birth"))
            .await,
    )
    .await;
    let keys: Vec<&String> = r.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["date_of_birth", "full_name"]);
    let r = h
        .get(&format!("/v1/citizens/{id}?fields=full_name,shoe_size"))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(body(r).await["code"], "invalid_request");
}

#[tokio::test]
async fn error_paths_follow_the_error_table() {
    // Each failure below is checked on its own: the breaker (tested in tests/guard.rs) is
    // kept from opening on the run of them.
    let h = Harness::start_with(|_, c| {
        c.replace("timeout_ms = 3000", "timeout_ms = 400").replace(
            "[connector.guard]\n",
            "[connector.guard]\nbreaker_consecutive_failures = 1000\nbreaker_min_calls = 1000\n",
        )
    })
    .await;
    let mut grpc = h.grpc().await;
    let problem = |status: u16, code: &'static str| {
        move |r: (u16, Value)| {
            assert_eq!(r.0, status, "{code}: {}", r.1);
            assert_eq!(r.1["code"], code);
            assert_eq!(r.1["status"], status);
            r.1
        }
    };
    async fn send(r: reqwest::Response) -> (u16, Value) {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "problem body"
        );
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    // Malformed keys, naming the rule broken.
    let p = problem(400, "invalid_key")(send(h.get("/v1/citizens/00109001234").await).await);
    assert!(p["detail"].as_str().expect("detail").contains("12 digits"));
    let p = problem(400, "invalid_key")(send(h.get("/v1/enterprises/0100233489").await).await);
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("check digit")
    );
    problem(400, "invalid_key")(send(h.get("/v1/land-parcels/99999-1-1").await).await);
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: "12345".into(),
            fields: vec![],
        }))
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        h.sims.population.calls("TraCuuThongTinCongDan"),
        0,
        "no upstream call for malformed keys"
    );

    // Well-formed but absent.
    let absent = "001090000001";
    assert!(
        h.sims
            .data
            .citizen(&PersonalId::parse(absent, 2026).expect("valid"))
            .is_none()
    );
    problem(404, "not_found")(send(h.get(&format!("/v1/citizens/{absent}")).await).await);
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: absent.into(),
            fields: vec![],
        }))
        .await
        .expect_err("absent");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let absent_parcel = "00004-60-800";
    if h.sims
        .data
        .parcel(&ParcelId::parse(absent_parcel).expect("valid"))
        .is_none()
    {
        problem(404, "not_found")(
            send(h.get(&format!("/v1/land-parcels/{absent_parcel}")).await).await,
        );
    }
    problem(404, "unknown_dataset")(send(h.get("/v1/datasets/tax.records/records/1").await).await);

    // Credentials and context.
    let anonymous = h
        .http
        .get(format!(
            "{}/v1/citizens/{}",
            h.base,
            h.sample("population.citizen")
        ))
        .send()
        .await
        .expect("sent");
    problem(401, "unauthenticated")(send(anonymous).await);
    let wrong = h
        .http
        .get(format!("{}/v1/citizens/x", h.base))
        .bearer_auth("nope")
        .send()
        .await
        .expect("sent");
    problem(401, "unauthenticated")(send(wrong).await);
    let no_context = h
        .http
        .get(format!(
            "{}/v1/citizens/{}",
            h.base,
            h.sample("population.citizen")
        ))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .send()
        .await
        .expect("sent");
    let p = problem(400, "invalid_context")(send(no_context).await);
    assert!(p["detail"].as_str().expect("detail").contains("dossier_id"));
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: None,
            personal_id: h.sample("population.citizen"),
            fields: vec![],
        }))
        .await
        .expect_err("no context");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // Provider down, failing, malformed, slow: named by dataset, not internals.
    let citizen = h.sample("population.citizen");
    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let p = problem(503, "upstream_unavailable")(
        send(h.get(&format!("/v1/citizens/{citizen}")).await).await,
    );
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("population.citizen")
    );
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: citizen.clone(),
            fields: vec![],
        }))
        .await
        .expect_err("down");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    h.sims.population.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    problem(503, "upstream_unavailable")(
        send(h.get(&format!("/v1/citizens/{citizen}")).await).await,
    );
    h.sims.population.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    problem(502, "upstream_bad_response")(
        send(h.get(&format!("/v1/citizens/{citizen}")).await).await,
    );
    h.sims.population.set_faults(Faults {
        timeout: true,
        ..Faults::default()
    });
    problem(504, "upstream_timeout")(send(h.get(&format!("/v1/citizens/{citizen}")).await).await);
    h.sims.population.set_faults(Faults::default());
    assert_eq!(
        h.get(&format!("/v1/citizens/{citizen}")).await.status(),
        200,
        "recovers"
    );

    let code = h.sample("business.enterprise");
    h.sims.business.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    problem(502, "upstream_bad_response")(
        send(h.get(&format!("/v1/enterprises/{code}")).await).await,
    );
    h.sims.business.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    problem(503, "upstream_unavailable")(
        send(h.get(&format!("/v1/enterprises/{code}")).await).await,
    );

    let parcel = h.sample("land.parcel");
    h.sims.land.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    problem(502, "upstream_bad_response")(
        send(h.get(&format!("/v1/land-parcels/{parcel}")).await).await,
    );
    h.sims.land.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let status = grpc
        .get_land_parcel(authed(GetLandParcelRequest {
            context: context(),
            parcel_id: parcel,
            fields: vec![],
        }))
        .await
        .expect_err("down");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("upstream_unavailable")
    );
}

#[tokio::test]
async fn the_callers_context_reaches_the_provider() {
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    let stats: Value = h
        .http
        .get(format!("http://{}/_sim/stats", h.sims.population_addr))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["calls"]["TraCuuThongTinCongDan"], 1);
    assert_eq!(stats["last_context"]["ma_can_bo"], OFFICER);
    assert_eq!(stats["last_context"]["ma_dvc"], PROCEDURE);
}

#[tokio::test]
async fn batch_gives_one_outcome_per_item_in_order() {
    let h = Harness::start().await;
    let citizen = h.sample("population.citizen");
    let parcel = h.sample("land.parcel");
    let items = json!({"items": [
        {"dataset": "population.citizen", "key": citizen},
        {"dataset": "population.citizen", "key": "001090000001"},
        {"dataset": "business.enterprise", "key": "0100233489"},
        {"dataset": "land.parcel", "key": parcel, "fields": ["parcel_id"]},
        {"dataset": "nope.nothing", "key": "1"},
    ]});
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .json(&items)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let out = body(r).await;
    let outcomes: Vec<&str> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "not_found", "invalid_key", "ok", "unknown_dataset"]
    );
    assert_eq!(out["items"][0]["record"]["personal_id"], citizen.as_str());
    assert_eq!(out["items"][3]["record"], json!({"parcel_id": parcel}));

    let mut grpc = h.grpc().await;
    let request = BatchGetRequest {
        context: context(),
        items: vec![
            BatchItem {
                dataset: "population.citizen".into(),
                key: citizen.clone(),
                fields: vec![],
            },
            BatchItem {
                dataset: "population.citizen".into(),
                key: "001090000001".into(),
                fields: vec![],
            },
            BatchItem {
                dataset: "population.citizen".into(),
                key: "0010900".into(),
                fields: vec![],
            },
        ],
    };
    let mut stream = grpc
        .batch_get(authed(request))
        .await
        .expect("batch")
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.message().await.expect("stream item") {
        got.push((item.index, item.outcome, item.error.map(|e| e.code)));
    }
    assert_eq!(
        got,
        [
            (0, "ok".into(), None),
            (1, "not_found".into(), Some("not_found".into())),
            (2, "invalid_key".into(), Some("invalid_key".into()))
        ]
    );

    let too_many = json!({"items": (0..101).map(|_| json!({"dataset": "land.parcel", "key": parcel})).collect::<Vec<_>>()});
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(API_KEY)
        .json(&too_many)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    assert_eq!(body(r).await["code"], "invalid_request");
}

#[tokio::test]
async fn a_mapping_changed_in_config_moves_the_served_field() {
    let h = Harness::start_with(|_, c| {
        c.replace(
            "short_name = \"MainInformation.SHORT_NAME\"",
            "short_name = \"MainInformation.NAME_F\"",
        )
    })
    .await;
    let code = h.sample("business.enterprise");
    let expected = h
        .sims
        .data
        .enterprise(&EnterpriseCode::parse(&code).expect("valid"))
        .expect("exists");
    let r = body(h.get(&format!("/v1/enterprises/{code}")).await).await;
    assert_eq!(r["short_name"], expected.foreign_name.as_str());
    assert_ne!(r["short_name"], expected.short_name.as_str());
}

#[tokio::test]
async fn a_wrong_upstream_secret_is_refused_by_the_population_simulator() {
    let h = Harness::start_with(|_, c| {
        c.replace("secret = \"demo-population-secret\"", "secret = \"wrong\"")
    })
    .await;
    let r = h
        .get(&format!("/v1/citizens/{}", h.sample("population.citizen")))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(body(r).await["code"], "upstream_unavailable");
    assert_eq!(
        h.sims.population.calls("TraCuuThongTinCongDan"),
        1,
        "the simulator saw and refused the call"
    );
}

#[tokio::test]
async fn reflection_and_health_let_generic_clients_call_without_a_proto_file() {
    use prost::Message;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let h = Harness::start().await;
    let channel = tonic::transport::Channel::from_shared(h.base.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut client = ServerReflectionClient::new(channel.clone());
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "lienthong.v1.LookupService".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "google/protobuf/struct.proto".into(),
        )),
    ];
    let mut replies = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = replies
        .message()
        .await
        .expect("reply")
        .and_then(|r| r.message_response)
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"lienthong.v1.LookupService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    for expected in ["lienthong/v1/lookup.proto", "google/protobuf/struct.proto"] {
        let Some(MessageResponse::FileDescriptorResponse(files)) = replies
            .message()
            .await
            .expect("reply")
            .and_then(|r| r.message_response)
        else {
            panic!("expected a file descriptor for {expected}")
        };
        let names: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|b| {
                prost_types::FileDescriptorProto::decode(b.as_slice())
                    .expect("descriptor")
                    .name()
                    .to_owned()
            })
            .collect();
        assert!(names.contains(&expected.to_owned()), "{names:?}");
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "lienthong.v1.LookupService".into(),
        })
        .await
        .expect("health");
    assert_eq!(
        reply.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test]
async fn admin_listener_answers_health_and_readiness() {
    let h = Harness::start().await;
    let admin = h.gateway.admin_addr;
    for path in ["/healthz", "/readyz"] {
        let r = h
            .http
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_built_in_dataset_with_no_connector_is_not_served_and_the_others_are() {
    let h = Harness::start_with(|name, text| match name {
        "connectors.toml" => text[..text.find("# --- land").expect("marker")].to_owned(),
        _ => text,
    })
    .await;
    let r = h
        .get(&format!("/v1/land-parcels/{}", h.sample("land.parcel")))
        .await;
    assert_eq!(r.status(), 404);
    let problem = body(r).await;
    assert_eq!(problem["code"], "unknown_dataset", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("land.parcel is not served here"),
        "{problem}"
    );
    let r = h
        .get(&format!(
            "/v1/enterprises/{}",
            h.sample("business.enterprise")
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.sims.land.calls("TraCuuThuaDat"), 0);
}

/// Every answer says when its record was fetched from the provider and the provider's own
/// time of its data; an answer from the cache says its age.
#[tokio::test]
async fn answers_say_when_the_data_was_fetched_and_how_old_the_providers_data_is() {
    use lienthong::domain::date::{iso_ms, now_ms, parse_rfc3339_ms};
    let h = Harness::start().await;
    let code = h.sample("business.enterprise");
    let stated = parse_rfc3339_ms(&lienthong::sim::stated_time(&code)).expect("an instant");
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let before = now_ms();
    let miss = h.get(&format!("/v1/enterprises/{code}")).await;
    assert_eq!(header(&miss, "x-cache").as_deref(), Some("miss"));
    let fetched = header(&miss, "x-data-fetched-at").expect("fetched at");
    let fetched_ms = parse_rfc3339_ms(&fetched).expect("RFC 3339");
    assert!(
        fetched_ms >= before - 1 && fetched_ms <= now_ms(),
        "{fetched}"
    );
    assert_eq!(header(&miss, "x-data-time"), Some(iso_ms(stated)));
    assert_eq!(header(&miss, "age"), None, "a fresh fetch has no age");

    // From the cache: the same fetch time, and its age in whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let hit = h.get(&format!("/v1/enterprises/{code}")).await;
    assert_eq!(header(&hit, "x-cache").as_deref(), Some("hit"));
    assert_eq!(header(&hit, "x-data-fetched-at"), Some(fetched.clone()));
    let age: i64 = header(&hit, "age").expect("age").parse().expect("seconds");
    assert!((1..=3).contains(&age), "{age}");

    // gRPC says the same in ResponseInfo; batch items carry it each.
    let mut grpc = h.grpc().await;
    let info = grpc
        .get_enterprise(authed(GetEnterpriseRequest {
            context: context(),
            enterprise_code: code.clone(),
            fields: vec![],
        }))
        .await
        .expect("grpc enterprise")
        .into_inner()
        .info
        .expect("info");
    assert_eq!(info.fetched_at, fetched);
    assert_eq!(info.data_time, iso_ms(stated));
    let batch: Value = with_context(h.http.post(format!("{}/v1/batch", h.base)))
        .json(&json!({"items": [{"dataset": "business.enterprise", "key": code}]}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(batch["items"][0]["fetched_at"], fetched.as_str(), "{batch}");
    assert_eq!(batch["items"][0]["data_time"], iso_ms(stated).as_str());
    // Land over gRPC states it too.
    let parcel = h.sample("land.parcel");
    let land = h.get(&format!("/v1/land-parcels/{parcel}")).await;
    assert_eq!(
        header(&land, "x-data-time"),
        parse_rfc3339_ms(&lienthong::sim::stated_time(&parcel)).map(iso_ms)
    );
}
