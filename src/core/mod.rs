//! The core: the lookup service both transports call, whose functions hold the order of the
//! request path, and the live (reloadable) version of it.

pub mod live;
pub mod model;
pub mod service;
