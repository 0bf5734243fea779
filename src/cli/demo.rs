//! `lienthong demo`: the simulators and the gateway on embedded defaults, and commands to
//! copy that work against them.

use super::CliError;
use super::env;
use crate::config::Source;
use crate::domain::dataset::{BUSINESS_ENTERPRISE, LAND_PARCEL, POPULATION_CITIZEN};
use crate::sim::{self, SimOptions};
use std::net::SocketAddr;

pub(crate) async fn demo(ephemeral_ports: bool) -> Result<(), CliError> {
    let addr = |s: &str| s.parse::<SocketAddr>().map_err(|e| e.to_string());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let options = if ephemeral_ports {
        SimOptions::on(any, any, any)
    } else {
        SimOptions {
            civil_addr: addr(sim::DEFAULT_CIVIL_ADDR)?,
            insurance_addr: addr(sim::DEFAULT_INSURANCE_ADDR)?,
            vehicles_addr: addr(sim::DEFAULT_VEHICLES_ADDR)?,
            ..SimOptions::on(
                addr(sim::DEFAULT_POPULATION_ADDR)?,
                addr(sim::DEFAULT_BUSINESS_ADDR)?,
                addr(sim::DEFAULT_LAND_ADDR)?,
            )
        }
    };
    let sims = sim::spawn(options).await.map_err(|e| e.to_string())?;
    let witnesses = demo_witnesses().map_err(|e| format!("the demo's witnesses: {e}"))?;
    let witness_addr = if ephemeral_ports {
        any
    } else {
        addr(sim::DEFAULT_WITNESS_ADDR)?
    };
    let (witness_addr, _witness_task) = sim::witness::spawn(witness_addr, witnesses.clone())
        .await
        .map_err(|e| e.to_string())?;
    let anchoring = format!(
        r#"
# The demo's simulated witnesses: each checkpoint is also time-stamped and countersigned
# off the host (docs/audit.md#off-host-anchoring).
[[audit.witnesses]]
name = "demo-tsa"
kind = "rfc3161"
url = "http://{witness_addr}/tsa"
certificate = "{TSA_CERT}"

[[audit.witnesses]]
name = "demo-countersigner"
kind = "countersign"
url = "http://{witness_addr}/v1/countersign"
public_key = "{}"
"#,
        witnesses.public_key()
    );
    // The embedded config points at the simulators' default addresses; follow where they are.
    let source = Source::demo_with(|text| {
        let text = text
            .replace(
                sim::DEFAULT_POPULATION_ADDR,
                &sims.population_addr.to_string(),
            )
            .replace(sim::DEFAULT_BUSINESS_ADDR, &sims.business_addr.to_string())
            .replace(sim::DEFAULT_LAND_ADDR, &sims.land_addr.to_string());
        // The main file ends with [audit]: the witnesses go after it.
        let text = if text.contains("[audit]") {
            text + &anchoring
        } else {
            text
        };
        if ephemeral_ports {
            text.replace(":8080\"", ":0\"").replace(":9090\"", ":0\"")
        } else {
            text
        }
    });
    let built = crate::app::build(&source, &env()).map_err(|e| e.to_string())?;
    let s = &built.model.settings;
    let telemetry = crate::telemetry::init(s.log_json, &s.log_level, s.otel.as_ref());
    let running = crate::app::start(built)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let sample = |dataset: &str| {
        sims.data
            .samples(dataset, 1)
            .ok()
            .and_then(|k| k.into_iter().next())
            .unwrap_or_default()
    };
    let (citizen, enterprise, parcel) = (
        sample(POPULATION_CITIZEN),
        sample(BUSINESS_ENTERPRISE),
        sample(LAND_PARCEL),
    );
    let undeclared = sims
        .data
        .samples(POPULATION_CITIZEN, 2)
        .ok()
        .and_then(|k| k.into_iter().nth(1))
        .unwrap_or_default();
    let today = crate::domain::date::Date::today();
    let lookup = running.lookup_addr;
    let ctx = "-H 'X-Procedure-Code: 1.001612' -H 'X-Dossier-Id: 000.00.53.H48-251128-0001' -H 'X-Officer-Id: canbo01'";
    out!(
        r#"
lienthong demo is running.
  lookup API (REST + gRPC)  http://{lookup}
  admin                     http://{admin}/dashboard (live), /metrics, /healthz, /readyz
  simulators                population {pop}, business {bus}, land {land} (GET /_sim/stats on each)
  not yet onboarded         civil status {civil} (SOAP 1.2, WS-Security), social insurance {ins}
                            (REST, OAuth2), vehicles {veh} (gRPC, reflection):
                            docs/connectors.md walks through joining them
  consumer demo-onestop, API key demo-onestop-key

A citizen is looked up only for a dossier the one-stop system declared, naming him (the
population grant has binding = "declared"). Declare the dossier:
  curl -s -H 'Authorization: Bearer demo-onestop-key' -H 'Content-Type: application/json' \
    -d '{{"dossier_id":"000.00.53.H48-251128-0001","procedure_code":"1.001612","received_at":"{today}","subjects":[{{"dataset":"population.citizen","key":"{citizen}"}}]}}' http://{lookup}/v1/dossiers

Then look up the citizen it names; another citizen, not in the dossier, is refused (purpose_not_bound):
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/citizens/{citizen}
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/citizens/{undeclared}

An enterprise and a land parcel (those grants check the context's formats only):
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/enterprises/{enterprise}
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} 'http://{lookup}/v1/land-parcels/{parcel}?fields=parcel_id,area_m2,land_use_purposes'

Several at once, one outcome per item (the second key is malformed):
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} -H 'Content-Type: application/json' \
    -d '{{"items":[{{"dataset":"population.citizen","key":"{citizen}"}},{{"dataset":"business.enterprise","key":"0100233489"}}]}}' http://{lookup}/v1/batch

Evidence to file with the dossier: ask for it (X-Evidence: bundle keeps the answer and its
signed statement as one document), then check it offline against the keys the gateway
publishes; change one byte of the answer and the check fails:
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} -H 'X-Evidence: bundle' http://{lookup}/v1/enterprises/{enterprise} > answer.json
  curl -s http://{lookup}/v1/keys > keys.json
  {exe} evidence verify answer.json --keys keys.json

