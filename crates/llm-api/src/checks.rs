//! Value checks shared by the request types.

use crate::FieldError;

/// `n`, when given, must be between 1 and `limit`.
pub(crate) fn token_budget(field: &str, n: Option<u32>, limit: u32) -> Result<(), FieldError> {
    match n {
        Some(n) if n < 1 || n > limit => Err(FieldError::new(
            field,
            format!("must be between 1 and {limit}, got {n}"),
        )),
        _ => Ok(()),
    }
}

/// A sampling temperature, when given, must be between 0 and 2.
pub(crate) fn temperature(t: Option<f64>) -> Result<(), FieldError> {
    match t {
        Some(t) if !(0.0..=2.0).contains(&t) => Err(FieldError::new(
            "temperature",
            format!("must be between 0 and 2, got {t}"),
        )),
        _ => Ok(()),
    }
}
