//! lienthong
pub mod app;
pub mod config;
pub mod core;
pub mod domain;
pub mod upstream;
pub mod sim;
pub mod telemetry;
pub mod transport;

pub mod proto {
    /// Descriptors of every compiled proto, for reflection and dynamic messages.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

    pub mod lienthong {
        tonic::include_proto!("lienthong.v1");
        include!(concat!(env!("OUT_DIR"), "/lienthong.v1.serde.rs"));
    }
    pub mod cadastre {
        tonic::include_proto!("cadastre.v1");
        include!(concat!(env!("OUT_DIR"), "/cadastre.v1.serde.rs"));
    }
}
