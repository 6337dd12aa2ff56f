//! Reed-Solomon over GF(2^8) (primitive polynomial 0x11d, generator roots α^0…α^(2t-1)):
//! systematic encoding and error correction with Berlekamp–Massey, Chien search and Forney.
//!
//! Codeword byte 0 is the coefficient of the highest power, as in most RS implementations
//! (and so a codeword is the message followed by the parity bytes).

/// Log/antilog tables of GF(256).
struct Gf {
    exp: [u8; 512],
    log: [u8; 256],
}

const fn tables() -> Gf {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    while i < 512 {
        exp[i] = exp[i - 255];
        i += 1;
    }
    Gf { exp, log }
}

static GF: Gf = tables();

fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF.exp[usize::from(GF.log[usize::from(a)]) + usize::from(GF.log[usize::from(b)])]
}

/// `a / b`; callers never divide by zero (b is a locator value or a non-zero discrepancy).
fn div(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF.exp[(usize::from(GF.log[usize::from(a)]) + 255 - usize::from(GF.log[usize::from(b)])) % 255]
}

/// α^e for any e ≥ 0.
fn alpha_pow(e: usize) -> u8 {
    GF.exp[e % 255]
}

/// Evaluates a little-endian polynomial (index = degree) at x.
fn eval_le(poly: &[u8], x: u8) -> u8 {
    poly.iter().rev().fold(0, |acc, &c| mul(acc, x) ^ c)
}

/// The generator polynomial, highest degree first (monic: `g[0] == 1`).
fn generator(nsym: usize) -> Vec<u8> {
    let mut g = vec![1u8];
    for j in 0..nsym {
        // Multiply by (x + α^j).
        let root = alpha_pow(j);
        let mut next = vec![0u8; g.len() + 1];
        for (i, &c) in g.iter().enumerate() {
            next[i] ^= c;
            next[i + 1] ^= mul(c, root);
        }
        g = next;
    }
    g
}

/// Appends `nsym` parity bytes to `message` (`message.len() + nsym <= 255`).
pub(crate) fn encode(message: &[u8], nsym: usize) -> Vec<u8> {
    let g = generator(nsym);
    let mut rem = vec![0u8; nsym];
    for &b in message {
        let coef = b ^ rem.first().copied().unwrap_or(0);
        rem.rotate_left(1);
        if let Some(last) = rem.last_mut() {
            *last = 0;
        }
        for (r, &gc) in rem.iter_mut().zip(g.iter().skip(1)) {
            *r ^= mul(gc, coef);
        }
    }
    let mut out = message.to_vec();
    out.extend_from_slice(&rem);
    out
}

/// The codeword could not be corrected: more errors than the parity can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uncorrectable;

fn syndromes(codeword: &[u8], nsym: usize) -> Vec<u8> {
    (0..nsym)
        .map(|j| {
            let x = alpha_pow(j);
            // Horner over the bytes, highest degree first.
            codeword.iter().fold(0, |acc, &c| mul(acc, x) ^ c)
        })
        .collect()
}

