//! `peerlink offer`, `peerlink answer <code>` and `peerlink modem encode|decode`: connect two
//! devices with one short code each way (a link, a QR code or sound) and no server.
//!
//! stdout carries only what a script needs: the code on the first line, then one
//! `connected …` line with the verified remote identity. Instructions and the terminal QR
//! code go to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use peerlink::webrtc::compact::{CodeAnswer, CodeKind, CodeOffer, CompactSignal};
use peerlink::webrtc::{IceServer, WebRtcConfig};
use peerlink::{Connection, HandlerError, Identity, Node, NodeConfig, typed_handler};
use peerlink_core::modem;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Options shared by `offer` and `answer`.
#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    /// Bind 127.0.0.1 only (both peers on this machine).
    #[arg(long)]
    loopback: bool,
    /// STUN server for a server-reflexive candidate, e.g. `stun:stun.example.org:3478`.
    #[arg(long = "stun")]
    stun: Vec<String>,
    /// User id announced in the handshake.
    #[arg(long, default_value = "cli")]
    user: String,
    /// Device id announced in the handshake.
    #[arg(long, default_value = "cli-device")]
    device: String,
    /// Identity secret key (base64, as `peerlink identity new` prints); a fresh one if absent.
    #[arg(long)]
    secret_key: Option<String>,
    /// Longest wait for the peer (the answer code, the connection, the handshake), seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct OfferArgs {
    #[command(flatten)]
    link: LinkArgs,
    /// Write the QR code to this file: `.svg` or `.png`.
    #[arg(long)]
    qr_out: Option<PathBuf>,
    /// Also print the code as a link on this base, e.g. `https://lobby.example/`; the QR code
    /// then holds the link (phone cameras open links) instead of the raw code bytes.
    #[arg(long)]
    link_base: Option<String>,
    /// Do not draw the QR code in the terminal.
    #[arg(long)]
    no_qr: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AnswerArgs {
    /// The offer code, or a link `http(s)://host/#CODE`.
    code: String,
    #[command(flatten)]
    link: LinkArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModemCommand {
    /// Write a code as sound (WAV, 48 kHz, 16-bit mono).
    Encode {
        /// The code, or a link holding it.
        code: String,
        /// Output WAV file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Read a code from a WAV recording and print it.
    Decode {
        /// The recording (16-bit PCM or 32-bit float, any rate and channel count).
        input: PathBuf,
    },
}

type BoxError = Box<dyn std::error::Error>;

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn offer(args: OfferArgs) -> Result<(), BoxError> {
    runtime()?.block_on(run_offer(args))
}

pub(crate) fn answer(args: AnswerArgs) -> Result<(), BoxError> {
    runtime()?.block_on(run_answer(args))
}

pub(crate) fn modem_cmd(cmd: ModemCommand) -> Result<(), BoxError> {
    match cmd {
        ModemCommand::Encode { code, output } => {
            let code = CompactSignal::from_text(&code)?;
            let bytes = code.to_bytes()?;
            let wav = modem::encode_wav(&bytes)?;
            std::fs::write(&output, &wav)?;
            eprintln!(
                "{} bytes as {:.2} s of sound in {}",
                bytes.len(),
                modem::frame_samples(bytes.len()) as f64 / f64::from(modem::SAMPLE_RATE),
                output.display()
            );
        }
        ModemCommand::Decode { input } => {
            let wav = std::fs::read(&input)?;
            let decoded = modem::decode_wav(&wav)?;
            let code = CompactSignal::from_bytes(&decoded.payload)?;
            println!("{}", code.to_text()?);
            eprintln!(
                "{:?} code, frame at {:.3} s, raw bit error rate {:.2e}, {} bytes corrected",
                code.kind,
                decoded.start_sample as f64 / f64::from(modem::SAMPLE_RATE),
                decoded.raw_bit_error_rate(),
                decoded.corrected_bytes
            );
        }
    }
    Ok(())
}

fn config(args: &LinkArgs) -> WebRtcConfig {
    let base = if args.loopback {
        WebRtcConfig::loopback()
    } else {
        WebRtcConfig::default()
    };
    WebRtcConfig {
        trickle: false,
        gather_timeout: Duration::from_secs(5),
        ice_servers: if args.stun.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: args.stun.clone(),
                ..IceServer::default()
            }]
        },
        ..base
    }
    .for_codes()
}

/// A node that answers `ping` and reports when the peer pinged it.
fn node(args: &LinkArgs) -> Result<(Node, mpsc::UnboundedReceiver<()>), BoxError> {
    let identity = match &args.secret_key {
        Some(key) => Identity::from_secret_key_base64(key)?,
        None => Identity::generate(&mut rand::rngs::OsRng),
    };
    let node = Node::new(NodeConfig::new(identity, &args.user, &args.device))?;
    let (pinged_tx, pinged_rx) = mpsc::unbounded_channel();
    node.expose(
        "ping",
        typed_handler(move |text: String| {
            let pinged = pinged_tx.clone();
            async move {
                let _ = pinged.send(());
                Ok::<_, HandlerError>(format!("pong: {text}"))
            }
        }),
    );
    Ok((node, pinged_rx))
}

