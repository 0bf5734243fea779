//! The simulated national databases: population over SOAP/XML, business registration over
//! REST/JSON, land over gRPC; and two sector databases that join through the admin API:
//! civil status over SOAP 1.2 with WS-Security, social insurance over REST with OAuth2,
//! vehicles over gRPC with an API key and reflection (its interface not compiled into the
//! gateway). Each
//! has a control surface (`/_sim/stats`, `/_sim/faults`).
//! They are the demo's data, the tests' upstreams and the benchmarks' origin.

pub mod business;
pub mod civil;
pub mod control;
pub mod data;
pub mod insurance;
pub mod land;
pub mod names;
pub mod population;
pub mod portal;
mod random;
pub mod vehicles;
pub mod witness;

/// The time a provider states for its data about `key` (`ThoiDiemDuLieu`): when the record
/// was last updated, between 1 June 2025 and 31 May 2026, 08:30 Hanoi time.
pub fn stated_time(key: &str) -> String {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let base = crate::domain::date::Date::parse_iso("2025-06-01")
        .map(|d| d.days())
        .unwrap_or(0);
    let day = crate::domain::date::Date::from_days(base + (h % 365) as i64);
    format!("{day}T08:30:00+07:00")
}

use control::Control;
use data::SimData;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Default addresses, which the demo's connector config points at.
pub const DEFAULT_POPULATION_ADDR: &str = "127.0.0.1:7081";
pub const DEFAULT_BUSINESS_ADDR: &str = "127.0.0.1:7082";
pub const DEFAULT_LAND_ADDR: &str = "127.0.0.1:7083";
pub const DEFAULT_CIVIL_ADDR: &str = "127.0.0.1:7084";
pub const DEFAULT_INSURANCE_ADDR: &str = "127.0.0.1:7085";
pub const DEFAULT_VEHICLES_ADDR: &str = "127.0.0.1:7086";
/// The simulated witnesses (a time-stamping authority and a countersigner) of the demo.
pub const DEFAULT_WITNESS_ADDR: &str = "127.0.0.1:7087";
/// Default upstream credentials (simulators only).
pub const DEFAULT_POPULATION_USER: &str = "lienthong";
pub const DEFAULT_POPULATION_SECRET: &str = "demo-population-secret";
pub const DEFAULT_BUSINESS_TOKEN: &str = "demo-business-token";
pub const DEFAULT_CIVIL_USER: &str = "lienthong";
pub const DEFAULT_CIVIL_PASSWORD: &str = "demo-civil-password";
pub const DEFAULT_INSURANCE_CLIENT_ID: &str = "lienthong-gateway";
pub const DEFAULT_INSURANCE_CLIENT_SECRET: &str = "demo-insurance-secret";
pub const DEFAULT_INSURANCE_API_KEY: &str = "demo-insurance-api-key";
pub const DEFAULT_VEHICLES_API_KEY: &str = "demo-vehicles-api-key";
/// `expires_in` of the insurance simulator's tokens.
pub const DEFAULT_INSURANCE_TOKEN_LIFETIME_S: u64 = 300;

/// What to simulate and where.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub citizens: u32,
    pub enterprises: u32,
    pub parcels: u32,
    pub population_addr: SocketAddr,
    pub business_addr: SocketAddr,
    pub land_addr: SocketAddr,
    pub civil_addr: SocketAddr,
    pub insurance_addr: SocketAddr,
    pub vehicles_addr: SocketAddr,
    pub population_account: population::Account,
    pub business_token: String,
    pub civil_account: civil::Account,
    pub insurance_account: insurance::Account,
    pub vehicles_api_key: String,
}

