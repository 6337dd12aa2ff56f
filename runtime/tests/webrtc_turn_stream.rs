//! TURN over TCP (`turn:…?transport=tcp`) and over TLS (`turns:`) on loopback, through a coturn
//! (Debian's `turnserver`) this test starts with only the listener under test open: both peers
//! use the relay-only policy, so data can only flow if each reached coturn over that stream.
//! Also the failures: a TCP TURN server that refuses the connection and a TLS server whose
//! certificate is not trusted end gathering without a candidate, and the link says so.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{WAIT, connect, exchange, reliable};
use peerlink::webrtc::{
    IceServer, IceTransportPolicy, WebRtcConfig, WebRtcError, WebRtcEvent, WebRtcLink, WebRtcRole,
};
use tokio::time::timeout;

const USER: &str = "peer";
const PASSWORD: &str = "turn-secret";

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "peerlink-turn-{}-{}-{}",
        name,
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "peerlink test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    Pki {
        ca_der: ca_cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// One coturn on 127.0.0.1 with a single client listener: TCP, or TLS with the given
/// certificate. Killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: PathBuf,
}

impl Coturn {
    fn start(tls: Option<&Pki>) -> Coturn {
        let dir = scratch_dir(if tls.is_some() { "tls" } else { "tcp" });
        let log = dir.join("turn.log");
        let port = free_port();
        let mut cmd = Command::new("turnserver");
        cmd.args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--realm=peerlink.test",
            "--no-udp",
            "--no-dtls",
            "--no-cli",
            "--simple-log",
        ])
        .arg(format!("--user={USER}:{PASSWORD}"))
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("--pidfile={}", dir.join("turn.pid").display()));
        match tls {
            Some(pki) => {
                let cert = dir.join("cert.pem");
                let key = dir.join("key.pem");
                std::fs::write(&cert, &pki.cert_pem).expect("write cert");
                std::fs::write(&key, &pki.key_pem).expect("write key");
                // The plain listener on an unused port, closed to clients by --no-tcp: only
                // TLS is reachable.
                cmd.arg(format!("--listening-port={}", free_port()))
                    .arg(format!("--tls-listening-port={port}"))
                    .arg("--no-tcp")
                    .arg(format!("--cert={}", cert.display()))
                    .arg(format!("--pkey={}", key.display()));
            }
            None => {
                cmd.arg(format!("--listening-port={port}"))
                    .arg(format!("--tls-listening-port={}", free_port()))
                    .arg("--no-tls");
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian package coturn) must be installed");
        let turn = Coturn {
            child,
            port,
            log,
            dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(up, "coturn did not listen on {addr}:\n{}", turn.log_text());
        turn
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn relay_config(url: String, turn_tls_roots: Vec<Vec<u8>>) -> WebRtcConfig {
    WebRtcConfig {
        ice_servers: vec![IceServer {
            urls: vec![url],
            username: USER.into(),
            credential: PASSWORD.into(),
        }],
        ice_transport_policy: IceTransportPolicy::Relay,
        turn_tls_roots,
        ..WebRtcConfig::loopback()
    }
}

/// Both peers relay-only through `config`'s server: connect, move data both ways, and check
/// that each side's selected local candidate is a relay reached over `leg`.
async fn relayed_transfer(config: WebRtcConfig, leg: &str, turn: &Coturn) {
    let mut pair = match timeout(WAIT * 2, connect(config, reliable())).await {
        Ok(pair) => pair,
        Err(_) => panic!("no relayed link; coturn log:\n{}", turn.log_text()),
    };
    let (a, b) = (&mut pair.local[0], &mut pair.remote[0]);
    let sizes = [1, 1000, 16 * 1024, 64 * 1024, 256 * 1024];
    exchange(a, b, &sizes).await;
    exchange(b, a, &sizes).await;
    for link in [&pair.offerer, &pair.answerer] {
        let path = link.path().await.expect("path report");
        let local = path.local.expect("local candidate");
        let remote = path.remote.expect("remote candidate");
        assert_eq!(local.candidate_type, "relay", "local {local}");
        assert_eq!(remote.candidate_type, "relay", "remote {remote}");
        // The relayed side is UDP; the leg to the TURN server is the stream.
        assert_eq!(local.protocol, "udp");
        assert_eq!(local.relay_protocol.as_deref(), Some(leg), "local {local}");
        assert!(
            path.bytes_sent > 256 * 1024,
            "{} bytes sent",
            path.bytes_sent
        );
    }
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_link_through_turn_over_tcp() {
    let turn = Coturn::start(None);
    let url = format!("turn:127.0.0.1:{}?transport=tcp", turn.port);
    relayed_transfer(relay_config(url, Vec::new()), "tcp", &turn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_link_through_turn_over_tls() {
    let pki = pki();
    let turn = Coturn::start(Some(&pki));
    let url = format!("turns:127.0.0.1:{}", turn.port);
    relayed_transfer(relay_config(url, vec![pki.ca_der.clone()]), "tls", &turn).await;
}

/// A relay-only offerer whose only TURN server is unusable: gathering must end (not wait out
/// its timeout) without a candidate, and `start` must say that no candidate was gathered.
async fn gathering_fails(config: WebRtcConfig) {
    let config = WebRtcConfig {
        trickle: false,
        gather_timeout: Duration::from_secs(120),
        ..config
    };
    let (link, mut events) = WebRtcLink::new(config, WebRtcRole::Offerer)
        .await
        .expect("link");
    let result = timeout(WAIT * 2, async {
        let start = link.start();
        let complete = async {
            while let Some(event) = events.next().await {
                if matches!(event, WebRtcEvent::GatheringComplete) {
                    return true;
                }
            }
            false
        };
        tokio::join!(start, complete)
    })
    .await
    .expect("start neither failed nor completed gathering");
    assert!(result.1, "gathering never completed");
    assert!(
        matches!(result.0, Err(WebRtcError::GatheringTimeout(_))),
        "{:?}",
        result.0
    );
    link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_tcp_turn_server_fails_gathering() {
    let url = format!("turn:127.0.0.1:{}?transport=tcp", free_port());
    gathering_fails(relay_config(url, Vec::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_tls_turn_server_fails_gathering() {
    let served = pki();
    let trusted = pki();
    let turn = Coturn::start(Some(&served));
    let url = format!("turns:127.0.0.1:{}", turn.port);
    // Trusts another CA than the one that signed coturn's certificate.
    gathering_fails(relay_config(url, vec![trusted.ca_der])).await;
}
