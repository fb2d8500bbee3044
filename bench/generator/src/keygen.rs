//! Random numbers and key-selection patterns for memcore-bench.
//!
//! Everything here is allocation-free per call: the hot path draws a key
//! index from a `KeyPattern` with a per-thread `Rng` and per-connection
//! sequential state.

/// wyrand: tiny, fast, good-quality 64-bit PRNG (one per worker thread).
#[derive(Clone, Default)]
pub struct Rng {
    s: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng { s: seed ^ 0x9E37_79B9_7F4A_7C15 };
        r.next_u64();
        r
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.s = self.s.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.s as u128).wrapping_mul((self.s ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in [0, n). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf(s) over ranks 1..=n by rejection-inversion (Hörmann & Derflinger,
/// 1996), as in Apache Commons RNG: O(1) per sample, no table, any n.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    sv: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0);
        let mut z = Zipf { n: n as f64, s, h_integral_x1: 0.0, h_integral_n: 0.0, sv: 0.0 };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.sv = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in 1..=n; rank 1 is the most popular.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let mut k = (x + 0.5).floor();
            if k < 1.0 {
                k = 1.0;
            } else if k > self.n {
                k = self.n;
            }
            if k - x <= self.sv || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    #[inline]
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    #[inline]
    fn h_integral(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper2((1.0 - self.s) * lx) * lx
    }

    #[inline]
    fn h_integral_inverse(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.s);
        if t < -1.0 {
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }
}

/// ln(1+x)/x, accurate near 0.
#[inline]
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 { x.ln_1p() / x } else { 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x)) }
}

/// (exp(x)-1)/x, accurate near 0.
#[inline]
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 { x.exp_m1() / x } else { 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x)) }
}

/// How keys are chosen (memtier's R/S/G/P plus Z for Zipf).
#[derive(Clone, Debug)]
pub enum KeyPattern {
    /// R: uniform random over [min, max].
    Uniform,
    /// S: sequential with wrap-around over the whole range; each connection
    /// starts at its own evenly spaced offset.
    Sequential,
    /// P: parallel sequential; each connection walks only its own disjoint
    /// slice of the range (wrapping within it).
    Parallel,
    /// G: Gaussian around `median` with `stddev`, redrawn until in range.
    Gaussian { median: f64, stddev: f64 },
    /// Z: Zipf; rank 1 (most popular) maps to key min, rank 2 to min+1, ...
    Zipf(Zipf),
}

impl KeyPattern {
    pub fn letter(&self) -> char {
        match self {
            KeyPattern::Uniform => 'R',
            KeyPattern::Sequential => 'S',
            KeyPattern::Parallel => 'P',
            KeyPattern::Gaussian { .. } => 'G',
            KeyPattern::Zipf(_) => 'Z',
        }
    }
}

/// Per-connection, per-pattern sequential cursor (used by S and P).
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqState {
    pub next: u64,
    pub lo: u64,
    pub hi: u64,
}

impl SeqState {
    /// Cursor for connection `g` of `total` connections over [min, max].
    pub fn new(pattern: &KeyPattern, min: u64, max: u64, g: u64, total: u64) -> SeqState {
        let n = max - min + 1;
        match pattern {
            KeyPattern::Parallel => {
                let (lo, hi) = slice(min, max, g, total);
                SeqState { next: lo, lo, hi }
            }
            _ => {
                let off = ((n as u128 * g as u128) / total.max(1) as u128) as u64;
                SeqState { next: min + off, lo: min, hi: max }
            }
        }
    }

    #[inline]
    fn step(&mut self) -> u64 {
        let k = self.next;
        self.next = if k >= self.hi { self.lo } else { k + 1 };
        k
    }
}

/// Slice `g` of `total` of [min, max] (may be empty when lo > hi).
pub fn slice(min: u64, max: u64, g: u64, total: u64) -> (u64, u64) {
    let n = (max - min + 1) as u128;
    let total = total.max(1) as u128;
    let lo = min as u128 + n * g as u128 / total;
    let hi = min as u128 + n * (g as u128 + 1) / total;
    (lo as u64, (hi as u64).wrapping_sub(1))
}

pub struct KeyGen {
    pub pattern: KeyPattern,
    pub min: u64,
    pub max: u64,
}

impl KeyGen {
    #[inline]
    pub fn next(&self, rng: &mut Rng, seq: &mut SeqState) -> u64 {
        match &self.pattern {
            KeyPattern::Uniform => self.min + rng.below(self.max - self.min + 1),
            KeyPattern::Sequential | KeyPattern::Parallel => seq.step(),
            KeyPattern::Gaussian { median, stddev } => loop {
                // Box-Muller (one value per draw; simple and branch-light).
                let u1 = 1.0 - rng.unit();
                let u2 = rng.unit();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let v = (median + z * stddev).round();
                if v >= self.min as f64 && v <= self.max as f64 {
                    return v as u64;
                }
            },
            KeyPattern::Zipf(z) => self.min + z.sample(rng) - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_head_is_heavy() {
        let z = Zipf::new(1000, 0.99);
        let mut r = Rng::new(1);
        let mut c1 = 0;
        for _ in 0..100_000 {
            let k = z.sample(&mut r);
            assert!((1..=1000).contains(&k));
            if k == 1 {
                c1 += 1;
            }
        }
        // H(1000, 0.99) ~ 7.7 so P(1) ~ 0.13.
        assert!(c1 > 10_000 && c1 < 16_000, "{c1}");
    }
}
