//! `lienthong sim`: the simulated national databases alone, and keys that exist in them.

use super::CliError;
use crate::sim::{self, SimOptions, data};
use clap::Subcommand;
use std::net::SocketAddr;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SimArgs {
    #[command(subcommand)]
    pub(crate) command: Option<SimCommand>,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Population database (SOAP/XML) address.
    #[arg(long, default_value = sim::DEFAULT_POPULATION_ADDR)]
    pub(crate) population_addr: SocketAddr,
    /// Business registration (REST/JSON) address.
    #[arg(long, default_value = sim::DEFAULT_BUSINESS_ADDR)]
    pub(crate) business_addr: SocketAddr,
    /// Land registry (gRPC) address.
    #[arg(long, default_value = sim::DEFAULT_LAND_ADDR)]
    pub(crate) land_addr: SocketAddr,
    /// Civil status (SOAP 1.2, WS-Security) address.
    #[arg(long, default_value = sim::DEFAULT_CIVIL_ADDR)]
    pub(crate) civil_addr: SocketAddr,
    /// Social insurance (REST, OAuth2 or API key) address.
    #[arg(long, default_value = sim::DEFAULT_INSURANCE_ADDR)]
    pub(crate) insurance_addr: SocketAddr,
    /// Vehicle registry (gRPC, API key, reflection) address.
    #[arg(long, default_value = sim::DEFAULT_VEHICLES_ADDR)]
    pub(crate) vehicles_addr: SocketAddr,
}

#[derive(clap::Args, Clone)]
pub(crate) struct DataArgs {
    #[arg(long, default_value_t = data::DEFAULT_SEED)]
    pub(crate) seed: u64,
    /// Citizens to generate (at most 1,000,000).
    #[arg(long, default_value_t = data::DEFAULT_CITIZENS)]
    pub(crate) citizens: u32,
    #[arg(long, default_value_t = data::DEFAULT_ENTERPRISES)]
    pub(crate) enterprises: u32,
    #[arg(long, default_value_t = data::DEFAULT_PARCELS)]
    pub(crate) parcels: u32,
}

#[derive(Subcommand)]
pub(crate) enum SimCommand {
    /// Print keys that exist, one per line.
    Samples {
        /// population.citizen, business.enterprise or land.parcel.
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print an assertion of a citizen's identity from the simulated public-service portal
    /// (a JWT signed with the demo portal's key), for `GET /v1/me/access-report` as the
    /// demo's `demo-portal` consumer.
    PortalAssertion {
        /// The citizen's 12-digit personal id.
        #[arg(long)]
        personal_id: String,
        /// Seconds it stays valid (at most 300).
        #[arg(long, default_value_t = 120)]
        ttl: i64,
    },
}

pub(crate) async fn run_sim(args: SimArgs) -> Result<(), CliError> {
    if let Some(SimCommand::PortalAssertion { personal_id, ttl }) = &args.command {
        if !(1..=300).contains(ttl) {
            return Err("--ttl: from 1 to 300 seconds".to_string().into());
        }
        crate::certs::install_crypto();
        let now = crate::audit::record::now_ms() / 1000;
        let token = sim::portal::assertion(personal_id.trim(), now, *ttl)?;
        out!("{token}");
        return Ok(());
    }
    if let Some(SimCommand::Samples {
        dataset,
        count,
        data,
    }) = args.command
    {
        let d = data::SimData::new(data.seed, data.citizens, data.enterprises, data.parcels);
        for key in d.samples(&dataset, count)? {
            out!("{key}");
        }
        return Ok(());
    }
    let _telemetry = crate::telemetry::init(false, "info", None);
    let mut options = SimOptions::on(args.population_addr, args.business_addr, args.land_addr);
    options.civil_addr = args.civil_addr;
    options.insurance_addr = args.insurance_addr;
    options.vehicles_addr = args.vehicles_addr;
    options.seed = args.data.seed;
    options.citizens = args.data.citizens;
    options.enterprises = args.data.enterprises;
    options.parcels = args.data.parcels;
    let sims = sim::spawn(options).await.map_err(|e| e.to_string())?;
    out!(
        "population (SOAP/XML)        http://{}{}",
        sims.population_addr,
        sim::population::PATH
    );
    out!(
        "business registration (REST) http://{}{}",
        sims.business_addr,
        sim::business::PATH
    );
    out!("land registry (gRPC)         http://{}", sims.land_addr);
    out!(
        "civil status (SOAP 1.2)      http://{}{} (WS-Security user {:?})",
        sims.civil_addr,
        sim::civil::PATH,
        sim::DEFAULT_CIVIL_USER
    );
    out!(
        "social insurance (REST)      http://{}{} (OAuth2 token at {}, client {:?})",
        sims.insurance_addr,
        sim::insurance::PATH,
        sim::insurance::TOKEN_PATH,
        sim::DEFAULT_INSURANCE_CLIENT_ID
    );
    out!(
        "vehicle registry (gRPC)      http://{} ({}, x-api-key metadata, server reflection)",
        sims.vehicles_addr,
        sim::vehicles::METHOD
    );
    out!("control: GET /_sim/stats, PUT /_sim/faults, POST /_sim/reset on each address");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
