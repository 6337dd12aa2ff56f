//! Sound modem: round trips through noise, unknown offsets and WAV files; error rates before
//! correction are printed (`cargo test -p peerlink-core --test modem -- --nocapture`).

use peerlink_core::modem::{
    self, ModemError, SAMPLE_RATE, WavError, coded_frame, decode_wav, demodulate, encode_wav,
    frame_samples, modulate, samples_from_wav, wav_from_samples,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A compact offer's size (one host and one srflx IPv4 candidate, engine credentials).
const CODE_LEN: usize = 84;

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box–Muller.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// The recording a microphone might make: `lead` samples of silence, the frame at `gain`,
/// some trailing silence, and white noise over all of it at `snr_db` relative to the frame's
/// mean power.
fn recording(payload: &[u8], snr_db: f64, lead: usize, gain: f32, rng: &mut StdRng) -> Vec<f32> {
    let audio: Vec<f32> = modulate(payload)
        .expect("modulate")
        .iter()
        .map(|&s| gain * f32::from(s) / 32768.0)
        .collect();
    let power = audio
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / audio.len() as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    let mut out = vec![0.0f32; lead];
    out.extend_from_slice(&audio);
    out.resize(out.len() + 9_000, 0.0);
    for x in &mut out {
        *x += sigma * gaussian(rng);
    }
    out
}

/// Bit errors of the demodulated bytes against what was sent, counted independently of the
/// decoder's own correction.
fn raw_bit_error_rate(payload: &[u8], received: &[u8]) -> f64 {
    let sent = coded_frame(payload).expect("frame");
    let errors: u32 = sent
        .iter()
        .zip(received)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    f64::from(errors) / (received.len() * 8) as f64
}

#[test]
fn code_survives_10_db_noise_with_random_offset_and_silence() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let mut total_ber = 0.0;
    let trials = 4;
    for trial in 0..trials {
        let payload: Vec<u8> = (0..CODE_LEN).map(|_| rng.r#gen()).collect();
        let lead = rng.gen_range(0..3 * SAMPLE_RATE as usize);
        let gain = rng.gen_range(0.05..1.0);
        let samples = recording(&payload, 10.0, lead, gain, &mut rng);
        let decoded = demodulate(&samples).expect("decodes at 10 dB");
        assert_eq!(decoded.payload, payload, "trial {trial}");
        assert!(
            decoded.start_sample.abs_diff(lead) <= 2,
            "sync found at {} for a frame at {lead}",
            decoded.start_sample
        );
        let ber = raw_bit_error_rate(&payload, &decoded.received);
        assert!((ber - decoded.raw_bit_error_rate()).abs() < 1e-12);
        total_ber += ber;
        println!(
            "10 dB, lead {lead} samples, gain {gain:.2}: raw BER {ber:.2e}, {} bytes corrected",
            decoded.corrected_bytes
        );
    }
    println!(
        "10 dB SNR: mean raw BER {:.2e} over {trials} frames",
        total_ber / f64::from(trials)
    );
}

#[test]
fn error_correction_carries_frames_through_heavier_noise() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let mut corrected_any = false;
    for snr in [0.0, -8.0, -11.0] {
        let payload: Vec<u8> = (0..CODE_LEN).map(|_| rng.r#gen()).collect();
        let lead = rng.gen_range(0..SAMPLE_RATE as usize);
        let samples = recording(&payload, snr, lead, 0.5, &mut rng);
        let decoded = demodulate(&samples).expect("decodes");
        assert_eq!(decoded.payload, payload, "{snr} dB");
        let ber = raw_bit_error_rate(&payload, &decoded.received);
        corrected_any |= decoded.corrected_bytes > 0;
        println!(
            "{snr} dB SNR: raw BER {ber:.2e}, {} of {} coded bytes corrected",
            decoded.corrected_bytes,
            decoded.received.len()
        );
    }
    assert!(
        corrected_any,
        "the harshest level exercises the Reed-Solomon decoder"
    );
}

#[test]
fn rate_meets_16_bytes_per_second() {
    let seconds = frame_samples(CODE_LEN) as f64 / f64::from(SAMPLE_RATE);
    println!(
        "{CODE_LEN}-byte code: {seconds:.2} s, {:.1} bytes/s",
        CODE_LEN as f64 / seconds
    );
    assert!(seconds <= 6.0);
    assert!(CODE_LEN as f64 / seconds >= 16.0);
    let eighty = frame_samples(80) as f64 / f64::from(SAMPLE_RATE);
    assert!(eighty <= 6.0);
}

#[test]
fn wav_files_round_trip_at_48_and_44_1_khz() {
    let payload = b"peerlink compact code over sound".to_vec();
    let wav = encode_wav(&payload).expect("wav");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(decode_wav(&wav).expect("decode").payload, payload);

    // The same audio as a 44.1 kHz stereo float recording.
    let samples = samples_from_wav(&wav, modem::MAX_RECORDING_SAMPLES).expect("samples");
    let resampled: Vec<f32> = (0..samples.len() * 441 / 480)
        .map(|i| {
            let x = i as f64 * 480.0 / 441.0;
            let j = x as usize;
            let f = (x - j as f64) as f32;
            let a = samples[j];
            let b = samples.get(j + 1).copied().unwrap_or(a);
            a + (b - a) * f
        })
        .collect();
    let mut float_wav = Vec::new();
    let data_len = (resampled.len() * 8) as u32;
    float_wav.extend_from_slice(b"RIFF");
    float_wav.extend_from_slice(&(data_len + 36).to_le_bytes());
    float_wav.extend_from_slice(b"WAVEfmt ");
    float_wav.extend_from_slice(&16u32.to_le_bytes());
    float_wav.extend_from_slice(&3u16.to_le_bytes());
    float_wav.extend_from_slice(&2u16.to_le_bytes());
    float_wav.extend_from_slice(&44_100u32.to_le_bytes());
    float_wav.extend_from_slice(&(44_100u32 * 8).to_le_bytes());
    float_wav.extend_from_slice(&8u16.to_le_bytes());
    float_wav.extend_from_slice(&32u16.to_le_bytes());
    float_wav.extend_from_slice(b"data");
    float_wav.extend_from_slice(&data_len.to_le_bytes());
    for s in &resampled {
        float_wav.extend_from_slice(&s.to_le_bytes());
        float_wav.extend_from_slice(&s.to_le_bytes());
    }
    assert_eq!(
        decode_wav(&float_wav).expect("decode 44.1 kHz").payload,
        payload
    );
}

#[test]
fn bad_recordings_are_typed_errors() {
    let mut rng = StdRng::seed_from_u64(3);
    let noise: Vec<f32> = (0..SAMPLE_RATE as usize * 3)
        .map(|_| 0.1 * gaussian(&mut rng))
        .collect();
    assert!(matches!(
        demodulate(&noise),
        Err(ModemError::HeaderUnreadable
            | ModemError::UnsupportedVersion(_)
            | ModemError::BadLength(_)
            | ModemError::Uncorrectable
            | ModemError::ChecksumMismatch
            | ModemError::RecordingTooShort)
    ));
    assert_eq!(demodulate(&[]), Err(ModemError::RecordingTooShort));
    let audio = modulate(&[1, 2, 3, 4]).expect("modulate");
    let cut: Vec<f32> = audio[..audio.len() / 2]
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    assert_eq!(demodulate(&cut), Err(ModemError::RecordingTooShort));
    assert!(matches!(
        decode_wav(b"not a wav file at all"),
        Err(ModemError::Wav(WavError::Malformed(_)))
    ));
    let mut eight_bit = wav_from_samples(&[0, 1, 2], SAMPLE_RATE);
    eight_bit[34] = 8;
    assert!(matches!(
        decode_wav(&eight_bit),
        Err(ModemError::Wav(WavError::Unsupported(_)))
    ));
    assert_eq!(
        modulate(&vec![0; modem::MAX_PAYLOAD + 1]),
        Err(ModemError::PayloadTooLarge(modem::MAX_PAYLOAD + 1))
    );
}
