//! Authorization: the grant that admits a call (consumer, dataset, mode, procedure, in
//! force, switched on) decides which fields may leave. Deny by default; a field asked for
//! outside the grant is refused by name, never dropped silently.

use super::policy::{Consumer, Grant, Mode};
use crate::domain::context::CallContext;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};

/// The grant that admits this call (its position in the config, itself), and the fields
/// it lets leave.
#[inline]
pub fn authorize<'g>(
    grants: &'g [Grant],
    consumer: &Consumer,
    dataset: &str,
    mode: Mode,
    context: &CallContext,
    asked: &[String],
) -> Result<(usize, &'g Grant, Vec<String>), LookupError> {
    let grants: Vec<_> = grants
        .iter()
        .enumerate()
        .filter(|(_, g)| g.consumer == consumer.id && g.dataset == dataset)
        .collect();
    if grants.is_empty() {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("no grant on {dataset} for this consumer"),
        ));
    }
    let grants: Vec<_> = grants.into_iter().filter(|(_, g)| !g.disabled).collect();
    if grants.is_empty() {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("the grant on {dataset} is switched off"),
        ));
    }
    let today = Date::today();
    let grants: Vec<_> = grants
        .into_iter()
        .filter(|(_, g)| g.in_force(today))
        .collect();
    if grants.is_empty() {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("the grant on {dataset} is not in force today"),
        ));
    }
    let grants: Vec<_> = grants
        .into_iter()
        .filter(|(_, g)| g.modes.contains(&mode))
        .collect();
    if grants.is_empty() {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("mode {} is not granted on {dataset}", mode.as_str()),
        ));
    }
    let &(index, grant) = grants
        .iter()
        .find(|(_, g)| {
            g.procedures
                .iter()
                .any(|p| p.matches(context.procedure_code()))
        })
        .ok_or_else(|| {
            LookupError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "procedure {} is not granted on {dataset}",
                    context.procedure_code()
                ),
            )
        })?;
    if asked.is_empty() {
        return Ok((index, grant, grant.fields.clone()));
    }
    if let Some(f) = asked.iter().find(|f| !grant.fields.contains(f)) {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("field {f:?} of {dataset} is not granted"),
        ));
    }
    Ok((index, grant, asked.to_vec()))
}

/// A fresh read from the provider (`Cache-Control: no-cache`) only where the grant allows it.
#[inline]
pub fn allow_cache_bypass(grant: &Grant, asked: bool, dataset: &str) -> Result<(), LookupError> {
    if asked && !grant.allow_cache_bypass {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the grant on {dataset} does not allow bypassing the cache (Cache-Control: no-cache)"
            ),
        ));
    }
    Ok(())
}
