//! Hints for a layer or tensor name that a checkpoint does not hold: the name it probably meant
//! (a stray tensor suffix, another case, a missing `model.` prefix, a typo), or, for a float
//! weight asked of a quantized layer, the tensors that hold it now.

use super::{Checkpoint, TensorDtype};

/// The tensor suffixes a layer name may be given with by mistake.
const SUFFIXES: [&str; 8] =
    ["weight", "weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_format", "SCB", "bias"];

impl Checkpoint {
    /// For a layer name that is not one: `; did you mean `…`?` with the layer it probably names,
    /// else, when it names a layer index the model does not have, how many layers it has; else
    /// nothing.
    pub(super) fn layer_hint(&self, p: &str) -> String {
        let layers = self.quantized_layers();
        let stripped = p.rsplit_once('.').filter(|(_, s)| SUFFIXES.contains(s)).map(|(l, _)| l);
        if let Some(l) = stripped.filter(|l| layers.iter().any(|x| x == l)) {
            return format!("; did you mean `{l}`?");
        }
        if let Some(l) = suggest(p, layers.iter().map(String::as_str)) {
            return format!("; did you mean `{l}`?");
        }
        self.layer_count_hint(p)
    }

    /// For a tensor name that is not one: the packed tensors of a quantized layer asked for its
    /// float `.weight`, else a near tensor name, else nothing.
    pub(super) fn tensor_hint(&self, name: &str) -> String {
        if let Some(p) = name.strip_suffix(".weight") {
            let has = |s: &str| self.tensors.contains_key(&format!("{p}.{s}"));
            if has("weight_packed") || has("weight_scale") || has("SCB") {
                let ints =
                    if has("weight_packed") { format!("`{p}.weight_packed`") } else { format!("I8 `{p}.weight`") };
                return format!(
                    "; layer `{p}` is quantized: its weight is stored as ints in {ints} with scales in \
                     `{p}.weight_scale` (read it with `Checkpoint::quantized_tensor(\"{p}\")`)"
                );
            }
        }
        match suggest(name, self.tensors.keys().map(String::as_str)) {
            Some(t) => format!("; did you mean `{t}`?"),
            None => self.layer_count_hint(name),
        }
    }

    /// `; the model has N layers (`layers.0` to `layers.{N-1}`)` when `name` names
    /// `layers.<i>` with an index the checkpoint does not have.
    fn layer_count_hint(&self, name: &str) -> String {
        let index = |n: &str| -> Option<usize> {
            let rest = &n[n.find("layers.")? + "layers.".len()..];
            rest.split('.').next()?.parse().ok()
        };
        let Some(i) = index(name) else { return String::new() };
        let count = self.tensors.keys().filter_map(|k| index(k)).max().map_or(0, |m| m + 1);
        if count == 0 || i < count {
            return String::new();
        }
        match count {
            1 => "; the model has 1 layer (`layers.0`)".to_string(),
            n => format!("; the model has {n} layers (`layers.0` to `layers.{}`)", n - 1),
        }
    }

    /// Whether `P.weight` is a float tensor (the layer is not quantized).
    pub(super) fn float_weight(&self, p: &str) -> Option<TensorDtype> {
        let w = self.tensors.get(&format!("{p}.weight"))?;
        matches!(w.dtype, TensorDtype::F32 | TensorDtype::F16 | TensorDtype::BF16).then_some(w.dtype)
    }
}

/// The candidate `name` probably means: the same name in another case, with a `model.` (or other
/// leading) prefix that it lacks, or a few typos away; only ever one whose numbers (layer
/// indices) are `name`'s, since another layer of the same name is not a typo.
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let digits = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_digit()).filter(|d| !d.is_empty()).map(str::to_string).collect()
    };
    let want = digits(name);
    let same_numbers = candidates.clone().filter(|c| digits(c) == want);
    let found = |pred: &dyn Fn(&str) -> bool| {
        let mut hits = same_numbers.clone().filter(|c| pred(c));
        let first = hits.next()?;
        hits.next().is_none().then_some(first)
    };
    found(&|c| c.to_lowercase() == lower)
        .or_else(|| found(&|c| c.to_lowercase().ends_with(&format!(".{lower}"))))
        .or_else(|| {
            let (d, best) = same_numbers.clone().map(|l| (edit_distance(name, l), l)).min_by_key(|&(d, _)| d)?;
            // A few typos, not another name of a similar spelling.
            (d <= 3 && 4 * d <= name.chars().count()).then_some(best)
        })
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("up_proj", "up_proj"), 0);
        assert_eq!(edit_distance("up_prj", "up_proj"), 1);
        assert_eq!(edit_distance("up_porj", "up_proj"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let layers = ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj", "lm_head"];
        let s = |n: &str| suggest(n, layers.iter().copied());
        assert_eq!(s("layers.0.mlp.up_proj"), Some("model.layers.0.mlp.up_proj"));
        assert_eq!(s("MODEL.layers.1.MLP.up_proj"), Some("model.layers.1.mlp.up_proj"));
        assert_eq!(s("model.layers.0.mlp.up_prj"), Some("model.layers.0.mlp.up_proj"));
        assert_eq!(s("model.layers.2.mlp.up_proj"), None);
        assert_eq!(s("lm_hed"), Some("lm_head"));
    }
}
