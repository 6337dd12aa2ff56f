//! The signal processing the modem needs: an FFT for finding the sync chirp, Goertzel
//! filters for the tones.

use std::f64::consts::PI;

#[derive(Clone, Copy, Debug, Default)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// In-place iterative radix-2 FFT; `data.len()` is a power of two.
fn fft(data: &mut [C], inverse: bool) {
    let n = data.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            data.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = if inverse { 2.0 } else { -2.0 } * PI / len as f64;
        let w_len = C {
            re: angle.cos(),
            im: angle.sin(),
        };
        for start in (0..n).step_by(len) {
            let mut w = C { re: 1.0, im: 0.0 };
            for k in 0..len / 2 {
                let (a, b) = (data[start + k], data[start + k + len / 2].mul(w));
                data[start + k] = C {
                    re: a.re + b.re,
                    im: a.im + b.im,
                };
                data[start + k + len / 2] = C {
                    re: a.re - b.re,
                    im: a.im - b.im,
                };
                w = w.mul(w_len);
            }
        }
        len <<= 1;
    }
    if inverse {
        let scale = 1.0 / n as f64;
        for x in data.iter_mut() {
            x.re *= scale;
            x.im *= scale;
        }
    }
}

/// Cross-correlation of `signal` with `template` at every lag where the template fits
/// entirely (`out[k] = Σ signal[k + i] · template[i]`), by overlap-save FFT blocks.
pub(crate) fn correlate(signal: &[f32], template: &[f32]) -> Vec<f32> {
    let m = template.len();
    if m == 0 || signal.len() < m {
        return Vec::new();
    }
    let lags = signal.len() - m + 1;
    let n = (4 * m).next_power_of_two();
    let step = n - m + 1;
    // Spectrum of the time-reversed template turns convolution into correlation.
    let mut t = vec![C::default(); n];
    for (i, &v) in template.iter().enumerate() {
        t[m - 1 - i] = C {
            re: f64::from(v),
            im: 0.0,
        };
    }
    fft(&mut t, false);
    let mut out = Vec::with_capacity(lags);
    let mut block = vec![C::default(); n];
    let mut start = 0;
    while start < lags {
        for (i, slot) in block.iter_mut().enumerate() {
            *slot = C {
                re: f64::from(signal.get(start + i).copied().unwrap_or(0.0)),
                im: 0.0,
            };
        }
        fft(&mut block, false);
        for (b, &tv) in block.iter_mut().zip(&t) {
            *b = b.mul(tv);
        }
        fft(&mut block, true);
        // Outputs m-1.. of the circular convolution are the valid (unaliased) ones.
        for k in 0..step.min(lags - start) {
            out.push(block[m - 1 + k].re as f32);
        }
        start += step;
    }
    out
}

/// Power of the DFT bin `bin` over `window` samples (Goertzel).
pub(crate) fn bin_power(samples: &[f32], bin: usize, window: usize) -> f32 {
    let coeff = 2.0 * (2.0 * PI * bin as f64 / window as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples.iter().take(window) {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_matches_the_direct_sum() {
        let signal: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        let template: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let fast = correlate(&signal, &template);
        assert_eq!(fast.len(), signal.len() - template.len() + 1);
        for k in [0, 1, 777, 2500, fast.len() - 1] {
            let direct: f32 = template
                .iter()
                .enumerate()
                .map(|(i, &t)| t * signal[k + i])
                .sum();
            assert!(
                (fast[k] - direct).abs() < 1e-2 * direct.abs().max(1.0),
                "lag {k}"
            );
        }
    }

    #[test]
    fn goertzel_picks_the_tone() {
        let window = 960;
        let x: Vec<f32> = (0..window)
            .map(|i| (2.0 * PI * 37.0 * i as f64 / window as f64).sin() as f32)
            .collect();
        let on = bin_power(&x, 37, window);
        let off = bin_power(&x, 38, window);
        assert!(on > 1000.0 * off.max(1e-6));
    }
}
