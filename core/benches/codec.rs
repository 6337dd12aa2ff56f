//! The whole codec path, both ends: encode (MessagePack envelope + raw body, deflate when it
//! pays) → queue → chunk + seal records → open → reassemble → decode.
//!
//! `cargo bench -p peerlink-core --bench codec` runs criterion;
//! `cargo bench -p peerlink-core --bench codec -- --json` prints one JSON line per case with the
//! median MB/s (what `bench/codec.sh` compares against msgpackr + fflate).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use peerlink_core::handshake::SessionKeys;
use peerlink_core::wire::{
    self, CompressionConfig, Envelope, WireConfig, WireReceiver, WireSender, decode_message,
    encode_message,
};

const SIZES: [(usize, &str); 4] = [
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (16 << 20, "16MiB"),
];

#[derive(Clone, Copy)]
enum Payload {
    Text,
    Random,
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Random => "random",
        }
    }

    /// Same generators as `bench/codec-node/bench.mjs`.
    fn bytes(self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 128);
        match self {
            Self::Text => {
                let mut i = 0u64;
                while out.len() < len {
                    out.extend_from_slice(
                        format!(
                            "{{\"id\":{i},\"name\":\"record-{}\",\"tags\":[\"alpha\",\"beta\"],\"ok\":true}},",
                            i % 97
                        )
                        .as_bytes(),
                    );
                    i += 1;
                }
            }
            Self::Random => {
                let mut state = 0x9e37_79b9_7f4a_7c15u64;
                while out.len() < len {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    out.extend_from_slice(&state.to_le_bytes());
                }
            }
        }
        out.truncate(len);
        out
    }
}

struct Link {
    sender: WireSender,
    receiver: WireReceiver,
    config: WireConfig,
}

impl Link {
    fn new(level: u32) -> Self {
        let key_a = [7u8; 32];
        let key_b = [9u8; 32];
        let config = WireConfig {
            compression: CompressionConfig {
                level,
                ..CompressionConfig::default()
            },
            ..WireConfig::default()
        };
        let (sender, _) = wire::session(
            &SessionKeys {
                send: key_a,
                recv: key_b,
            },
            config.clone(),
        );
        let (_, receiver) = wire::session(
            &SessionKeys {
                send: key_b,
                recv: key_a,
            },
            config.clone(),
        );
        Self {
            sender,
            receiver,
            config,
        }
    }

    /// One message through the whole path; returns the decoded body length.
    fn round_trip(&mut self, id: u64, body: &[u8]) -> usize {
        let envelope = Envelope::Call {
            id,
            name: "bench".into(),
        };
        let encoded = encode_message(&envelope, body, &self.config.compression).expect("encode");
        self.sender.push(encoded).expect("push");
        let mut decoded = 0;
        while let Some(record) = self.sender.poll_transmit() {
            if let Some(message) = self.receiver.handle_record(&record).expect("record") {
                let (envelope, body) =
                    decode_message(message, self.config.max_message_size).expect("decode");
                black_box(envelope);
                decoded = body.len();
            }
        }
        decoded
    }
}

fn criterion_benches(c: &mut Criterion) {
    for payload in [Payload::Text, Payload::Random] {
        let mut group = c.benchmark_group(format!("codec/{}", payload.name()));
        for (size, label) in SIZES {
            let body = payload.bytes(size);
            group.throughput(Throughput::Bytes(size as u64));
            if size >= 1 << 20 {
                group.sample_size(10);
            }
            let mut link = Link::new(1);
            let mut id = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
                b.iter(|| {
                    id += 1;
                    assert_eq!(link.round_trip(id, body), body.len());
                });
            });
        }
        group.finish();
    }
}

/// Median MB/s over timed batches, each batch long enough for the clock to be meaningful.
fn json_benches(budget: Duration) {
    for payload in [Payload::Text, Payload::Random] {
        for (size, label) in SIZES {
            let body = payload.bytes(size);
            let mut link = Link::new(1);
            let mut id = 0u64;
            // Warm up and size the batch to about 20 ms.
            let start = Instant::now();
            let mut warm = 0u32;
            while start.elapsed() < Duration::from_millis(200) || warm < 2 {
                id += 1;
                link.round_trip(id, &body);
                warm += 1;
            }
            let per_iter = start.elapsed().as_secs_f64() / f64::from(warm);
            let batch = ((0.02 / per_iter).ceil() as u32).max(1);
            let mut samples = Vec::new();
            let run = Instant::now();
            while (run.elapsed() < budget || samples.len() < 5) && samples.len() < 1000 {
                let t = Instant::now();
                for _ in 0..batch {
                    id += 1;
                    assert_eq!(link.round_trip(id, &body), body.len());
                }
                samples.push(t.elapsed().as_secs_f64() / f64::from(batch));
            }
            samples.sort_by(f64::total_cmp);
            let median = samples[samples.len() / 2];
            let mbps = size as f64 / median / 1e6;
            println!(
                "{{\"impl\":\"peerlink\",\"level\":1,\"payload\":\"{}\",\"size\":\"{label}\",\"bytes\":{size},\"median_us\":{:.3},\"mb_per_s\":{mbps:.1},\"samples\":{}}}",
                payload.name(),
                median * 1e6,
                samples.len()
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--json") {
        let seconds = args
            .iter()
            .position(|a| a == "--seconds")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(2.0);
        json_benches(Duration::from_secs_f64(seconds));
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion);
    criterion.final_summary();
}
