//! Choosing the next token from logits: greedy, or temperature and top-p (nucleus) sampling
//! with a small seeded generator, so a seed reproduces a run.

use crate::Result;

/// xorshift64* (Vigna): enough randomness for sampling, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped, xorshift's one fixed point).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15).next_state()
    }

    fn next_state(mut self) -> Self {
        if self.0 == 0 {
            self.0 = 0x2545_F491_4F6C_DD1D;
        }
        self
    }

    /// The next value, uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the next token is chosen.
#[derive(Clone, Debug)]
pub enum Sampler {
    /// The largest logit (the first of equal ones).
    Greedy,
    /// A draw from softmax(logits / temperature), restricted to the smallest set of most likely
    /// tokens whose probability reaches `top_p`.
    Random { temperature: f32, top_p: f32, rng: Rng },
}

impl Sampler {
    /// Greedy for temperature 0, else sampling; checks the arguments.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Result<Self> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(format!("temperature {temperature}: use a finite number >= 0 (0 is greedy)").into());
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(format!("top-p {top_p}: use a number in (0, 1]").into());
        }
        Ok(if temperature == 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Random { temperature, top_p, rng: Rng::new(seed) }
        })
    }

    /// The next token id.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self {
            Sampler::Greedy => argmax(logits) as u32,
            Sampler::Random { temperature, top_p, rng } => {
                let max = logits[argmax(logits)];
                // f64 weights: exp of (logit − max) / T never overflows and sums stay exact enough.
                let mut p: Vec<(f64, u32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (f64::from((l - max) / *temperature).exp(), i as u32))
                    .collect();
                p.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let total: f64 = p.iter().map(|x| x.0).sum();
                let mut kept = 0.0;
                let mut n = 0;
                while n < p.len() && (n == 0 || kept < f64::from(*top_p) * total) {
                    kept += p[n].0;
                    n += 1;
                }
                let mut r = rng.next_f64() * kept;
                for &(w, id) in &p[..n] {
                    if r < w {
                        return id;
                    }
                    r -= w;
                }
                p[n - 1].1
            }
        }
    }
}

/// Index of the largest value (the first of equal ones; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest() {
        assert_eq!(Sampler::new(0.0, 1.0, 1).unwrap().sample(&[0.5, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus_and_a_seed_reproduces() {
        // Token 2 holds > 99.9 % of the mass: top-p 0.5 always draws it.
        let logits = [0.0, 1.0, 20.0, 2.0];
        let mut s = Sampler::new(1.0, 0.5, 7).unwrap();
        assert!((0..100).all(|_| s.sample(&logits) == 2));
        // Equal logits at top-p 1: every token is drawn, and the same seed draws the same ones.
        let flat = [0.0f32; 4];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, 1.0, seed).unwrap();
            (0..200).map(|_| s.sample(&flat)).collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert!((0..4).all(|t| a.contains(&t)));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Sampler::new(-1.0, 1.0, 0).is_err());
        assert!(Sampler::new(1.0, 0.0, 0).is_err());
        assert!(Sampler::new(f32::NAN, 1.0, 0).is_err());
    }
}