/// Corrects up to `nsym / 2` byte errors in place; returns how many bytes were changed.
pub(crate) fn correct(codeword: &mut [u8], nsym: usize) -> Result<usize, Uncorrectable> {
    let n = codeword.len();
    if n > 255 || nsym >= n {
        return Err(Uncorrectable);
    }
    let s = syndromes(codeword, nsym);
    if s.iter().all(|&x| x == 0) {
        return Ok(0);
    }
    // Berlekamp–Massey: the error locator Λ(x) = Π (1 + X_k x), little-endian.
    let mut c = vec![1u8];
    let mut b = vec![1u8];
    let mut l = 0usize;
    let mut m = 1usize;
    let mut bd = 1u8;
    for k in 0..nsym {
        let mut d = s[k];
        for i in 1..=l.min(c.len() - 1) {
            d ^= mul(c[i], s[k - i]);
        }
        if d == 0 {
            m += 1;
            continue;
        }
        let coef = div(d, bd);
        let mut next = c.clone();
        if next.len() < b.len() + m {
            next.resize(b.len() + m, 0);
        }
        for (i, &bc) in b.iter().enumerate() {
            next[i + m] ^= mul(coef, bc);
        }
        if 2 * l <= k {
            l = k + 1 - l;
            b = std::mem::replace(&mut c, next);
            bd = d;
            m = 1;
        } else {
            c = next;
            m += 1;
        }
    }
    while c.len() > 1 && c.last() == Some(&0) {
        c.pop();
    }
    if l != c.len() - 1 || 2 * l > nsym {
        return Err(Uncorrectable);
    }
    // Chien search: an error at degree e (byte n-1-e) makes Λ(α^-e) zero.
    let mut degrees = Vec::with_capacity(l);
    for e in 0..n {
        if eval_le(&c, alpha_pow(255 - e % 255)) == 0 {
            degrees.push(e);
        }
    }
    if degrees.len() != l {
        return Err(Uncorrectable);
    }
    // Forney (first root α^0): Y = X · Ω(X^-1) / Λ'(X^-1), Ω = S·Λ mod x^nsym.
    let mut omega = vec![0u8; nsym];
    for (i, &si) in s.iter().enumerate() {
        for (j, &cj) in c.iter().enumerate() {
            if i + j < nsym {
                omega[i + j] ^= mul(si, cj);
            }
        }
    }
    let derivative: Vec<u8> = c
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, &ci)| if i % 2 == 1 { ci } else { 0 })
        .collect();
    for &e in &degrees {
        let x = alpha_pow(e);
        let x_inv = alpha_pow(255 - e % 255);
        let denom = eval_le(&derivative, x_inv);
        if denom == 0 {
            return Err(Uncorrectable);
        }
        let magnitude = mul(x, div(eval_le(&omega, x_inv), denom));
        let pos = n - 1 - e;
        if let Some(byte) = codeword.get_mut(pos) {
            *byte ^= magnitude;
        }
    }
    if syndromes(codeword, nsym).iter().any(|&x| x != 0) {
        return Err(Uncorrectable);
    }
    Ok(degrees.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *seed >> 33
    }

    #[test]
    fn codewords_have_zero_syndromes() {
        let cw = encode(b"hello reed solomon", 10);
        assert_eq!(cw.len(), 28);
        assert!(syndromes(&cw, 10).iter().all(|&s| s == 0));
    }

    #[test]
    fn corrects_up_to_half_the_parity_and_refuses_more() {
        let mut seed = 7u64;
        for trial in 0..300 {
            let k = 1 + (lcg(&mut seed) % 120) as usize;
            let nsym = 2 + 2 * (lcg(&mut seed) % 20) as usize;
            let msg: Vec<u8> = (0..k).map(|_| lcg(&mut seed) as u8).collect();
            let cw = encode(&msg, nsym);
            let n = cw.len();
            let errors = (lcg(&mut seed) as usize) % (nsym / 2 + 1);
            let mut bad = cw.clone();
            let mut positions = std::collections::BTreeSet::new();
            while positions.len() < errors {
                positions.insert(lcg(&mut seed) as usize % n);
            }
            for &p in &positions {
                bad[p] ^= 1 + (lcg(&mut seed) % 255) as u8;
            }
            let fixed = correct(&mut bad, nsym);
            assert_eq!(fixed, Ok(errors), "trial {trial}");
            assert_eq!(bad, cw, "trial {trial}");
        }
    }

    #[test]
    fn beyond_capacity_it_refuses_or_returns_a_valid_codeword() {
        // Beyond the capacity the decoder either refuses or lands on another codeword (which
        // the frame CRC then catches); it must never panic and must leave a valid codeword or
        // report failure.
        let mut seed = 11u64;
        for _ in 0..300 {
            let msg: Vec<u8> = (0..40).map(|_| lcg(&mut seed) as u8).collect();
            let mut cw = encode(&msg, 8);
            for _ in 0..9 {
                let p = lcg(&mut seed) as usize % cw.len();
                cw[p] ^= 1 + (lcg(&mut seed) % 255) as u8;
            }
            if correct(&mut cw, 8).is_ok() {
                assert!(syndromes(&cw, 8).iter().all(|&s| s == 0));
            }
        }
    }
}
