//! WAV (RIFF) containers: 16-bit PCM out; 16-bit PCM or 32-bit float in, any channel count and
//! sample rate.

use super::SAMPLE_RATE;

/// Why a WAV file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// Not a RIFF/WAVE file, or a chunk runs past the end.
    #[error("not a WAV file: {0}")]
    Malformed(&'static str),
    /// A sample format this reader does not take.
    #[error("unsupported WAV format: {0}")]
    Unsupported(&'static str),
    /// More samples than the caller's limit.
    #[error("WAV file holds more than {0} samples")]
    TooLong(usize),
}

/// A 16-bit mono PCM WAV file.
pub fn wav_from_samples(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Mono samples at 48 kHz, full scale ±1.0, from a WAV file; at most `max_samples` of them
/// (after resampling).
pub fn samples_from_wav(bytes: &[u8], max_samples: usize) -> Result<Vec<f32>, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::Malformed("no RIFF/WAVE header"));
    }
    let mut pos = 12;
    let mut format = None;
    let mut data = None;
    while pos + 8 <= bytes.len() {
        let id = bytes.get(pos..pos + 4).unwrap_or_default();
        let len = le32(bytes, pos + 4).ok_or(WavError::Malformed("chunk header"))? as usize;
        let body_start = pos + 8;
        // A truncated data chunk (a recording cut short) is read as far as it goes.
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = bytes.get(body_start..body_end).unwrap_or_default();
        match id {
            b"fmt " => {
                let tag = le16(body, 0).ok_or(WavError::Malformed("fmt chunk"))?;
                let channels = le16(body, 2).ok_or(WavError::Malformed("fmt chunk"))?;
                let rate = le32(body, 4).ok_or(WavError::Malformed("fmt chunk"))?;
                let bits = le16(body, 14).ok_or(WavError::Malformed("fmt chunk"))?;
                // WAVE_FORMAT_EXTENSIBLE names the real format in its sub-format GUID.
                let tag = if tag == 0xFFFE {
                    le16(body, 24).ok_or(WavError::Malformed("extensible fmt chunk"))?
                } else {
                    tag
                };
                format = Some((tag, channels, rate, bits));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos = body_start.saturating_add(len).saturating_add(len & 1);
    }
    let (tag, channels, rate, bits) = format.ok_or(WavError::Malformed("no fmt chunk"))?;
    let data = data.ok_or(WavError::Malformed("no data chunk"))?;
    if channels == 0 {
        return Err(WavError::Malformed("zero channels"));
    }
    if !(8_000..=192_000).contains(&rate) {
        return Err(WavError::Unsupported("sample rate outside 8-192 kHz"));
    }
    let width = match (tag, bits) {
        (1, 16) => 2,
        (3, 32) => 4,
        _ => return Err(WavError::Unsupported("only 16-bit PCM and 32-bit float")),
    };
    let frame = width * usize::from(channels);
    let frames = data.len() / frame;
    let out_len = (frames as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    if frames > max_samples.saturating_mul(4) || out_len > max_samples {
        return Err(WavError::TooLong(max_samples));
    }
    let mono: Vec<f32> = data
        .chunks_exact(frame)
        .map(|f| {
            let sum: f32 = f
                .chunks_exact(width)
                .map(|s| match s {
                    [a, b] => f32::from(i16::from_le_bytes([*a, *b])) / 32768.0,
                    [a, b, c, d] => f32::from_le_bytes([*a, *b, *c, *d]),
                    _ => 0.0,
                })
                .sum();
            sum / f32::from(channels)
        })
        .collect();
    if rate == SAMPLE_RATE {
        return Ok(mono);
    }
    // Linear interpolation: the tones sit far below either Nyquist frequency.
    let step = f64::from(rate) / f64::from(SAMPLE_RATE);
    Ok((0..out_len)
        .map(|i| {
            let x = i as f64 * step;
            let j = x as usize;
            let frac = (x - j as f64) as f32;
            let a = mono.get(j).copied().unwrap_or(0.0);
            let b = mono.get(j + 1).copied().unwrap_or(a);
            a + (b - a) * frac
        })
        .collect())
}
