//! The order tensor and file names are listed and written in: digit runs compared as numbers.

/// Orders names with their digit runs compared as numbers, so `layer.2` comes before
/// `layer.10`.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // Walks both names run by run (a maximal run of ASCII digits, or of anything else) without
    // allocating: sorting a million names called this some 20 million times.
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let run_end = |s: &[u8], start: usize| {
        let digit = s[start].is_ascii_digit();
        s[start..].iter().position(|c| c.is_ascii_digit() != digit).map_or(s.len(), |n| start + n)
    };
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let (ei, ej) = (run_end(x, i), run_end(y, j));
        let (ra, rb) = (&x[i..ei], &y[j..ej]);
        let ord = if ra[0].is_ascii_digit() && rb[0].is_ascii_digit() {
            // As numbers of any length: without leading zeros, the longer is larger.
            fn trim(r: &[u8]) -> &[u8] {
                &r[r.iter().position(|&c| c != b'0').unwrap_or(r.len())..]
            }
            let (na, nb) = (trim(ra), trim(rb));
            na.len().cmp(&nb.len()).then_with(|| na.cmp(nb))
        } else {
            ra.cmp(rb)
        };
        if ord.is_ne() {
            return ord;
        }
        (i, j) = (ei, ej);
    }
    // Equal runs so far: the name with runs left is larger; equal names-as-numbers ("01" and
    // "1") are ordered bytewise so the order stays total.
    (i < x.len()).cmp(&(j < y.len())).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_layers_by_number() {
        let mut v = ["layer.10.w", "layer.2.w", "layer.1.w"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["layer.1.w", "layer.2.w", "layer.10.w"]);
    }

    /// `natural_cmp` as it was first written (split into digit and non-digit runs, compare run by
    /// run), kept as the specification of the allocation-free version.
    fn natural_cmp_tokenizing(a: &str, b: &str) -> std::cmp::Ordering {
        fn tokens(s: &str) -> Vec<(bool, &str)> {
            let mut out = Vec::new();
            let mut start = 0;
            let bytes = s.as_bytes();
            for i in 1..=bytes.len() {
                if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                    out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                    start = i;
                }
            }
            out
        }
        let (ta, tb) = (tokens(a), tokens(b));
        for ((da, xa), (db, xb)) in ta.iter().zip(&tb) {
            let ord = if *da && *db {
                let (xa, xb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
                xa.len().cmp(&xb.len()).then_with(|| xa.cmp(xb))
            } else {
                xa.cmp(xb)
            };
            if ord.is_ne() {
                return ord;
            }
        }
        ta.len().cmp(&tb.len()).then_with(|| a.cmp(b))
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 20_000, ..Default::default() })]

        #[test]
        fn natural_cmp_orders_like_the_tokenizing_version(
            // Few symbols, so equal prefixes, leading zeros, digit/non-digit boundaries at different
            // offsets, bytes below and above the digits ('!', '~') and multi-byte chars are common.
            a in "([0-2]|0[0-2]|[ab.!~é]){0,8}",
            b in "([0-2]|0[0-2]|[ab.!~é]){0,8}",
            prefix in "(layer\\.(0|1|10|007)\\.)?",
        ) {
            for (x, y) in [(a.clone(), b.clone()), (format!("{prefix}{a}"), format!("{prefix}{b}")), (a.clone(), a.clone())] {
                proptest::prop_assert_eq!(natural_cmp(&x, &y), natural_cmp_tokenizing(&x, &y), "{:?} vs {:?}", x, y);
                proptest::prop_assert_eq!(natural_cmp(&y, &x), natural_cmp_tokenizing(&y, &x), "{:?} vs {:?}", y, x);
            }
        }
    }

    #[test]
    fn natural_cmp_examples() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("layer.2", "layer.10", Less),
            ("layer.010", "layer.10", Less), // equal numbers: the tie is broken bytewise
            ("layer.10", "layer.10", Equal),
            ("ab1", "ab!", Less), // a run that ends before a digit is a prefix: shorter first
            ("a", "a0", Less),
            ("", "0", Less),
            ("9", "a", Less),
            ("x99999999999999999999999", "x100000000000000000000000", Less), // beyond u64
        ] {
            assert_eq!(natural_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(natural_cmp_tokenizing(a, b), want, "{a} vs {b} (tokenizing)");
            assert_eq!(natural_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
