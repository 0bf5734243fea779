//! lienthong
pub mod domain;
pub mod upstream;
pub mod sim;

pub mod proto {
    pub mod lienthong {
        tonic::include_proto!("lienthong.v1");
        include!(concat!(env!("OUT_DIR"), "/lienthong.v1.serde.rs"));
    }
    pub mod cadastre {
        tonic::include_proto!("cadastre.v1");
        include!(concat!(env!("OUT_DIR"), "/cadastre.v1.serde.rs"));
    }
}
