//! Deterministic randomness for the generated data: a seeded stream per record, and an
//! affine permutation that maps each index to a key and back.

/// splitmix64: a small, good, reproducible mixer.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic random stream for one record.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64, stream: u64, index: u64) -> Rng {
        Rng(mix(seed ^ mix(stream ^ mix(index))))
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub(super) fn weighted<'a, T>(&mut self, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
        let total: u64 = items.iter().map(|i| u64::from(weight(i))).sum();
        let mut r = self.below(total);
        for item in items {
            let w = u64::from(weight(item));
            if r < w {
                return item;
            }
            r -= w;
        }
        &items[items.len() - 1]
    }
}

/// A bijection on `0..m`: x -> (a·x + b) mod m, with its inverse.
#[derive(Debug, Clone, Copy)]
pub(super) struct Permutation {
    m: u64,
    a: u64,
    a_inv: u64,
    b: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn mod_inverse(a: u64, m: u64) -> u64 {
    let (mut t, mut new_t, mut r, mut new_r) = (0i128, 1i128, m as i128, a as i128);
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    t.rem_euclid(m as i128) as u64
}

impl Permutation {
    pub(super) fn new(m: u64, seed: u64, stream: u64) -> Permutation {
        let mut rng = Rng::new(seed, stream, u64::MAX);
        let mut a = m / 2 + rng.below(m / 3) + 1;
        while gcd(a, m) != 1 {
            a += 1;
        }
        let a = a % m;
        Permutation {
            m,
            a,
            a_inv: mod_inverse(a, m),
            b: rng.below(m),
        }
    }
    pub(super) fn apply(&self, x: u64) -> u64 {
        ((u128::from(self.a) * u128::from(x) + u128::from(self.b)) % u128::from(self.m)) as u64
    }
    pub(super) fn invert(&self, y: u64) -> u64 {
        let shifted =
            (u128::from(y) + u128::from(self.m) - u128::from(self.b)) % u128::from(self.m);
        ((u128::from(self.a_inv) * shifted) % u128::from(self.m)) as u64
    }
}
