//! The browser lobby page and a native `peerlink connect --chat` peer in the same room: the
//! page lists the native peer, calls it over WebRTC (signals through the server) and they
//! exchange chat messages both ways. Headless Chromium (Debian package `chromium`) driven over
//! the DevTools protocol; skipped loudly when it is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peerlink_signal_server::{Server, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Kills and reaps a child process on every path, including panics.
struct Guard(Child, Option<std::path::PathBuf>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| path)
}

/// Starts headless Chromium; returns the guard and its DevTools port.
async fn launch(binary: &str) -> (Guard, u16) {
    let dir = std::env::temp_dir().join(format!("peerlink-native-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            // The native peer binds 127.0.0.1 only: let the page use loopback candidates and
            // show its real addresses instead of mDNS names the native side cannot resolve.
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child, Some(dir.clone()));
    let port_file = dir.join("DevToolsActivePort");
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok())
        {
            return (guard, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chromium did not start its DevTools endpoint");
}

/// Opens a tab at `url` and returns its DevTools WebSocket URL.
async fn open_page(port: u16, url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let url = url.replace('&', "%26");
    let req = format!(
        "PUT /json/new?{url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        // Bounded by the timeout around it.
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "DevTools closed before answering");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(usize::MAX);
                if body.len() >= len {
                    return body.to_owned();
                }
            }
        }
    })
    .await
    .expect("DevTools answered within 10 s");
    let v: Value = serde_json::from_str(body.trim()).unwrap();
    v["webSocketDebuggerUrl"].as_str().unwrap().to_owned()
}

async fn evaluate(page_ws: &str, expr: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut ws, _) = tokio_tungstenite::connect_async(page_ws).await.unwrap();
        let call = json!({"id": 1, "method": "Runtime.evaluate",
                          "params": {"expression": expr, "returnByValue": true}});
        ws.send(Message::Text(call.to_string().into()))
            .await
            .unwrap();
        // Bounded by the DevTools reply; other events are skipped.
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == 1 {
                    return v["result"]["result"]["value"].clone();
                }
            }
        }
        panic!("no DevTools reply");
    })
    .await
    .expect("DevTools evaluated within 10 s")
}

async fn wait_for_log(page_ws: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = evaluate(page_ws, "document.getElementById('log').innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("log never showed {needle:?}; it shows:\n{last}");
}

/// Waits for a line of the native peer's output containing `needle`.
async fn wait_for_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) {
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        // Bounded by the timeout around it and by the process's output.
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "native peer never printed {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_page_and_native_chat_peer_exchange_messages() {
    let Some(binary) = chromium() else {
        eprintln!("\n*** SKIPPED: chromium not found (Debian package `chromium`) ***\n");
        return;
    };
    let server = Server::bind("127.0.0.1:0", ServerConfig::default())
        .await
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_peerlink"))
        .args([
            "connect",
            "--server",
            &server.ws_url(),
            "--room",
            "native-chat",
        ])
        .args([
            "--chat",
            "--echo",
            "--loopback",
            "--device-id",
            "native-peer",
        ])
        .args(["--exit-after", "90"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut native = Guard(child, None);
    let stdout = native.0.stdout.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Ends when the process exits (its stdout closes).
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("native: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for_line(&mut lines, "members native-chat").await;

    let (_browser, port) = launch(&binary).await;
    let base = server.http_url();
    let page = open_page(
        port,
        &format!("{base}/?room=native-chat&user=browser&say=hello-native"),
    )
    .await;
    // The page lists the native peer, calls it, sends its message; the native peer prints it
    // and answers over the same channel.
    let log = wait_for_log(&page, "echo: hello-native").await;
    assert!(log.contains("chat open with native-peer"), "{log}");
    wait_for_line(&mut lines, "chat open").await;
    wait_for_line(&mut lines, ": hello-native").await;
    let members = evaluate(&page, "document.getElementById('members').innerText").await;
    assert!(
        members.as_str().unwrap_or_default().contains("native-peer"),
        "{members}"
    );
}
