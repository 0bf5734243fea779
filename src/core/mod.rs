//! The core: the lookup service both transports call ([`gateway`], whose functions hold the
//! order of the request path), the one wrapper every call runs in ([`call`]), the model
//! one version runs on ([`model`]), its routes to the providers ([`routes`]), health
//! probes and the live metrics ([`probes`]), and the live, reloadable version ([`live`]).

pub mod call;
mod detect;
pub mod dossiers;
pub mod evidence;
pub mod gateway;
pub mod live;
pub mod model;
pub mod probes;
pub mod report;
pub mod request;
pub mod routes;
