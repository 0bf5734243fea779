//! Validation: the key is well formed (check digits included), the context is present and
//! in the deployment's formats, and every field asked for exists, before anything is looked
//! up.

use crate::domain::context::{CallContext, ContextRules, RawContext};
use crate::domain::dataset::Dataset;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};

/// The normalised key and the validated context of a call on `dataset`.
#[inline]
pub fn validate(
    dataset: &Dataset,
    key: &str,
    context: &RawContext,
    rules: &ContextRules,
    fields: &[String],
) -> Result<(String, CallContext), LookupError> {
    let key = dataset
        .key
        .normalize(key, Date::today().year)
        .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
    let context = rules
        .validate(context)
        .map_err(|rule| LookupError::new(ErrorCode::InvalidContext, rule))?;
    if let Some(f) = fields.iter().find(|f| !dataset.has_field(f)) {
        return Err(LookupError::new(
            ErrorCode::InvalidRequest,
            format!("{} has no field {f:?}", dataset.name),
        ));
    }
    Ok((key, context))
}
