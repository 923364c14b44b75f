//! Reading back numbers the result files wrote.

use serde::{Deserialize, Deserializer};

/// Reads an `f64` that serde_json wrote as `null` because it was not finite (a mean over no
/// tokens, 0/0) back as NaN.
pub(crate) fn nan_if_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}
