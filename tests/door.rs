//! The door against one hostile client, over real sockets with small limits: budgets and
//! back-offs before authentication, connection caps, timeouts, answers in the documented
//! form, and an audit trail that a flood grows by summaries, not by requests. The attacker
//! is 127.0.0.1; the legitimate caller binds 127.0.0.2.

mod common;

use common::*;
use lienthong::audit::record::Chained;
use lienthong::proto::lienthong::GetCitizenRequest;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn with_door(door: &'static str) -> Harness {
    Harness::start_with(move |name, text| {
        if name == "gateway.toml" {
            format!("{text}\n[door]\nsummary_window_ms = 300\n{door}\n")
        } else {
            text
        }
    })
    .await
}

fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .expect("client")
}

async fn lookup_from(h: &Harness, client: &reqwest::Client, id: &str) -> reqwest::Response {
    with_context(client.get(format!("{}/v1/citizens/{id}", h.base)))
        .send()
        .await
        .expect("sent")
}

async fn records(h: &Harness) -> Vec<Chained> {
    let audit = h.gateway.gateway().audit_handle();
    audit
        .store()
        .scan(audit.instance(), 0, 1_000_000)
        .await
        .expect("scan")
}

/// The door's summary records, as (listener, source, reason, count), once at least `n`
/// refusals are summed in them (a bounded wait for the window to close).
async fn summaries(h: &Harness, n: u64) -> Vec<(String, String, String, u64)> {
    let mut found = Vec::new();
    for _ in 0..100 {
        found = records(h)
            .await
            .into_iter()
            .filter(|r| r.entry.action == "door_summary")
            .map(|r| {
                let d: serde_json::Value = serde_json::from_str(&r.entry.detail).expect("json");
                (
                    d["listener"].as_str().unwrap_or_default().to_owned(),
                    d["source"].as_str().unwrap_or_default().to_owned(),
                    d["reason"].as_str().unwrap_or_default().to_owned(),
                    d["count"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        if found.iter().map(|s| s.3).sum::<u64>() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

fn problem_code(body: &serde_json::Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

fn problem_detail(body: &serde_json::Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_unauthenticated_flood_is_shut_out_and_summed_not_recorded_call_by_call() {
    let h = with_door("auth_failures = \"5/min\"\nauth_backoff_ms = 60000").await;
    let id = h.sample("population.citizen");
    let before = records(&h).await.len();
    let attacker = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for i in 0..60 {
        let r = attacker
            .get(format!("{}/v1/citizens/{id}", h.base))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .expect("sent");
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let body: serde_json::Value = r.json().await.expect("problem");
            assert_eq!(problem_code(&body), "rate_limited");
            assert!(problem_detail(&body).contains("failed authentications"));
        }
    }
    let r = attacker
        .get(format!("{}/v1/citizens/{id}", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        r.status(),
        429,
        "during a back-off even a good key is refused before it is checked"
    );
    // The legitimate caller, from another address, is served throughout.
    let probe = client_from(PROBE);
    assert_eq!(lookup_from(&h, &probe, &id).await.status(), 200);

    let sums = summaries(&h, 61).await;
    let count = |reason: &str| {
        sums.iter()
            .filter(|s| s.0 == "lookup" && s.1 == "127.0.0.1" && s.2 == reason)
            .map(|s| s.3)
            .sum::<u64>()
    };
    // Five failures fit the budget; the sixth starts the back-off.
    assert_eq!(count("unauthenticated"), 6, "{sums:?}");
    assert_eq!(count("auth_backoff"), 55, "{sums:?}");
    let added = records(&h).await.len() - before;
    assert!(
        added <= sums.len() + 1,
        "61 refusals and one lookup added {added} records: only the summaries ({}) and the lookup",
        sums.len()
    );
}

#[tokio::test]
async fn a_source_over_its_budget_is_refused_and_exempt_sources_are_not() {
    let h = with_door("source_rate = \"5/min\"\nexempt = [\"127.0.0.2/32\"]").await;
    let id = h.sample("population.citizen");
    let attacker = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(lookup_from(&h, &attacker, &id).await.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = lookup_from(&h, &attacker, &id).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "retry after {retry} s");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem_code(&body), "rate_limited");
    assert!(problem_detail(&body).contains("door.source_rate"));
    // An exempt address skips the per-source budget.
    let platform = client_from(PROBE);
    for _ in 0..10 {
        assert_eq!(lookup_from(&h, &platform, &id).await.status(), 200);
    }
    // gRPC hears RESOURCE_EXHAUSTED with RetryInfo.
    let mut grpc = h.grpc().await;
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id.clone(),
            fields: vec![],
        }))
        .await
        .expect_err("over budget");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.error_info().unwrap().reason, "rate_limited");
    assert!(details.retry_info().unwrap().retry_delay.is_some());
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let h = with_door("source_rate = \"2/min\"\ntrusted_proxies = [\"127.0.0.1/32\"]").await;
    let id = h.sample("population.citizen");
    let proxy = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let via = |client: &reqwest::Client, forwarded: &'static str| {
        with_context(client.get(format!("{}/v1/citizens/{id}", h.base)))
            .header("X-Forwarded-For", forwarded)
            .send()
    };
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(via(&proxy, "198.51.100.7").await.unwrap().status().as_u16());
    }
    assert_eq!(
        a,
        [200, 200, 429],
        "the forwarded client has its own budget"
    );
    assert_eq!(via(&proxy, "198.51.100.8").await.unwrap().status(), 200);
    // From an address that is not a trusted proxy the header is not believed.
    let stranger = client_from(PROBE);
    let mut b = Vec::new();
    for _ in 0..3 {
        b.push(
            via(&stranger, "198.51.100.9")
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(b, [200, 200, 429]);
}

#[tokio::test]
async fn admin_token_guessing_is_throttled_and_recorded_as_summaries() {
    let h = with_door("auth_failures = \"3/min\"\nauth_backoff_ms = 60000").await;
    let admin = format!("http://{}", h.gateway.admin_addr);
    let attacker = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = attacker
            .get(format!("{admin}/admin/v1/grants"))
            .bearer_auth(format!("wrong-{i}"))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [401, 401, 401, 401, 429, 429, 429, 429, 429, 429]);
    // The operator, elsewhere, still gets in; health stays open.
    let operator = client_from(PROBE);
    let r = operator
        .get(format!("{admin}/admin/v1/grants"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sums = summaries(&h, 10).await;
    let admin_sums: Vec<_> = sums.iter().filter(|s| s.0 == "admin").collect();
    assert_eq!(
        admin_sums.iter().map(|s| s.3).sum::<u64>(),
        10,
        "every refused admin request is counted: {sums:?}"
    );
    assert!(
        admin_sums
            .iter()
            .any(|s| s.2 == "unauthenticated" && s.3 == 4)
    );
    let metrics = operator
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "lienthong_door_refusals_total{listener=\"admin\",reason=\"unauthenticated\"} 4"
    ));
    assert!(metrics.contains("lienthong_open_connections{listener=\"lookup\"}"));
    // An unknown admin path is answered in the documented form too.
    let r = operator
        .get(format!("{admin}/admin/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem_code(&body), "unknown_route");
    let r = operator
        .delete(format!("{admin}/admin/v1/grants"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
}

/// Whether the server has closed `s` (a read sees the end) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await,
        Ok(true)
    )
}

#[tokio::test]
async fn connections_are_capped_per_source_and_slow_or_idle_ones_are_closed() {
    let h = with_door(
        "max_connections_per_source = 4\nheader_read_timeout_ms = 400\nidle_timeout_ms = 400",
    )
    .await;
    // At start the gateway raised its soft descriptor limit to the hard one.
    #[cfg(target_os = "linux")]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
    }
    let addr = h.gateway.lookup_addr;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A half-sent request head keeps each connection busy.
        s.write_all(b"GET /v1/capabilities HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut fifth, Duration::from_secs(2)).await,
        "over the per-source cap: closed at accept"
    );
    // Another source still gets in, and health is answered.
    let probe = client_from(PROBE);
    let r = probe
        .get(format!("{}/v1/capabilities", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The slow heads are closed by the header timeout.
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "slow header closed"
        );
    }
    // A silent connection is closed too, and so is one idle after an answer.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);
    let sums = summaries(&h, 6).await;
    let of = |reason: &str| {
        sums.iter()
            .filter(|s| s.2 == reason)
            .map(|s| s.3)
            .sum::<u64>()
    };
    assert!(of("source_connections") >= 1, "{sums:?}");
    assert!(of("header_timeout") >= 5, "{sums:?}");
}

#[tokio::test]
async fn a_full_listener_sheds_with_overloaded() {
    let h = with_door("max_in_flight = 1\nbody_timeout_ms = 3000").await;
    // A known caller's declared-but-unsent body holds the one place.
    let addr = h.gateway.lookup_addr;
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(
            format!(
                "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Once the holder's head is read, its request holds the place.
    let probe = client_from(PROBE);
    let mut r = None;
    for _ in 0..50 {
        let answer = probe
            .get(format!("{}/v1/capabilities", h.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        if answer.status() == 503 {
            r = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = r.expect("shed while the place is held");
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem_code(&body), "overloaded");
    // The body never comes: 408, in the documented form, recorded for the known caller.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), holder.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(text.contains("x-request-id"), "{text}");
    let recorded = records(&h).await;
    assert!(
        recorded
            .iter()
            .any(|r| r.entry.outcome == "request_timeout" && r.entry.actor == "demo-onestop")
    );
}

#[tokio::test]
async fn answers_outside_the_routes_are_in_the_documented_form_and_recorded_for_known_callers() {
    let h = with_door("max_body_bytes = 1024\nmax_header_bytes = 2048").await;
    let id = h.sample("population.citizen");
    let known = reqwest::Client::new();
    let base = &h.base;
    let send = |rb: reqwest::RequestBuilder| async move {
        let r = rb.send().await.expect("sent");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let has_id = r.headers().contains_key("x-request-id");
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        (
            status,
            ct.unwrap_or_default(),
            has_id,
            problem_code(&body).to_owned(),
        )
    };
    let ctx = with_context;
    let cases = [
        (
            ctx(known.get(format!("{base}/v1/nothing-here"))),
            404,
            "unknown_route",
        ),
        (
            ctx(known.delete(format!("{base}/v1/citizens/{id}"))),
            405,
            "method_not_allowed",
        ),
        (
            ctx(known.get(format!(
                "{base}/v1/citizens/{id}?fields=full_name&fields=gender"
            ))),
            400,
            "invalid_request",
        ),
        (
            ctx(known.post(format!("{base}/v1/batch")))
                .header("content-type", "application/json")
                .body(vec![b' '; 5000]),
            413,
            "payload_too_large",
        ),
        (
            ctx(known.post(format!("{base}/v1/batch"))).body("{\"items\": ["),
            400,
            "invalid_request",
        ),
        (
            ctx(known.get(format!("{base}/v1/citizens/{id}")))
                .header("x-padding", "p".repeat(3000)),
            431,
            "headers_too_large",
        ),
        (
            ctx(known.get(format!("{base}/v1/citizens/{id}"))).header("x-purpose", "abc%ZZ"),
            400,
            "invalid_context",
        ),
    ];
    let before = records(&h).await.len();
    for (rb, status, code) in cases {
        let (s, ct, has_id, c) = send(rb).await;
        assert_eq!((s, c.as_str()), (status, code));
        assert_eq!(ct, "application/problem+json", "{code}");
        assert!(has_id, "{code} carries X-Request-Id");
    }
    // Each known caller's call left one record, except the 431: refused at the door before
    // the caller was identified, it is summed instead.
    let mut added = Vec::new();
    for _ in 0..50 {
        added = records(&h).await[before..]
            .iter()
            .filter(|r| r.entry.action != "door_summary")
            .map(|r| r.entry.outcome.clone())
            .collect::<Vec<_>>();
        if added.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        added,
        [
            "unknown_route",
            "method_not_allowed",
            "invalid_request",
            "payload_too_large",
            "invalid_request",
            "invalid_context"
        ]
    );
    // An unknown caller hears only that, whatever else is wrong, and leaves no record.
    let stranger = [
        known.get(format!("{base}/v1/nothing-here")),
        known.post(format!("{base}/v1/batch")).body("{\"items\": ["),
        known
            .post(format!("{base}/v1/batch"))
            .body(vec![b' '; 5000]),
        known.get(format!("{base}/v1/citizens/{id}?fields=a&fields=b")),
    ];
    for rb in stranger {
        let (s, ct, _, c) = send(rb).await;
        assert_eq!(
            (s, c.as_str(), ct.as_str()),
            (401, "unauthenticated", "application/problem+json")
        );
    }
    // A raw non-ASCII officer id is named as such.
    let r = known
        .get(format!("{base}/v1/citizens/{id}"))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header(
            "X-Officer-Id",
            reqwest::header::HeaderValue::from_bytes("cán bộ".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem_code(&body), "invalid_context");
    assert!(problem_detail(&body).contains("officer_id holds raw non-ASCII bytes"));
    // Percent-encoded, it is read.
    let r = known
        .get(format!("{base}/v1/citizens/{id}"))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", "c%C3%A1n.b%E1%BB%99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_rest_deadline_gives_deadline_exceeded() {
    let h = with_door("").await;
    h.sims
        .population
        .set_faults(lienthong::sim::control::Faults {
            latency_ms: 2_000,
            ..Default::default()
        });
    let id = h.sample("population.citizen");
    let r = with_context(h.http.get(format!("{}/v1/citizens/{id}", h.base)))
        .header("X-Request-Timeout-Ms", "300")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem_code(&body), "deadline_exceeded");
}

/// A raw gRPC call: `message` framed as sent, over HTTP/2 without TLS.
async fn raw_grpc(h: &Harness, path: &str, key: Option<&str>, message: Vec<u8>) -> tonic::Status {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut rb = client
        .post(format!("{}{path}", h.base))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(framed);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.expect("sent");
    tonic::Status::from_header_map(r.headers()).expect("a trailers-only status")
}

#[tokio::test]
async fn grpc_refusals_carry_their_error_info_and_authentication_comes_first() {
    let h = with_door("max_body_bytes = 2048").await;
    let method = "/lienthong.v1.LookupService/GetCitizen";
    let info = |s: &tonic::Status| {
        tonic_types::StatusExt::get_error_details(s)
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    };
    let big = raw_grpc(&h, method, Some(API_KEY), vec![0x0a; 10_000]).await;
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    assert_eq!(info(&big), "payload_too_large");
    let garbage = raw_grpc(&h, method, Some(API_KEY), vec![0xff; 20]).await;
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
    assert_eq!(info(&garbage), "invalid_request");
    let unknown = raw_grpc(
        &h,
        "/lienthong.v1.LookupService/Nope",
        Some(API_KEY),
        vec![],
    )
    .await;
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);
    assert_eq!(info(&unknown), "unknown_route");
    let no_service = raw_grpc(&h, "/nobody.Svc/Nope", Some(API_KEY), vec![]).await;
    assert_eq!(info(&no_service), "unknown_route");
    for (path, msg) in [(method, vec![0xff; 20]), (method, vec![0x0a; 10_000])] {
        let s = raw_grpc(&h, path, None, msg).await;
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
        assert_eq!(info(&s), "unauthenticated");
    }
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        outcomes = records(&h)
            .await
            .into_iter()
            .filter(|r| r.entry.transport == "grpc")
            .map(|r| r.entry.outcome)
            .collect();
        if outcomes.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        outcomes,
        [
            "payload_too_large",
            "invalid_request",
            "unknown_route",
            "unknown_route"
        ]
    );
}

/// One HTTP/2 frame as sent on the wire.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads frames until `want` says stop or the connection ends; returns (type, flags,
/// payload) of each.
async fn frames_until(
    s: &mut TcpStream,
    within: Duration,
    want: impl Fn(&[(u8, u8, Vec<u8>)]) -> bool,
) -> Vec<(u8, u8, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 16384];
        loop {
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                seen.push((buf[3], buf[4], buf[9..9 + len].to_vec()));
                buf.drain(..9 + len);
            }
            if want(&seen) {
                return;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn http2_settings_pings_and_rapid_reset_are_bounded() {
    let h = with_door(
        "h2_max_concurrent_streams = 7\nh2_keepalive_interval_ms = 200\nh2_max_pending_reset_streams = 2\nmax_header_bytes = 3000",
    )
    .await;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const GOAWAY: u8 = 0x7;
    let mut s = TcpStream::connect(h.gateway.lookup_addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The server's settings carry the door's stream and header-list limits.
    let seen = frames_until(&mut s, Duration::from_secs(3), |f| {
        f.iter().any(|x| x.0 == SETTINGS && x.1 == 0)
    })
    .await;
    let settings = &seen
        .iter()
        .find(|x| x.0 == SETTINGS && x.1 == 0)
        .expect("server settings")
        .2;
    let value = |id: u16| {
        settings
            .chunks(6)
            .find(|c| u16::from_be_bytes([c[0], c[1]]) == id)
            .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    };
    assert_eq!(value(0x3), Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert_eq!(value(0x6), Some(6000), "SETTINGS_MAX_HEADER_LIST_SIZE");
    s.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
    // Keepalive: the server pings a quiet connection.
    let seen = frames_until(&mut s, Duration::from_secs(3), |f| {
        f.iter().any(|x| x.0 == PING)
    })
    .await;
    assert!(
        seen.iter().any(|x| x.0 == PING && x.1 == 0),
        "a keepalive ping"
    );

    // Rapid reset: streams opened and cancelled at once, far past the pending-reset bound.
    let mut r = TcpStream::connect(h.gateway.lookup_addr).await.unwrap();
    let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    burst.extend(frame(SETTINGS, 0, 0, &[]));
    // :method GET, :scheme http, :path /, :authority x (HPACK, static table and a literal).
    let head = [0x82, 0x86, 0x84, 0x41, 0x01, b'x'];
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        burst.extend(frame(0x1, 0x5, stream, &head));
        burst.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
    }
    r.write_all(&burst).await.unwrap();
    let seen = frames_until(&mut r, Duration::from_secs(5), |f| {
        f.iter().any(|x| x.0 == GOAWAY)
    })
    .await;
    let goaway = seen
        .iter()
        .find(|x| x.0 == GOAWAY)
        .expect("the connection is told to go away");
    let code = u32::from_be_bytes([goaway.2[4], goaway.2[5], goaway.2[6], goaway.2[7]]);
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
    // Other callers are unaffected.
    let probe = client_from(PROBE);
    let r = probe
        .get(format!("{}/v1/capabilities", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
