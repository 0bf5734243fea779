//! Vietnamese public-administration facts shared by the gateway's validators and the
//! simulators: administrative units and identifier formats.

pub mod date;
pub mod ids;
pub mod units;
