//! Which tensors a run quantizes, decided from the headers alone: candidates are the 2-D float
//! `*.weight` tensors; include and exclude globs and the default excludes narrow them; the rest
//! is copied and listed with a reason.

use super::Quantizer;
use crate::checkpoint::{self, Checkpoint, INDEX_FILE, MODEL_FILE, TensorDtype};
use crate::{Error, Result};

/// Patterns excluded unless [`Quantizer::default_excludes`] is switched off: embeddings, norms,
/// position and token-type tables, and the output head (the course keeps `lm_head` in float).
pub const DEFAULT_EXCLUDES: &[&str] =
    &["*embeddings*", "*embed_tokens*", "*LayerNorm*", "*norm*", "*position*", "*token_type*", "*lm_head*"];

/// Whether `name` matches the glob `pattern` as a whole: `*` matches any run of characters
/// (dots included), `?` exactly one character, anything else itself (case-sensitive).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    // On bytes, without allocating (the planner calls this for every tensor and pattern: seven
    // default patterns over a million names). Comparing literal bytes matches exactly when
    // comparing characters does, UTF-8 being self-synchronising; `?` and a star's retry step
    // over a whole character.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let char_len = |i: usize| match n[i] {
        0..0x80 => 1,
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    };
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ni += char_len(ni);
        } else if pi < p.len() && p[pi] != b'*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last star swallow one more character and retry.
            let sn = sn + char_len(sn);
            star = Some((sp, sn));
            pi = sp + 1;
            ni = sn;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A `*.weight` tensor that is not quantized, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The tensor name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype.
    pub dtype: TensorDtype,
    /// Why it is copied unchanged.
    pub reason: String,
}

/// What a [`Quantizer`] will do to a checkpoint, decided from the headers alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// The tensors to quantize (`P.weight`), sorted.
    pub targets: Vec<String>,
    /// The `*.weight` tensors left in float, with the reason.
    pub skipped: Vec<Skipped>,
    /// Patterns that matched nothing, and the like.
    pub warnings: Vec<String>,
    /// Layer names for the config's `ignore` list: every 2-D `*.weight` tensor left in float,
    /// without the `.weight` suffix (compressed-tensors would otherwise expect every `Linear`
    /// quantized).
    pub ignore: Vec<String>,
}

