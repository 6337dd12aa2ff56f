//! The lobby page in headless Chromium (Debian package `chromium`), driven over the DevTools
//! protocol: two pages authenticate with WebCrypto Ed25519 keys, see each other, connect over
//! WebRTC and chat on the data channel. Skipped loudly when `chromium` is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peerlink_signal_server::{Server, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Browser {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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

async fn launch() -> Option<Browser> {
    let Some(binary) = chromium() else {
        eprintln!("\n*** SKIPPED: chromium not found (Debian package `chromium`) ***\n");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("peerlink-chromium-{}", std::process::id()));
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
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The guard kills and reaps the process on every path, including the panic below.
    let mut browser = Browser {
        child,
        dir: dir.clone(),
        port: 0,
    };
    let port_file = dir.join("DevToolsActivePort");
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok())
        {
            browser.port = port;
            return Some(browser);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chromium did not start its DevTools endpoint");
}

/// Opens a tab at `url` and returns its DevTools WebSocket URL.
async fn open_page(browser: &Browser, url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", browser.port))
        .await
        .unwrap();
    // DevTools cuts its query at the first '&': escape them.
    let url = url.replace('&', "%26");
    let req = format!(
        "PUT /json/new?{url} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        browser.port
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // DevTools keeps the connection open: read until the body announced by Content-Length.
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

/// Evaluates `expr` in the page and returns its value.
async fn evaluate(page_ws: &str, expr: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), evaluate_once(page_ws, expr))
        .await
        .expect("DevTools evaluated within 10 s")
}

async fn evaluate_once(page_ws: &str, expr: &str) -> Value {
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
}

/// Polls the page's chat log until it contains `needle` (bounded).
async fn wait_for_log(page_ws: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_meet_in_the_lobby_and_chat_over_webrtc() {
    let Some(browser) = launch().await else {
        return;
    };
    let server = Server::bind("127.0.0.1:0", ServerConfig::default())
        .await
        .unwrap();
    let base = server.http_url();
    let echo = open_page(&browser, &format!("{base}/?room=chat-test&user=echo&echo")).await;
    wait_for_log(&echo, "joined room chat-test").await;
    let caller = open_page(
        &browser,
        &format!("{base}/?room=chat-test&user=caller&say=hello-lobby"),
    )
    .await;

    let caller_log = wait_for_log(&caller, "echo: hello-lobby").await;
    assert!(caller_log.contains("chat open with"), "{caller_log}");
    let echo_log = wait_for_log(&echo, ": hello-lobby").await;
    assert!(echo_log.contains("chat open with"), "{echo_log}");
    // Both pages authenticated with their own keys and were listed to each other.
    let members = evaluate(&caller, "document.getElementById('members').innerText").await;
    assert!(
        members.as_str().unwrap_or_default().contains("echo"),
        "{members}"
    );
    assert_eq!(server.metrics().authenticated_open(), 2);
}