async fn run_offer(args: OfferArgs) -> Result<(), BoxError> {
    let bound = Duration::from_secs(args.link.timeout);
    let (node, pinged) = node(&args.link)?;
    let offer = CodeOffer::create(config(&args.link)).await?;
    let code = offer.code();
    let bytes = code.to_bytes()?;
    let text = code.to_text()?;
    println!("{text}");
    std::io::stdout().flush()?;
    eprintln!(
        "offer code: {} bytes, {} characters, {} candidate(s)",
        bytes.len(),
        text.len(),
        code.candidates.len()
    );
    let qr_payload = match &args.link_base {
        Some(base) => {
            let link_text = code.to_link(base)?;
            eprintln!("link: {link_text}");
            link_text.into_bytes()
        }
        None => bytes,
    };
    let qr = qrcode::QrCode::with_error_correction_level(&qr_payload, qrcode::EcLevel::M)?;
    if !args.no_qr {
        let art = qr
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build();
        eprintln!("{art}");
    }
    if let Some(path) = &args.qr_out {
        write_qr(&qr, path)?;
        eprintln!("QR code ({:?}) written to {}", qr.version(), path.display());
    }
    eprintln!("paste the answer code (or link) and press enter:");
    let mut lines = stdin_lines();
    let answer = loop {
        let line = timeout(bound, lines.recv())
            .await
            .map_err(|_| "timed out waiting for the answer code")?
            .ok_or("stdin closed before an answer code arrived")?;
        if line.trim().is_empty() {
            continue;
        }
        match CompactSignal::from_text(&line) {
            Ok(code) if code.kind == CodeKind::Answer => break code,
            Ok(_) => eprintln!("that is an offer code; paste the answer"),
            Err(err) => eprintln!("not a code ({err}); try again"),
        }
    };
    let conn = offer.connect(&node, &answer, bound).await?;
    finish(node, pinged, conn, bound).await
}

/// Lines typed or piped on stdin (read on a plain thread: the runtime has no stdin driver).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn run_answer(args: AnswerArgs) -> Result<(), BoxError> {
    let bound = Duration::from_secs(args.link.timeout);
    let offer = CompactSignal::from_text(&args.code)?;
    let (node, pinged) = node(&args.link)?;
    let answer = CodeAnswer::create(config(&args.link), &offer).await?;
    println!("{}", answer.code().to_text()?);
    std::io::stdout().flush()?;
    eprintln!(
        "answer code: {} bytes; give it to the offering side",
        answer.code().to_bytes()?.len()
    );
    let conn = answer.connect(&node, bound).await?;
    finish(node, pinged, conn, bound).await
}

/// Pings the peer over the verified connection, waits to be pinged back, and prints the
/// verified remote identity.
async fn finish(
    node: Node,
    mut pinged: mpsc::UnboundedReceiver<()>,
    conn: Connection,
    bound: Duration,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let reply: String = timeout(bound, conn.call("ping", &"hello".to_owned()))
        .await
        .map_err(|_| "timed out waiting for the ping reply")??;
    let rtt = started.elapsed();
    // Stay until the peer's own ping has been answered, so neither side closes under the other.
    timeout(bound, pinged.recv())
        .await
        .map_err(|_| "timed out waiting for the peer's ping")?;
    let remote = conn.remote();
    println!(
        "connected {}/{} publicKey {} ping {:.1} ms ({reply})",
        remote.user_id,
        remote.device_id,
        remote.public_key,
        rtt.as_secs_f64() * 1e3
    );
    // Let the reply to the peer's ping leave before closing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.close().await;
    Ok(())
}

fn write_qr(qr: &qrcode::QrCode, path: &std::path::Path) -> Result<(), BoxError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let svg = qr
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .build();
            std::fs::write(path, svg)?;
        }
        Some("png") => std::fs::write(path, qr_png(qr, 8)?)?,
        _ => return Err("--qr-out must end in .svg or .png".into()),
    }
    Ok(())
}

/// A greyscale PNG of the QR code, `scale` pixels per module, with the 4-module quiet zone.
fn qr_png(qr: &qrcode::QrCode, scale: usize) -> Result<Vec<u8>, BoxError> {
    let modules = qr.width();
    let colors = qr.to_colors();
    let quiet = 4;
    let side = (modules + 2 * quiet) * scale;
    let mut raw = Vec::with_capacity((side + 1) * side);
    for y in 0..side {
        raw.push(0); // filter: none
        for x in 0..side {
            let (mx, my) = (
                (x / scale).wrapping_sub(quiet),
                (y / scale).wrapping_sub(quiet),
            );
            let dark = mx < modules
                && my < modules
                && colors.get(my * modules + mx) == Some(&qrcode::Color::Dark);
            raw.push(if dark { 0 } else { 255 });
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let side = u32::try_from(side)?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
        png.extend_from_slice(&u32::try_from(data.len())?.to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(png.get(start..).unwrap_or_default());
        png.extend_from_slice(&crc.to_be_bytes());
    }
    Ok(png)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn png_has_the_right_size_and_chunks() {
        let qr =
            qrcode::QrCode::with_error_correction_level(b"hello", qrcode::EcLevel::M).expect("qr");
        let png = qr_png(&qr, 2).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let side = (qr.width() + 8) * 2;
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().expect("4 bytes")) as usize,
            side
        );
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND CRC");
    }
}
