//! Authorization: the grant that admits a call (consumer, dataset, mode, procedure, in
//! force, switched on) decides which fields may leave. Deny by default; a field asked for
//! outside the grant is refused by name, never dropped silently.

use super::policy::{Consumer, Grant, Mode};
use crate::domain::context::CallContext;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};

/// The grant that admits this call (its position in the config, itself), and the fields
/// it lets leave: the grant's own list unless the caller asked for fewer.
///
/// One pass over the grants, without allocating: the refusal, when there is one, names the
/// furthest step any of the consumer's grants on the dataset reached (none, switched off,
/// not in force, mode, procedure), as a check of each step in turn would.
#[inline]
pub fn authorize<'g, 'a>(
    grants: &'g [Grant],
    consumer: &Consumer,
    dataset: &str,
    mode: Mode,
    context: &CallContext,
    asked: &'a [String],
) -> Result<(usize, &'g Grant, &'a [String]), LookupError>
where
    'g: 'a,
{
    let mut today = None;
    // How far the best of the consumer's grants on the dataset got.
    let mut reached = Step::NoGrant;
    let mut admitted = None;
    for (index, g) in grants.iter().enumerate() {
        if g.consumer != consumer.id || g.dataset != dataset {
            continue;
        }
        let step = if g.disabled {
            Step::SwitchedOff
        } else if !g.in_force(*today.get_or_insert_with(Date::today)) {
            Step::NotInForce
        } else if !g.modes.contains(&mode) {
            Step::Mode
        } else if !g
            .procedures
            .iter()
            .any(|p| p.matches(context.procedure_code()))
        {
            Step::Procedure
        } else {
            admitted = Some((index, g));
            break;
        };
        reached = reached.max(step);
    }
    let Some((index, grant)) = admitted else {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            match reached {
                Step::NoGrant => format!("no grant on {dataset} for this consumer"),
                Step::SwitchedOff => format!("the grant on {dataset} is switched off"),
                Step::NotInForce => format!("the grant on {dataset} is not in force today"),
                Step::Mode => format!("mode {} is not granted on {dataset}", mode.as_str()),
                Step::Procedure => format!(
                    "procedure {} is not granted on {dataset}",
                    context.procedure_code()
                ),
            },
        ));
    };
    if asked.is_empty() {
        return Ok((index, grant, &grant.fields));
    }
    if let Some(f) = asked.iter().find(|f| !grant.fields.contains(f)) {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("field {f:?} of {dataset} is not granted"),
        ));
    }
    Ok((index, grant, asked))
}

/// The steps a grant passes, in order: a refusal names the furthest one reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    NoGrant,
    SwitchedOff,
    NotInForce,
    Mode,
    Procedure,
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