impl Quantizer {
    /// Decides what to quantize from the checkpoint's headers.
    pub(crate) fn select(&self, ckpt: &Checkpoint) -> Result<Selection> {
        let mut selection = Selection::default();
        let defaults: &[&str] = if self.default_excludes { DEFAULT_EXCLUDES } else { &[] };
        let mut included_something = false;
        for (name, info) in ckpt.tensors() {
            if !name.ends_with(".weight") {
                continue;
            }
            let user_ex = self.exclude.iter().find(|p| glob_match(p, name));
            let default_ex = defaults.iter().find(|p| glob_match(p, name));
            let included = self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name));
            let reason = if let Some(p) = user_ex {
                Some(format!("excluded by `{p}`"))
            } else if let Some(p) = default_ex {
                Some(format!("excluded by default pattern `{p}`"))
            } else if !included {
                Some("not matched by an include pattern".to_string())
            } else if info.shape.len() != 2 {
                Some(format!("{}-D, not a linear weight", info.shape.len()))
            } else if info.numel() == 0 {
                // Nothing to quantize, and a zero-size layer would abort the whole run.
                Some("zero-size, nothing to quantize".to_string())
            } else if info.float_dtype().is_none() {
                if !self.include.is_empty() {
                    return Err(Error::Unsupported(format!(
                        "tensor `{name}` matches an include pattern but its dtype {} is not supported for \
                         quantization (F32, F16, BF16 are); exclude it",
                        info.dtype
                    )));
                }
                Some(format!("dtype {} is not quantized", info.dtype))
            } else {
                None
            };
            match reason {
                None => {
                    included_something = true;
                    selection.targets.push(name.to_string());
                }
                Some(reason) => {
                    // Every 2-D weight left in float may be a Linear the loader must not expect
                    // quantized (compressed-tensors targets all `Linear` modules).
                    if info.shape.len() == 2 {
                        selection.ignore.push(name.trim_end_matches(".weight").to_string());
                    }
                    selection.skipped.push(Skipped {
                        name: name.to_string(),
                        shape: info.shape.clone(),
                        dtype: info.dtype,
                        reason,
                    });
                }
            }
        }
        // Names are unique, so an unstable sort gives the same order without a merge buffer.
        selection.targets.sort_unstable_by(|a, b| checkpoint::natural_cmp(a, b));
        selection.skipped.sort_unstable_by(|a, b| checkpoint::natural_cmp(&a.name, &b.name));
        selection.ignore.sort_unstable_by(|a, b| checkpoint::natural_cmp(a, b));
        for (kind, pats) in [("exclude", &self.exclude), ("include", &self.include)] {
            for p in pats.iter().filter(|p| !ckpt.names().any(|n| glob_match(p, n))) {
                selection.warnings.push(format!("{kind} pattern `{p}` matches no tensor"));
            }
        }
        if !included_something {
            selection.warnings.push("no tensor is quantized: every linear weight is excluded or none exists".into());
        }
        for f in ckpt.unlisted_files() {
            selection.warnings.push(if ckpt.is_sharded() {
                format!(
                    "`{f}` is in the input folder but not in `{INDEX_FILE}`: it was not read and its tensors are not \
                     in the output"
                )
            } else {
                format!(
                    "`{f}` is in the input folder but is not `{MODEL_FILE}`: it was not read and its tensors are not \
                     in the output"
                )
            });
        }
        Ok(selection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "a.b.c"));
        assert!(glob_match("a*c", "abc"));
        assert!(glob_match("a*c", "ac"));
        assert!(glob_match("a*c", "abcbc"));
        assert!(!glob_match("a*c", "abcb"));
        assert!(glob_match("?", "x"));
        assert!(!glob_match("?", ""));
        assert!(!glob_match("?", "xy"));
        assert!(glob_match("*lm_head*", "model.lm_head.weight"));
        assert!(glob_match("*lm_head*", "lm_head.weight"));
        assert!(glob_match("encoder.layer.*.attention.*", "encoder.layer.3.attention.self.query.weight"));
        assert!(!glob_match("layer.?.dense", "layer.10.dense"));
        assert!(glob_match("encoder.layer.*.attention.*", "encoder.layer.11.attention.output.dense.weight"));
        assert!(!glob_match("encoder.layer.*.attention.*", "encoder.layer.11.output.dense.weight"));
        assert!(glob_match("layer.?.dense", "layer.1.dense"));
        assert!(!glob_match("layer.?.dense", "layer.12.dense"));
        assert!(glob_match("**a**", "xax"));
        assert!(!glob_match("abc", "abcd"));
        assert!(!glob_match("*LayerNorm*", "layernorm"));
        assert!(glob_match("*.weight", "x.weight"));
        assert!(!glob_match("*.weight", "x.weight_scale"));
    }

    /// `glob_match` as first written, on `Vec<char>`s: the specification of the byte version.
    fn glob_match_chars(pattern: &str, name: &str) -> bool {
        let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 20_000, ..Default::default() })]

        #[test]
        fn glob_match_agrees_with_the_char_version(
            // Multi-byte characters sharing a lead byte (é, è), a 3- and a 4-byte one, so `?`
            // and the star's retry must step over whole characters.
            pattern in "[ab.*?éè€😀]{0,7}",
            name in "[ab.*?éè€😀]{0,9}",
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &name), glob_match_chars(&pattern, &name));
        }
    }

    #[test]
    fn glob_matches_whole_characters() {
        assert!(glob_match("?", "é") && glob_match("?", "😀") && !glob_match("??", "é"));
        assert!(glob_match("a*€b", "a😀é€b") && !glob_match("a*€b", "a😀éb"));
        assert!(glob_match("*?", "€") && glob_match("*è", "éè"));
    }
}