impl SimOptions {
    /// Default data on the given addresses (use port 0 for ephemeral ports).
    pub fn on(population: SocketAddr, business: SocketAddr, land: SocketAddr) -> SimOptions {
        SimOptions {
            seed: data::DEFAULT_SEED,
            citizens: data::DEFAULT_CITIZENS,
            enterprises: data::DEFAULT_ENTERPRISES,
            parcels: data::DEFAULT_PARCELS,
            population_addr: population,
            business_addr: business,
            land_addr: land,
            civil_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            insurance_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            vehicles_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            population_account: population::Account {
                user: DEFAULT_POPULATION_USER.into(),
                secret: DEFAULT_POPULATION_SECRET.into(),
            },
            business_token: DEFAULT_BUSINESS_TOKEN.into(),
            civil_account: civil::Account {
                user: DEFAULT_CIVIL_USER.into(),
                password: DEFAULT_CIVIL_PASSWORD.into(),
            },
            insurance_account: insurance::Account {
                client_id: DEFAULT_INSURANCE_CLIENT_ID.into(),
                client_secret: DEFAULT_INSURANCE_CLIENT_SECRET.into(),
                api_key: DEFAULT_INSURANCE_API_KEY.into(),
                token_lifetime: std::time::Duration::from_secs(DEFAULT_INSURANCE_TOKEN_LIFETIME_S),
            },
            vehicles_api_key: DEFAULT_VEHICLES_API_KEY.into(),
        }
    }

    /// Ephemeral loopback ports, for tests.
    pub fn ephemeral() -> SimOptions {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        SimOptions::on(any, any, any)
    }
}

/// The simulators, running. Dropping it stops them.
pub struct RunningSims {
    pub data: Arc<SimData>,
    pub population_addr: SocketAddr,
    pub business_addr: SocketAddr,
    pub land_addr: SocketAddr,
    pub civil_addr: SocketAddr,
    pub insurance_addr: SocketAddr,
    pub vehicles_addr: SocketAddr,
    pub population: Arc<Control>,
    pub business: Arc<Control>,
    pub land: Arc<Control>,
    pub civil: Arc<Control>,
    pub insurance: Arc<Control>,
    pub vehicles: Arc<Control>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningSims {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(
    addr: SocketAddr,
    router: axum::Router,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    Ok((local, task))
}

/// Starts the simulators.
pub async fn spawn(options: SimOptions) -> std::io::Result<RunningSims> {
    let data = Arc::new(SimData::new(
        options.seed,
        options.citizens,
        options.enterprises,
        options.parcels,
    ));
    let (population, business, land) = (
        Control::new("population"),
        Control::new("business"),
        Control::new("land"),
    );
    let (population_addr, t1) = serve(
        options.population_addr,
        population::router(
            data.clone(),
            options.population_account.clone(),
            population.clone(),
        ),
    )
    .await?;
    let (business_addr, t2) = serve(
        options.business_addr,
        business::router(
            data.clone(),
            options.business_token.clone(),
            business.clone(),
        ),
    )
    .await?;
    let (land_addr, t3) =
        serve(options.land_addr, land::router(data.clone(), land.clone())).await?;
    let (civil, insurance) = (Control::new("civil"), Control::new("insurance"));
    // One authorization server's tokens, for the social-insurance and vehicle registries.
    let tokens = Arc::new(insurance::Tokens::default());
    let (civil_addr, t4) = serve(
        options.civil_addr,
        civil::router(data.clone(), options.civil_account.clone(), civil.clone()),
    )
    .await?;
    let (insurance_addr, t5) = serve(
        options.insurance_addr,
        insurance::router(
            data.clone(),
            options.insurance_account.clone(),
            insurance.clone(),
            tokens.clone(),
        ),
    )
    .await?;
    let vehicles = Control::new("vehicles");
    let (vehicles_addr, t6) = serve(
        options.vehicles_addr,
        vehicles::router(
            data.clone(),
            options.vehicles_api_key.clone(),
            vehicles.clone(),
            tokens,
        ),
    )
    .await?;
    Ok(RunningSims {
        data,
        population_addr,
        business_addr,
        land_addr,
        civil_addr,
        insurance_addr,
        vehicles_addr,
        population,
        business,
        land,
        civil,
        insurance,
        vehicles,
        tasks: vec![t1, t2, t3, t4, t5, t6],
    })
}
