//! A sound modem for short codes: bytes → a few seconds of 48 kHz audio → bytes.
//!
//! Multi-tone FSK: each 30 ms symbol plays four tones at once, one out of sixteen per group,
//! so a symbol carries 16 bits (two bytes). The sixteen tones of a group are spread across
//! 1.5–4.65 kHz (the four groups interleave on a 50 Hz grid), and the receiver takes the
//! strongest tone of each group in a 20 ms window in the middle of the symbol, so it needs no
//! phase, no amplitude calibration, and tolerates ±5 ms of timing error. A linear chirp
//! (1–5 kHz, 100 ms) in front marks where the frame starts; the receiver finds it by
//! cross-correlation anywhere in a recording. The frame is Reed–Solomon coded: a short
//! header (version, payload length) with its own parity, then the payload and its CRC-32 in
//! blocks with 50 % parity, interleaved byte by byte across blocks.
//!
//! The full layout and measured error rates are in `docs/protocol/modem.md`. Pure DSP: no
//! audio devices here; [`encode_wav`] / [`decode_wav`] turn samples into WAV bytes and back.

mod dsp;
mod rs;
mod wav;

pub use wav::{WavError, samples_from_wav, wav_from_samples};

use std::f64::consts::PI;

/// Sample rate of the audio this modem writes (recordings at other rates are resampled).
pub const SAMPLE_RATE: u32 = 48_000;
/// Frame format version.
pub const MODEM_VERSION: u8 = 1;
/// Largest payload one frame carries.
pub const MAX_PAYLOAD: usize = 2048;
/// Longest recording [`demodulate`] examines (10 minutes).
pub const MAX_RECORDING_SAMPLES: usize = 10 * 60 * SAMPLE_RATE as usize;

/// Samples of one symbol (30 ms).
const SYMBOL_LEN: usize = 1440;
/// Samples the receiver analyses per symbol (20 ms: bins 50 Hz apart).
const WINDOW: usize = 960;
/// Where the analysis window starts inside a symbol.
const WINDOW_OFFSET: usize = (SYMBOL_LEN - WINDOW) / 2;
/// Raised-cosine ramp at each symbol edge, against clicks.
const RAMP: usize = 96;
/// The lowest tone's DFT bin (bin × 50 Hz = 1500 Hz).
const BASE_BIN: usize = 30;
/// Tone groups per symbol (each carries a nibble).
const GROUPS: usize = 4;
/// Tone amplitude (four at once stay below full scale).
const TONE_AMP: f64 = 0.2;
/// The sync chirp.
const CHIRP_LEN: usize = 4800;
const CHIRP_F0: f64 = 1000.0;
const CHIRP_F1: f64 = 5000.0;
const CHIRP_AMP: f64 = 0.5;
/// Silence between the chirp and the first symbol, and after the last.
const GAP: usize = 480;
/// Header: version, payload length (u16 BE), then this much parity.
const HEADER_DATA: usize = 3;
const HEADER_PARITY: usize = 9;
/// Largest data part of one body block (data + parity ≤ 255).
const MAX_BLOCK_DATA: usize = 168;

/// Why audio could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModemError {
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds {MAX_PAYLOAD}")]
    PayloadTooLarge(usize),
    /// The recording is longer than [`MAX_RECORDING_SAMPLES`].
    #[error("recording of {0} samples is too long")]
    RecordingTooLong(usize),
    /// The recording ends before the frame does (or holds no frame at all).
    #[error("recording ends inside the frame")]
    RecordingTooShort,
    /// The header could not be corrected: no frame, or too much noise.
    #[error("no readable frame header (no signal, or too much noise)")]
    HeaderUnreadable,
    /// A frame of another version.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// The header announces a payload larger than [`MAX_PAYLOAD`].
    #[error("header announces {0} bytes, over the limit")]
    BadLength(usize),
    /// A body block had more errors than its parity corrects.
    #[error("too many errors to correct")]
    Uncorrectable,
    /// The corrected payload fails its CRC-32.
    #[error("payload checksum mismatch")]
    ChecksumMismatch,
    /// The WAV container is unreadable.
    #[error(transparent)]
    Wav(#[from] WavError),
}

