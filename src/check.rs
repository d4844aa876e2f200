//! Input and output validation shared by the CPU and GPU paths: one place decides what is an
//! error, so both paths report the same kind for the same input.

use crate::scheme::{check_shape, unravel};
use crate::{Element, Error, Result};

/// The position of the first NaN or infinity in `x`, with its value.
pub fn find_non_finite<T: Element>(x: &[T]) -> Option<(usize, f32)> {
    x.iter().map(|v| v.to_f32()).enumerate().find(|(_, v)| !v.is_finite())
}

pub(crate) fn check_finite<T: Element>(x: &[T], shape: &[usize], what: &str) -> Result<()> {
    match find_non_finite(x) {
        None => Ok(()),
        Some((index, value)) => {
            Err(Error::NonFinite { what: what.into(), position: unravel(index, shape), index, value })
        }
    }
}

pub(crate) fn check_len(len: usize, shape: &[usize], what: &str) -> Result<usize> {
    let numel = check_shape(shape, what)?;
    if len != numel {
        return Err(Error::Shape(format!("{what} has {len} elements but shape {shape:?} needs {numel}")));
    }
    Ok(numel)
}

/// Finite inputs can still give a non-finite output (a sum beyond the dtype's range, or
/// `inf - inf` in the zero-point term): an [`Error::Overflow`] naming the first one.
pub(crate) fn check_output<T: Element>(y: &[T], shape: &[usize]) -> Result<()> {
    match find_non_finite(y) {
        None => Ok(()),
        Some((index, value)) => Err(Error::Overflow {
            what: format!("the linear output ({})", T::DTYPE),
            dtype: T::DTYPE,
            position: unravel(index, shape),
            index,
            value,
        }),
    }
}
