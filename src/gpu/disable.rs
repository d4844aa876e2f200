//! `INT8_WGPU_DISABLE`: the debugging switch that turns optional device features and kernel
//! paths off by name.

use crate::{Error, Result};

/// What `disable` (the value of `INT8_WGPU_DISABLE`, comma-separated) leaves on: the optional
/// features to request (`SUBGROUP` and `TIMESTAMP_QUERY` unless named) and whether the
/// int8-activation kernels may use `dot4I8Packed` (unless `packed_dot` is named). `SHADER_F16` is
/// not requested: no kernel needs it (16-bit values travel packed in `u32`).
pub(super) fn wanted_features(disable: &str) -> Result<(wgpu::Features, bool)> {
    let mut wanted = wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
    let mut packed_dot = true;
    for key in disable.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match key.to_ascii_lowercase().as_str() {
            "subgroups" => wanted.remove(wgpu::Features::SUBGROUP),
            "timestamps" => wanted.remove(wgpu::Features::TIMESTAMP_QUERY),
            "packed_dot" => packed_dot = false,
            _ => {
                return Err(Error::InvalidOption(format!(
                    "INT8_WGPU_DISABLE names `{key}`; it takes a comma-separated list of `subgroups`, \
                     `timestamps` and `packed_dot`"
                )));
            }
        }
    }
    Ok((wanted, packed_dot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_wgpu_disable_is_parsed_by_name() {
        let all = wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        assert_eq!(wanted_features("").unwrap(), (all, true));
        assert_eq!(wanted_features(" Subgroups , ").unwrap(), (wgpu::Features::TIMESTAMP_QUERY, true));
        assert_eq!(wanted_features("subgroups,timestamps").unwrap(), (wgpu::Features::empty(), true));
        assert_eq!(wanted_features("packed_dot").unwrap(), (all, false));
        // `subgroupsx` once switched subgroups off by substring; a typo is now an error.
        for bad in ["subgroupsx", "f16", "timestamp"] {
            let e = wanted_features(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidOption(_)) && e.to_string().contains(bad), "{e}");
        }
    }
}