/// A decoded frame and what the channel did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The payload.
    pub payload: Vec<u8>,
    /// Sample index in the recording where the sync chirp starts.
    pub start_sample: usize,
    /// Coded bytes as demodulated, before correction (header then body, as sent).
    pub received: Vec<u8>,
    /// Bits that differed from the corrected frame before correction.
    pub raw_bit_errors: usize,
    /// Bytes the Reed–Solomon decoder changed.
    pub corrected_bytes: usize,
}

impl Decoded {
    /// Bit error rate before correction.
    pub fn raw_bit_error_rate(&self) -> f64 {
        let bits = self.received.len() * 8;
        if bits == 0 {
            0.0
        } else {
            self.raw_bit_errors as f64 / bits as f64
        }
    }
}

/// Parity bytes of a body block with `k` data bytes: half of `k` (at least 8), even.
fn block_parity(k: usize) -> usize {
    (k.div_ceil(4) * 2).max(8)
}

/// Data sizes of the body blocks for `len` data bytes: as even as possible.
fn block_sizes(len: usize) -> Vec<usize> {
    let blocks = len.div_ceil(MAX_BLOCK_DATA).max(1);
    (0..blocks)
        .map(|i| len / blocks + usize::from(i < len % blocks))
        .collect()
}

/// Byte order on air: byte `j` of every codeword in turn, so a burst hits many blocks.
fn interleave(codewords: &[Vec<u8>]) -> Vec<u8> {
    let longest = codewords.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for j in 0..longest {
        for cw in codewords {
            if let Some(&b) = cw.get(j) {
                out.push(b);
            }
        }
    }
    out
}

fn deinterleave(stream: &[u8], lengths: &[usize]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = lengths.iter().map(|&n| Vec::with_capacity(n)).collect();
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let mut it = stream.iter();
    for j in 0..longest {
        for (cw, &n) in out.iter_mut().zip(lengths) {
            if j < n {
                cw.push(it.next().copied().unwrap_or(0));
            }
        }
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

/// The coded frame (header codeword, then the interleaved body codewords, padded to whole
/// symbols) exactly as it goes on air. The bit error rate before correction is measured
/// against this.
pub fn coded_frame(payload: &[u8]) -> Result<Vec<u8>, ModemError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ModemError::PayloadTooLarge(payload.len()));
    }
    let len =
        u16::try_from(payload.len()).map_err(|_| ModemError::PayloadTooLarge(payload.len()))?;
    let [hi, lo] = len.to_be_bytes();
    let mut frame = rs::encode(&[MODEM_VERSION, hi, lo], HEADER_PARITY);
    let mut data = payload.to_vec();
    data.extend_from_slice(&crc32(payload).to_be_bytes());
    let mut codewords = Vec::new();
    let mut rest = data.as_slice();
    for k in block_sizes(data.len()) {
        let (block, tail) = rest.split_at(k.min(rest.len()));
        codewords.push(rs::encode(block, block_parity(k)));
        rest = tail;
    }
    frame.extend(interleave(&codewords));
    if frame.len() % 2 == 1 {
        frame.push(0);
    }
    Ok(frame)
}

fn tone_bin(group: usize, value: usize) -> usize {
    BASE_BIN + value * GROUPS + group
}

fn chirp() -> Vec<f32> {
    let sr = f64::from(SAMPLE_RATE);
    let duration = CHIRP_LEN as f64 / sr;
    let rate = (CHIRP_F1 - CHIRP_F0) / duration;
    (0..CHIRP_LEN)
        .map(|i| {
            let t = i as f64 / sr;
            let phase = 2.0 * PI * (CHIRP_F0 * t + 0.5 * rate * t * t);
            (CHIRP_AMP * edge_gain(i, CHIRP_LEN, 480) * phase.sin()) as f32
        })
        .collect()
}

