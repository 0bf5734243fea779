//! Datasets: a named record type behind one key, with its key validator and field schema.

use crate::domain::ids::{EnterpriseCode, ParcelId, PersonalId};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use std::sync::LazyLock;

static DESCRIPTORS: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the build's descriptor set decodes")
});

/// Descriptors of every message compiled into the binary (lienthong's and the providers').
pub fn descriptors() -> &'static DescriptorPool {
    &DESCRIPTORS
}

/// How a dataset's keys are validated and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    PersonalId,
    EnterpriseCode,
    ParcelId,
}

impl KeyKind {
    /// Validates and normalises a key. `current_year` bounds plausible birth years.
    pub fn normalize(self, key: &str, current_year: i32) -> Result<String, String> {
        match self {
            KeyKind::PersonalId => PersonalId::parse(key, current_year).map(|k| k.to_string()),
            KeyKind::EnterpriseCode => EnterpriseCode::parse(key).map(|k| k.to_string()),
            KeyKind::ParcelId => ParcelId::parse(key).map(|k| k.to_string()),
        }
        .map_err(|e| e.0)
    }
}

/// A dataset the gateway serves.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: &'static str,
    pub key_kind: KeyKind,
    /// The canonical record field that holds the key.
    pub key_field: &'static str,
    pub record: MessageDescriptor,
    /// Who owns the data (the provider agency).
    pub owner: &'static str,
}

impl Dataset {
    /// Top-level field names of the canonical record.
    pub fn fields(&self) -> impl Iterator<Item = String> + '_ {
        self.record.fields().map(|f| f.name().to_owned())
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.record.get_field_by_name(name).is_some()
    }
}

/// The three built-in datasets.
pub fn builtin() -> Vec<Dataset> {
    let message = |name: &str| {
        descriptors()
            .get_message_by_name(name)
            .expect("built-in record type")
    };
    vec![
        Dataset {
            name: "population.citizen",
            key_kind: KeyKind::PersonalId,
            key_field: "personal_id",
            record: message("lienthong.v1.Citizen"),
            owner: "population",
        },
        Dataset {
            name: "business.enterprise",
            key_kind: KeyKind::EnterpriseCode,
            key_field: "enterprise_code",
            record: message("lienthong.v1.Enterprise"),
            owner: "business",
        },
        Dataset {
            name: "land.parcel",
            key_kind: KeyKind::ParcelId,
            key_field: "parcel_id",
            record: message("lienthong.v1.LandParcel"),
            owner: "land",
        },
    ]
}