Over gRPC (server reflection is on, no proto file needed):
  grpcurl -plaintext -H 'authorization: Bearer demo-onestop-key' \
    -d '{{"context":{{"procedure_code":"1.001612","dossier_id":"000.00.53.H48-251128-0001","officer_id":"canbo01"}},"personal_id":"{citizen}"}}' \
    {lookup} lienthong.v1.LookupService/GetCitizen

Rate limits: each demo grant admits 600 lookups a minute (see the RateLimit-* headers);
650 at once gets 429s, with Retry-After, in the documented problem form:
  seq 650 | xargs -P 32 -I{{}} curl -s -o /dev/null -w '%{{http_code}}\n' -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/enterprises/{enterprise} | sort | uniq -c

Misuse detection watches every officer: looking up 100 distinct citizens within an hour (or
any call outside office hours, Hanoi time) raises an alert for operators and auditors:
  curl -s -H 'Authorization: Bearer demo-auditor-token' http://{admin}/admin/v1/alerts

The one-stop system's administrator issues it a key of its own (shown once; rotate and
revoke with the same command; the demo keeps no registry, so keys last until it stops):
  {exe} admin --admin http://{admin} --token demo-onestop-admin-token keys issue demo-onestop --label mine

A citizen sees who looked at his data through the national public-service portal, which
asserts who he is (a signed JWT valid for two minutes; the demo portal's key is built in):
  curl -s -H 'Authorization: Bearer demo-portal-key' -H "X-Citizen-Assertion: $({exe} sim portal-assertion --personal-id {citizen})" http://{lookup}/v1/me/access-report

Every call above left an audit record (in ./data/audit.db). Its signed checkpoints are
anchored off the host by the simulated witnesses on {witness_addr}: an RFC 3161 time-stamp
and a countersignature each (lienthong_anchor_lag_seconds on /metrics). Who looked at this citizen:
  curl -s -H 'Authorization: Bearer demo-operator-token' 'http://{admin}/admin/v1/audit/report?dataset=population.citizen&subject={citizen}'
After stopping: lienthong audit verify, and lienthong audit report --dataset population.citizen --subject {citizen}

More keys that exist:  lienthong sim samples --dataset population.citizen --count 5
Press Ctrl-C to stop.
"#,
        admin = running.admin_addr,
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "lienthong".into()),
        pop = sims.population_addr,
        bus = sims.business_addr,
        land = sims.land_addr,
        civil = sims.civil_addr,
        ins = sims.insurance_addr,
        veh = sims.vehicles_addr,
    );
    running.run_until_signal().await;
    telemetry.shutdown();
    drop(sims);
    Ok(())
}

/// Where the demo keeps its time-stamping authority (beside its audit trail), so that the
/// receipts of an earlier run still check against the same certificate.
const TSA_CERT: &str = "data/demo-witness-tsa.pem";
const TSA_KEY: &str = "data/demo-witness-tsa.key";
/// The demo countersigner's key (a demo key, like the others in the demo config).
const COUNTERSIGNER_SEED: [u8; 32] = *b"lienthong demo witness seed 0001";

/// The demo's witnesses: the time-stamping authority kept in ./data (made on first run).
fn demo_witnesses() -> Result<std::sync::Arc<sim::witness::Witnesses>, String> {
    use crate::domain::tsp::Authority;
    let kept = std::fs::read(TSA_KEY)
        .ok()
        .zip(std::fs::read(TSA_CERT).ok());
    let tsa = match kept {
        Some((key, pem)) => {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
                .map_err(|e| format!("{TSA_CERT}: {e}"))?;
            Authority::new(der.to_vec(), &key)?
        }
        None => {
            let (tsa, key) = Authority::generate_keyed("lienthong demo time-stamping authority")?;
            std::fs::create_dir_all("data").map_err(|e| format!("data: {e}"))?;
            std::fs::write(TSA_KEY, key).map_err(|e| format!("{TSA_KEY}: {e}"))?;
            tsa
        }
    };
    let witnesses =
        sim::witness::Witnesses::with_authority("demo-witness", tsa, &COUNTERSIGNER_SEED)?;
    std::fs::write(TSA_CERT, witnesses.certificate_pem())
        .map_err(|e| format!("{TSA_CERT}: {e}"))?;
    Ok(std::sync::Arc::new(witnesses))
}