/// Raised-cosine fade over `ramp` samples at both ends of a `len`-sample burst.
fn edge_gain(i: usize, len: usize, ramp: usize) -> f64 {
    let d = i.min(len - 1 - i);
    if d >= ramp {
        1.0
    } else {
        0.5 - 0.5 * (PI * d as f64 / ramp as f64).cos()
    }
}

/// Audio samples for `payload` (48 kHz, mono, 16-bit).
pub fn modulate(payload: &[u8]) -> Result<Vec<i16>, ModemError> {
    let frame = coded_frame(payload)?;
    let mut out: Vec<f32> = chirp();
    out.resize(out.len() + GAP, 0.0);
    let bin_hz = f64::from(SAMPLE_RATE) / WINDOW as f64;
    for pair in frame.chunks(2) {
        let bits = u16::from(pair.first().copied().unwrap_or(0)) << 8
            | u16::from(pair.get(1).copied().unwrap_or(0));
        let freqs: Vec<f64> = (0..GROUPS)
            .map(|g| {
                let nibble = usize::from((bits >> (12 - 4 * g)) & 0x0f);
                tone_bin(g, nibble) as f64 * bin_hz
            })
            .collect();
        for i in 0..SYMBOL_LEN {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let v: f64 = freqs.iter().map(|f| (2.0 * PI * f * t).sin()).sum();
            out.push((TONE_AMP * edge_gain(i, SYMBOL_LEN, RAMP) * v) as f32);
        }
    }
    out.resize(out.len() + GAP, 0.0);
    Ok(out
        .iter()
        .map(|&x| (f64::from(x) * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// How many samples [`modulate`] produces for a payload of `len` bytes.
pub fn frame_samples(len: usize) -> usize {
    let data = len + 4;
    let body: usize = block_sizes(data).iter().map(|&k| k + block_parity(k)).sum();
    let symbols = (HEADER_DATA + HEADER_PARITY + body).div_ceil(2);
    CHIRP_LEN + GAP + symbols * SYMBOL_LEN + GAP
}

/// The two bytes of the symbol starting at `start`.
fn read_symbol(samples: &[f32], start: usize) -> Result<[u8; 2], ModemError> {
    let window = samples
        .get(start + WINDOW_OFFSET..start + WINDOW_OFFSET + WINDOW)
        .ok_or(ModemError::RecordingTooShort)?;
    let mut bits: u16 = 0;
    for g in 0..GROUPS {
        let mut best = (0usize, f32::MIN);
        for v in 0..16 {
            let p = dsp::bin_power(window, tone_bin(g, v), WINDOW);
            if p > best.1 {
                best = (v, p);
            }
        }
        bits = bits << 4 | best.0 as u16;
    }
    Ok(bits.to_be_bytes())
}

fn read_bytes(samples: &[f32], first_symbol: usize, count: usize) -> Result<Vec<u8>, ModemError> {
    let mut out = Vec::with_capacity(count + 1);
    let mut s = first_symbol;
    while out.len() < count {
        out.extend_from_slice(&read_symbol(samples, s)?);
        s += SYMBOL_LEN;
    }
    out.truncate(count);
    Ok(out)
}

fn bit_errors(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x ^ y).count_ones() as usize)
        .sum()
}

/// Finds a frame anywhere in `samples` (mono, 48 kHz, full scale ±1.0) and decodes it.
pub fn demodulate(samples: &[f32]) -> Result<Decoded, ModemError> {
    if samples.len() > MAX_RECORDING_SAMPLES {
        return Err(ModemError::RecordingTooLong(samples.len()));
    }
    let corr = dsp::correlate(samples, &chirp());
    let start = corr
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
        .ok_or(ModemError::RecordingTooShort)?;
    let data_start = start + CHIRP_LEN + GAP;

    let header_len = HEADER_DATA + HEADER_PARITY;
    let mut header = read_bytes(samples, data_start, header_len)?;
    let header_raw = header.clone();
    let header_fixed =
        rs::correct(&mut header, HEADER_PARITY).map_err(|_| ModemError::HeaderUnreadable)?;
    let [version, hi, lo, ..] = header[..] else {
        return Err(ModemError::HeaderUnreadable);
    };
    if version != MODEM_VERSION {
        return Err(ModemError::UnsupportedVersion(version));
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_PAYLOAD {
        return Err(ModemError::BadLength(len));
    }
    let sizes = block_sizes(len + 4);
    let lengths: Vec<usize> = sizes.iter().map(|&k| k + block_parity(k)).collect();
    let body_len: usize = lengths.iter().sum();
    // The header's last symbol may carry the body's first byte (odd header length).
    let all = read_bytes(samples, data_start, header_len + body_len)?;
    let body_raw = all.get(header_len..).unwrap_or_default().to_vec();
    let mut corrected_bytes = header_fixed;
    let mut data = Vec::with_capacity(len + 4);
    let mut body_fixed_stream = Vec::with_capacity(body_len);
    let mut blocks = deinterleave(&body_raw, &lengths);
    for (cw, &k) in blocks.iter_mut().zip(&sizes) {
        corrected_bytes +=
            rs::correct(cw, block_parity(k)).map_err(|_| ModemError::Uncorrectable)?;
        data.extend_from_slice(cw.get(..k).unwrap_or_default());
    }
    body_fixed_stream.extend(interleave(&blocks));
    let crc_at = data.len().saturating_sub(4);
    let (payload, crc) = data.split_at(crc_at);
    if crc != crc32(payload).to_be_bytes() {
        return Err(ModemError::ChecksumMismatch);
    }
    let mut received = header_raw.clone();
    received.extend_from_slice(&body_raw);
    let raw_bit_errors =
        bit_errors(&header_raw, &header) + bit_errors(&body_raw, &body_fixed_stream);
    Ok(Decoded {
        payload: payload.to_vec(),
        start_sample: start,
        received,
        raw_bit_errors,
        corrected_bytes,
    })
}

/// A WAV file (48 kHz, 16-bit, mono) carrying `payload`.
pub fn encode_wav(payload: &[u8]) -> Result<Vec<u8>, ModemError> {
    Ok(wav_from_samples(&modulate(payload)?, SAMPLE_RATE))
}

/// Decodes the frame in a WAV recording (16-bit PCM or 32-bit float, any channel count — the
/// channels are mixed — and any sample rate, resampled to 48 kHz).
pub fn decode_wav(bytes: &[u8]) -> Result<Decoded, ModemError> {
    let samples = samples_from_wav(bytes, MAX_RECORDING_SAMPLES)?;
    demodulate(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn interleaving_round_trips_uneven_blocks() {
        let cws = vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8]];
        let s = interleave(&cws);
        assert_eq!(s, vec![1, 4, 6, 2, 5, 7, 3, 8]);
        assert_eq!(deinterleave(&s, &[3, 2, 3]), cws);
    }

    #[test]
    fn clean_round_trip_and_frame_length() {
        let payload: Vec<u8> = (0..80u8).collect();
        let audio = modulate(&payload).unwrap();
        assert_eq!(audio.len(), frame_samples(80));
        let samples: Vec<f32> = audio.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let decoded = demodulate(&samples).unwrap();
        assert_eq!(decoded.payload, payload);
        assert_eq!(decoded.raw_bit_errors, 0);
        assert_eq!(decoded.start_sample, 0);
        assert_eq!(
            decoded.received,
            coded_frame(&payload).unwrap()[..decoded.received.len()]
        );
    }
}
