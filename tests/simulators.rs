//! The simulators on their own: the population database's signed header scheme, and the
//! business registry's GET form.

use lienthong::domain::signed_header::signed_header_authorization;
use lienthong::sim::{
    self, DEFAULT_POPULATION_SECRET, DEFAULT_POPULATION_USER, SimOptions, population,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn envelope(id: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns=\"{}\"><soapenv:Body><ns:TraCuuThongTinCongDan><ns:SoDinhDanh>{id}</ns:SoDinhDanh></ns:TraCuuThongTinCongDan></soapenv:Body></soapenv:Envelope>",
        population::NAMESPACE
    )
}

async fn call(url: &str, id: &str, timestamp: i64, secret: &str) -> (u16, String) {
    let ts = timestamp.to_string();
    let r = reqwest::Client::new()
        .post(url)
        .header("Timestamp", &ts)
        .header(
            "Authorization",
            signed_header_authorization(url, DEFAULT_POPULATION_USER, &ts, secret),
        )
        .body(envelope(id))
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test]
async fn signed_header_is_accepted_and_bad_ones_get_a_soap_fault() {
    lienthong::certs::install_crypto();
    let sims = sim::spawn(SimOptions::ephemeral()).await.expect("sims");
    let url = format!("http://{}{}", sims.population_addr, population::PATH);
    let id = sims.data.samples("population.citizen", 1).expect("samples")[0].clone();

    let (status, body) = call(&url, &id, now_ms(), DEFAULT_POPULATION_SECRET).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("<SoDinhDanh>{id}</SoDinhDanh>")),
        "{body}"
    );

    let (status, body) = call(&url, &id, now_ms(), "not-the-secret").await;
    assert_eq!(status, 401);
    assert!(
        body.contains("<soap:Fault>") && body.contains("signature does not match"),
        "{body}"
    );

    let (status, body) = call(
        &url,
        &id,
        now_ms() - 10 * 60 * 1000,
        DEFAULT_POPULATION_SECRET,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body.contains("<soap:Fault>") && body.contains("stale"),
        "{body}"
    );

    // An absent citizen is an empty collection, not a fault.
    let (status, body) = call(&url, "001090000001", now_ms(), DEFAULT_POPULATION_SECRET).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<CongdanCollection></CongdanCollection>"),
        "{body}"
    );
    assert_eq!(sims.population.calls(population::OPERATION), 4);
}

#[tokio::test]
async fn the_business_registry_answers_a_get_of_the_code_as_it_answers_the_post() {
    lienthong::certs::install_crypto();
    let sims = sim::spawn(SimOptions::ephemeral()).await.expect("sims");
    let code = sims
        .data
        .samples("business.enterprise", 2)
        .expect("samples")[1]
        .clone();
    let base = format!("http://{}/api/dkkd/v1/doanhnghiep", sims.business_addr);
    let http = reqwest::Client::new();
    let posted: serde_json::Value = http
        .post(&base)
        .bearer_auth("demo-business-token")
        .json(&serde_json::json!({"type": "ChiTietDoanhNghiep", "msdn": code}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let got: serde_json::Value = http
        .get(format!("{base}/{code}"))
        .bearer_auth("demo-business-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(got, posted);
    assert_eq!(got["Data"]["MainInformation"]["ENTERPRISE_CODE"], code);
    let anonymous = http
        .get(format!("{base}/{code}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(sims.business.calls("ChiTietDoanhNghiep"), 3);
}
