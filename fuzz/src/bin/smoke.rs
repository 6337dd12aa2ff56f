//! Runs every fuzz target on stable Rust for a bounded time: a seed corpus built from real
//! encoder output, random mutations of it, and plain random inputs.
//!
//!   cargo run --release --manifest-path fuzz/Cargo.toml --bin fuzz-smoke -- --seconds 10
//!
//! `--seconds` is the total budget, split evenly between targets; `--seed N` changes the run;
//! `--target NAME` runs one target only.
//! A panicking input is printed in hex before the panic is passed on (non-zero exit).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use peerlink_core::handshake::SessionKeys;
use peerlink_core::handshake::{Handshake, HandshakeConfig, HandshakeOutput, LinkBinding};
use peerlink_core::identity::{DeviceInfo, Identity};
use peerlink_core::wire::testing::{FLAG_FIRST, FLAG_LAST, FrameOpener, chunk_frame};
use peerlink_core::wire::{self, CompressionConfig, Envelope, WireConfig, encode_message};
use peerlink_fuzz::{FRAME_KEY, FUZZ_UNIX_MS, join};

/// A target's name and body.
type Target = (&'static str, fn(&[u8]));

/// Every target, in run order (the names of the libFuzzer binaries in `fuzz_targets/`).
const TARGETS: [Target; 12] = [
    ("wire_record", peerlink_fuzz::wire_record),
    ("wire_frames", peerlink_fuzz::wire_frames),
    ("envelope", peerlink_fuzz::envelope),
    ("device_info", peerlink_fuzz::device_info),
    ("handshake", peerlink_fuzz::handshake),
    ("compact", peerlink_fuzz::compact),
    ("device_message", peerlink_fuzz::device_message),
    ("modem", peerlink_fuzz::modem),
    ("webrtc_signal", peerlink_fuzz::webrtc_signal),
    ("sdp", peerlink_fuzz::sdp),
    ("signaling_server", peerlink_fuzz::signaling_server),
    ("signaling_client", peerlink_fuzz::signaling_client),
];

fn names() -> String {
    TARGETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A data-channel offer with host, srflx and mDNS candidates.
const OFFER_SDP: &str = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                a=candidate:1 1 udp 2122260223 192.168.1.23 50123 typ host\r\n\
                a=candidate:2 1 udp 1686052607 203.0.113.7 61001 typ srflx raddr 192.168.1.23 rport 50123\r\n\
                a=candidate:3 1 udp 2122260223 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.local 9 typ host\r\n\
                a=ice-ufrag:Zq3x\r\na=ice-pwd:hV5o9jP2fRk3N1mQ8sT0wYbC\r\n\
                a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:A6:85\r\n\
                a=setup:actpass\r\na=mid:0\r\na=max-message-size:65536\r\n";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn envelopes() -> Vec<Envelope> {
    vec![
        Envelope::Call {
            id: 1,
            name: "listChanges_g".into(),
        },
        Envelope::Reply { id: 1 },
        Envelope::Error {
            id: 2,
            code: "no_handler".into(),
            message: "x".into(),
        },
        Envelope::Notify { name: "n".into() },
        Envelope::StreamCredit {
            id: 4,
            bytes: 1 << 20,
        },
        Envelope::Close {
            code: "closed".into(),
            message: "bye".into(),
        },
    ]
}

fn text(len: usize) -> Vec<u8> {
    b"{\"id\":1,\"name\":\"record\",\"ok\":true},"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Records and frames of a few real messages sent with small records.
fn real_traffic() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let config = WireConfig {
        max_record_size: 200,
        ..peerlink_fuzz::small_config()
    };
    let keys = SessionKeys {
        send: FRAME_KEY,
        recv: [0; 32],
    };
    let (mut sender, _) = wire::session(&keys, config.clone());
    for (i, envelope) in envelopes().iter().enumerate() {
        let body = if i % 2 == 0 {
            text(i * 300)
        } else {
            vec![i as u8; i * 10]
        };
        let message = encode_message(envelope, &body, &config.compression).expect("encode");
        sender.push(message).expect("push");
    }
    let mut opener = FrameOpener::new(&FRAME_KEY);
    let mut records = Vec::new();
    let mut frames = Vec::new();
    while let Some(record) = sender.poll_transmit() {
        frames.push(opener.open(&record).expect("own record opens"));
        records.push(record);
    }
    (records, frames)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let (records, frames) = real_traffic();
    let as_refs = |v: &[Vec<u8>]| join(&v.iter().map(Vec::as_slice).collect::<Vec<_>>());
    match target {
        "wire_record" => vec![as_refs(&records), as_refs(&records[..1]), Vec::new()],
        "wire_frames" => vec![
            as_refs(&frames),
            join(&[&chunk_frame(FLAG_FIRST | FLAG_LAST, 0, Some(0), b"")]),
            join(&[
                &chunk_frame(FLAG_FIRST, 1, Some(6), b"abc"),
                &chunk_frame(FLAG_FIRST, 2, Some(4), b"xy"),
                &chunk_frame(FLAG_LAST, 1, None, b"def"),
                &chunk_frame(FLAG_LAST, 2, None, b"zw"),
            ]),
        ],
        "envelope" => {
            let mut out = Vec::new();
            for envelope in envelopes() {
                for body in [b"body".to_vec(), text(5000)] {
                    let config = CompressionConfig {
                        threshold: 0,
                        ..CompressionConfig::default()
                    };
                    let message = encode_message(&envelope, &body, &config).expect("encode");
                    let mut seed = vec![u8::from(message.compressed)];
                    seed.extend_from_slice(&message.bytes);
                    out.push(seed);
                }
            }
            out
        }
        "device_info" => {
            let identity = Identity::from_seed(&[3; 32]);
            let mut info = DeviceInfo::new(&identity, "user", "device", FUZZ_UNIX_MS);
            info.addresses = vec!["wss://example.invalid:443".into()];
            info.device_name = Some("laptop".into());
            vec![info.sign(&identity).expect("sign").to_bytes()]
        }
        "handshake" => {
            let identity = Identity::from_seed(&[9; 32]);
            let info = DeviceInfo::new(&identity, "u", "d", FUZZ_UNIX_MS)
                .sign(&identity)
                .expect("sign");
            let now = Instant::now();
            let Ok(mut initiator) = Handshake::initiator(
                &identity,
                info,
                LinkBinding::Memory("fuzz".into()),
                HandshakeConfig::default(),
                now,
                FUZZ_UNIX_MS,
            ) else {
                return vec![Vec::new()];
            };
            let mut first = Vec::new();
            while let Some(output) = initiator.poll_output() {
                if let HandshakeOutput::Transmit(bytes) = output {
                    first = bytes;
                    break;
                }
            }
            vec![join(&[&first]), first]
        }
        "compact" => {
            let offer = OFFER_SDP;
            let code = peerlink_core::compact::CompactSignal::from_sdp(
                offer,
                peerlink_core::compact::CodeKind::Offer,
            )
            .expect("seed offer reads");
            vec![code.to_bytes().expect("seed encodes")]
        }
        "device_message" => {
            use peerlink_core::device_message::{
                DeliveryStatus, DeviceMessage, DeviceMessageResult,
            };
            let identity = Identity::from_seed(&[5; 32]);
            let message = DeviceMessage::new_signed(
                &identity, "m-1", "alice", "bob", "ctx", 4, b"payload".to_vec(),
            )
            .expect("seed message");
            let broadcast =
                DeviceMessage::new_signed(&identity, "m-2", "alice", "", "", 2, Vec::new())
                    .expect("seed broadcast")
                    .forwarded_by("carol");
            let result = DeviceMessageResult {
                status: DeliveryStatus::Delivered,
                hops: vec!["carol".into(), "bob".into()],
                payload: b"ok".to_vec(),
            };
            vec![
                message.to_bytes(),
                broadcast.to_bytes(),
                rmp_serde::to_vec_named(&result).expect("seed result"),
            ]
        }
        "modem" => {
            let samples = peerlink_core::modem::modulate(b"hi").expect("seed frame");
            let wav = peerlink_core::modem::wav_from_samples(&samples, 48_000);
            let short = peerlink_core::modem::wav_from_samples(&samples[..2000], 8_000);
            let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            vec![wav, short, pcm]
        }
        "webrtc_signal" => {
            let sdp = serde_json::to_string(OFFER_SDP).expect("string");
            vec![
                format!(r#"{{"type":"offer","sdp":{sdp},"connectionId":"pl1-c1","iceRestart":true}}"#),
                format!(r#"{{"type":"answer","sdp":{sdp}}}"#),
                r#"{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.168.1.23 50123 typ host","sdpMLineIndex":0,"sdpMid":"0","usernameFragment":"Zq3x"},"connectionId":"c"}"#.into(),
                r#"{"type":"renegotiate","renegotiate":true,"iceRestart":true}"#.into(),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect()
        }
        "sdp" => vec![
            OFFER_SDP.as_bytes().to_vec(),
            OFFER_SDP.replace("a=max-message-size:65536\r\n", "").into_bytes(),
            format!("{OFFER_SDP}m=audio 9 RTP/AVP 0\r\na=max-message-size:5\r\n").into_bytes(),
        ],
        "signaling_server" => {
            use peerlink_signal_server::fuzzing::{CHALLENGE, HOST, NOW_UNIX_SECS, TOKEN_SECRET};
            let identity = Identity::from_seed(&[11; 32]);
            let signature = identity.sign(&peerlink_signal_server::protocol::auth_message(
                &CHALLENGE, HOST, "dev-1", "user-1",
            ));
            let token = peerlink_signal_server::mint_token(
                TOKEN_SECRET,
                &identity.public_key(),
                NOW_UNIX_SECS + 60,
            );
            let auth = serde_json::json!({
                "type": "auth", "v": 1, "id": 0,
                "publicKey": identity.public_key().to_base64(),
                "deviceId": "dev-1", "userId": "user-1", "host": HOST,
                "signature": signature.to_base64(), "token": token,
            });
            vec![
                auth.to_string().into_bytes(),
                br#"{"type":"join","id":2,"room":"lobby"}"#.to_vec(),
                br#"{"type":"signal","id":3,"to":"dev-2","data":{"type":"offer","sdp":"v=0"}}"#
                    .to_vec(),
                br#"{"deviceId":"dev-2","userId":"u","publicKey":"AAAA"}"#.to_vec(),
                peerlink_signal_server::protocol::relay_frame("dev-2", b"\x01\0\0\0\x07data")
                    .to_vec(),
                token.into_bytes(),
            ]
        }
        "signaling_client" => vec![
            br#"{"type":"members","re":1,"room":"r","members":[{"deviceId":"a","userId":"u","publicKey":"AAAA"}]}"#.to_vec(),
            br#"{"type":"error","re":2,"code":"target_offline","message":"gone","to":"b"}"#.to_vec(),
            br#"{"type":"turn","re":3,"username":"1:a","credential":"x","ttl":60,"urls":["turn:198.18.0.2:3478"]}"#.to_vec(),
            br#"{"type":"joined","room":"r","member":{"deviceId":"a","userId":"u","publicKey":"AAAA"}}"#.to_vec(),
            peerlink::fuzzing::link_frame("alice", 1, 7, b"ciphertext"),
            b"wss://Signal.Example.org:443/ws?x=1#frag".to_vec(),
            b"ws://[::1]:9/".to_vec(),
            peerlink::fuzzing::encode_hub_relay("group", "notify", b"\x92\x01\x02").expect("seed relay"),
        ],
        _ => Vec::new(),
    }
}

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if corpus.is_empty() || rng.below(8) == 0 {
        let len = rng.below(600);
        return rng.bytes(len);
    }
    let mut input = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 => {
                let cut = rng.below(input.len() + 1);
                input.truncate(cut);
            }
            3 => {
                let at = rng.below(input.len() + 1);
                let len = rng.below(16) + 1;
                let extra = rng.bytes(len);
                input.splice(at..at, extra);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(input.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ if input.len() > 1 => {
                let a = rng.below(input.len());
                let b = rng.below(input.len());
                let (lo, hi) = (a.min(b), a.max(b));
                let copy = input[lo..hi].to_vec();
                input.splice(hi..hi, copy);
            }
            _ => {}
        }
    }
    input
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let seed: u64 = arg("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2545_f491_4f6c_dd1d);
    let only = arg("--target");
    let targets: Vec<Target> = TARGETS
        .iter()
        .copied()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    if targets.is_empty() {
        eprintln!("no such target; targets: {}", names());
        std::process::exit(2);
    }
    let budget = Duration::from_secs_f64(seconds / targets.len() as f64);
    let mut rng = Rng(seed | 1);
    let mut total = 0u64;
    for (name, target) in targets {
        let corpus = seeds(name);
        let start = Instant::now();
        let mut execs = 0u64;
        let run = |input: &[u8]| {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(input))) {
                eprintln!(
                    "{name}: panicking input ({} bytes): {}",
                    input.len(),
                    hex(input)
                );
                resume_unwind(panic);
            }
        };
        for input in &corpus {
            run(input);
            execs += 1;
        }
        while start.elapsed() < budget {
            let input = mutate(&mut rng, &corpus);
            run(&input);
            execs += 1;
        }
        total += execs;
        println!(
            "{name}: {execs} inputs in {:.1} s, no panic",
            start.elapsed().as_secs_f64()
        );
    }
    println!("fuzz-smoke: {total} inputs, all targets passed");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
