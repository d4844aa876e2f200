//! The order tensor and file names are listed and written in: digit runs compared as numbers.

/// Orders names with their digit runs compared as numbers, so `layer.2` comes before
/// `layer.10`.
///
/// ```
/// use int8_wgpu::checkpoint::natural_cmp;
/// let mut v = ["layer.10.w", "layer.2.w", "layer.1.w"];
/// v.sort_by(|a, b| natural_cmp(a, b));
/// assert_eq!(v, ["layer.1.w", "layer.2.w", "layer.10.w"]);
/// ```
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
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
