//! Hostile clients over real loopback WebSockets: each bad input gets its documented error
//! code, the server stays healthy, and a bystander pair keeps working.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{Client, Event, identity, metric};
use peerlink_signal_server::protocol::relay_frame;
use peerlink_signal_server::{Admission, Rate, Server, ServerConfig, mint_token};
use serde_json::json;

async fn server(config: ServerConfig) -> Server {
    Server::bind("127.0.0.1:0", config).await.unwrap()
}

/// Two well-behaved clients that must be unaffected by whatever the attacker does.
struct Bystanders {
    a: Client,
    b: Client,
}

impl Bystanders {
    async fn new(server: &Server) -> Self {
        let mut a = Client::authed(&server.ws_url(), &identity(101), "bystander-a").await;
        let b = Client::authed(&server.ws_url(), &identity(102), "bystander-b").await;
        a.join("calm").await;
        Bystanders { a, b }
    }

    async fn still_work(&mut self, server: &Server) {
        let (status, body) = common::http_get(server.local_addr(), "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        self.b
            .send(json!({"type": "signal", "to": "bystander-a", "id": 9, "data": {"n": 1}}))
            .await;
        assert_eq!(self.b.json().await, json!({"type": "ok", "re": 9}));
        let got = self.a.json().await;
        assert_eq!(got["from"], "bystander-b");
        assert_eq!(got["data"], json!({"n": 1}));
    }
}

#[tokio::test]
async fn forged_signature_is_rejected_and_closes() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut c = Client::connect(&server.ws_url()).await;
    // Signed by key 2 but claiming key 1.
    let mut auth = c.auth_json(&identity(2), "mallory", None);
    auth["publicKey"] = json!(identity(1).public_key().to_base64());
    c.send(auth).await;
    c.expect_error("bad_signature").await;
    c.expect_close(4000, "bad_signature").await;
    assert_eq!(
        metric(
            server.local_addr(),
            "peerlink_signal_rejections_total{reason=\"bad_signature\"}"
        )
        .await,
        1
    );
    by.still_work(&server).await;
}

#[tokio::test]
async fn a_signature_from_another_connection_does_not_verify() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let first = Client::connect(&server.ws_url()).await;
    let captured = first.auth_json(&identity(3), "victim", None);
    let mut second = Client::connect(&server.ws_url()).await;
    second.send(captured).await;
    second.expect_error("bad_signature").await;
    by.still_work(&server).await;
}

#[tokio::test]
async fn a_signature_made_for_another_host_is_refused() {
    let server = server(ServerConfig::default()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.host = "evil.example:443".to_owned();
    let auth = c.auth_json(&identity(3), "victim", None);
    c.send(auth).await;
    c.expect_error("host_mismatch").await;
    c.expect_close(4000, "host_mismatch").await;
}

#[tokio::test]
async fn nothing_but_auth_is_accepted_before_authentication() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut c = Client::connect(&server.ws_url()).await;
    for msg in [
        json!({"type": "join", "room": "calm", "id": 1}),
        json!({"type": "signal", "to": "bystander-a", "data": {}, "id": 2}),
        json!({"type": "turn", "id": 3}),
        json!({"type": "ping", "id": 4}),
    ] {
        let id = msg["id"].clone();
        c.send(msg).await;
        let err = c.expect_error("not_authenticated").await;
        assert_eq!(err["re"], id);
    }
    c.send_binary(relay_frame("bystander-a", b"x").to_vec())
        .await;
    c.expect_error("not_authenticated").await;
    // The connection can still authenticate afterwards.
    assert_eq!(c.auth(&identity(4), "late", None).await["type"], "welcome");
    by.still_work(&server).await;
}

#[tokio::test]
async fn a_spoofed_from_is_replaced_by_the_session_identity() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut m = Client::authed(&server.ws_url(), &identity(5), "mallory").await;
    m.send(
        json!({"type": "signal", "to": "bystander-a", "from": "bystander-b",
                  "fromPublicKey": identity(102).public_key().to_base64(),
                  "data": {"from": "bystander-b"}}),
    )
    .await;
    let got = by.a.json().await;
    assert_eq!(got["from"], "mallory");
    assert_eq!(got["fromPublicKey"], identity(5).public_key().to_base64());
    // A relay frame naming someone else as sender is just a payload: the header gets the
    // session id.
    m.send_binary(relay_frame("bystander-a", b"payload").to_vec())
        .await;
    assert_eq!(
        by.a.binary().await,
        relay_frame("mallory", b"payload").to_vec()
    );
    by.still_work(&server).await;
}

#[tokio::test]
async fn invalid_json_unknown_types_and_bad_fields_get_their_codes() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut m = Client::authed(&server.ws_url(), &identity(6), "mallory").await;
    m.send_text("{not json").await;
    m.expect_error("invalid_json").await;
    m.send_text("[1,2,3]").await;
    m.expect_error("invalid_json").await;
    m.send_text(r#"{"type": 5}"#).await;
    m.expect_error("invalid_json").await;
    m.send(json!({"type": "teleport", "id": 11})).await;
    assert_eq!(m.expect_error("unknown_type").await["re"], 11);
    m.send(json!({"type": "join", "id": 12})).await;
    assert_eq!(m.expect_error("invalid_message").await["re"], 12);
    m.send(json!({"type": "join", "room": "", "id": 13})).await;
    m.expect_error("invalid_message").await;
    m.send(json!({"type": "signal", "to": "nobody", "data": 1, "id": 14}))
        .await;
    let err = m.expect_error("target_offline").await;
    assert_eq!(
        (err["re"].clone(), err["to"].clone()),
        (json!(14), json!("nobody"))
    );
    m.send(json!({"type": "leave", "room": "never", "id": 15}))
        .await;
    m.expect_error("not_in_room").await;
    m.send(json!({"type": "turn", "id": 16})).await;
    m.expect_error("turn_unavailable").await;
    m.send(json!({"type": "auth", "id": 17})).await;
    m.expect_error("already_authenticated").await;
    m.send_binary(vec![9, 0, 1, b'a']).await;
    m.expect_error("invalid_frame").await;
    m.send_binary(relay_frame("nobody", b"x").to_vec()).await;
    assert_eq!(m.expect_error("target_offline").await["to"], "nobody");
    // Still usable.
    m.send(json!({"type": "ping", "id": 18})).await;
    assert_eq!(m.json().await, json!({"type": "pong", "re": 18}));
    by.still_work(&server).await;
}

#[tokio::test]
async fn messages_at_the_size_caps_pass_whole_and_bursts_keep_their_order() {
    // Message rates off, so the burst below is not rate limited.
    let config = ServerConfig {
        message_rate: Rate::unlimited(),
        ip_message_rate: Rate::unlimited(),
        ..ServerConfig::default()
    };
    let (max_text, max_payload) = (config.max_text_bytes, config.max_relay_payload);
    let server = server(config).await;
    let mut by = Bystanders::new(&server).await;
    // A signal whose text is exactly the limit: far larger than the read buffer, so it is
    // read over many reads, and relayed with the sender's identity added.
    let head = r#"{"type":"signal","to":"bystander-a","data":""#;
    let pad = max_text - head.len() - 2;
    let big: String = (0..pad)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let text = format!("{head}{big}\"}}");
    assert_eq!(text.len(), max_text);
    by.b.send_text(&text).await;
    let got = by.a.json().await;
    assert_eq!(got["from"], "bystander-b");
    assert_eq!(got["data"].as_str(), Some(big.as_str()));
    // A relay frame with the largest payload.
    let payload: Vec<u8> = (0..max_payload).map(|i| (i * 7 % 251) as u8).collect();
    by.b.send_binary(relay_frame("bystander-a", &payload).to_vec())
        .await;
    assert_eq!(
        by.a.binary().await,
        relay_frame("bystander-b", &payload).to_vec()
    );
    // A burst of signals sent back to back arrives complete and in order (they are written
    // to the socket in batches).
    for n in 0..200 {
        by.b.send(json!({"type": "signal", "to": "bystander-a", "data": {"n": n}}))
            .await;
    }
    for n in 0..200 {
        let got = by.a.json().await;
        assert_eq!(got["data"], json!({"n": n}));
    }
    by.still_work(&server).await;
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut m = Client::authed(&server.ws_url(), &identity(7), "mallory").await;
    let big = "x".repeat(70 << 10);
    m.send(json!({"type": "signal", "to": "bystander-a", "data": big}))
        .await;
    m.expect_error("too_large").await;
    m.send_binary(relay_frame("bystander-a", &vec![0u8; 65 << 10]).to_vec())
        .await;
    m.expect_error("too_large").await;
    // Far beyond the limit the WebSocket layer closes with 1009.
    m.send_binary(vec![1u8; 1 << 20]).await;
    match m.next_event().await {
        Some(Event::Close(Some((code, _)))) => assert_eq!(code, 1009),
        None => {}
        other => panic!("expected a close, got {other:?}"),
    }
    by.still_work(&server).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_as_abuse() {
    let server = server(ServerConfig::default()).await;
    let mut by = Bystanders::new(&server).await;
    let mut m = Client::authed(&server.ws_url(), &identity(8), "mallory").await;
    for i in 0..200u64 {
        m.send(json!({"type": "ping", "id": i})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match m.next_event().await {
            Some(Event::Json(v)) if v["type"] == "pong" => pongs += 1,
            Some(Event::Json(v)) if v["code"] == "rate_limited" => limited += 1,
            Some(Event::Json(v)) if v["code"] == "abuse" => {}
            Some(Event::Close(frame)) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close, Some((4000, "abuse".to_owned())));
    assert!(
        (50..=70).contains(&pongs),
        "burst of 60 plus refill, got {pongs}"
    );
    assert_eq!(limited, 50, "the 51st strike closes");
    by.still_work(&server).await;
}

#[tokio::test]
async fn joining_too_many_rooms_is_refused() {
    let config = ServerConfig {
        max_rooms_per_client: 3,
        ..ServerConfig::default()
    };
    let server = server(config).await;
    let mut by = Bystanders::new(&server).await;
    let mut m = Client::authed(&server.ws_url(), &identity(9), "mallory").await;
    for r in ["r1", "r2", "r3"] {
        m.join(r).await;
    }
    m.join("r2").await;
    m.send(json!({"type": "join", "room": "r4", "id": 40}))
        .await;
    assert_eq!(m.expect_error("room_limit").await["re"], 40);
    m.send(json!({"type": "leave", "room": "r1", "id": 41}))
        .await;
    assert_eq!(m.json().await["type"], "left");
    m.join("r4").await;
    by.still_work(&server).await;
}

#[tokio::test]
async fn a_device_id_stays_with_its_key_and_the_same_key_replaces() {
    let server = server(ServerConfig::default()).await;
    let mut owner = Client::authed(&server.ws_url(), &identity(10), "phone").await;
    let mut thief = Client::connect(&server.ws_url()).await;
    thief.auth(&identity(11), "phone", None).await;
    // `auth` returned the error already; read the close.
    thief.expect_close(4000, "device_id_taken").await;
    let _again = Client::authed(&server.ws_url(), &identity(10), "phone").await;
    owner.expect_error("replaced").await;
    owner.expect_close(4000, "replaced").await;
}

#[tokio::test]
async fn allow_list_and_tokens_admit_only_who_they_name() {
    let allowed: HashSet<_> = [identity(12).public_key()].into_iter().collect();
    let server1 = server(ServerConfig {
        admission: Admission::AllowList(allowed),
        ..ServerConfig::default()
    })
    .await;
    let _ok = Client::authed(&server1.ws_url(), &identity(12), "listed").await;
    let mut no = Client::connect(&server1.ws_url()).await;
    assert_eq!(
        no.auth(&identity(13), "unlisted", None).await["code"],
        "not_admitted"
    );

    let server2 = server(ServerConfig {
        admission: Admission::Token {
            secret: b"gate".to_vec(),
        },
        ..ServerConfig::default()
    })
    .await;
    let far = u64::MAX / 2;
    let token = mint_token(b"gate", &identity(14).public_key(), far);
    let mut yes = Client::connect(&server2.ws_url()).await;
    assert_eq!(
        yes.auth(&identity(14), "t", Some(&token)).await["type"],
        "welcome"
    );
    let mut stolen = Client::connect(&server2.ws_url()).await;
    assert_eq!(
        stolen.auth(&identity(15), "t2", Some(&token)).await["code"],
        "not_admitted"
    );
    let expired = mint_token(b"gate", &identity(16).public_key(), 1);
    let mut old = Client::connect(&server2.ws_url()).await;
    assert_eq!(
        old.auth(&identity(16), "t3", Some(&expired)).await["code"],
        "not_admitted"
    );
    let mut none = Client::connect(&server2.ws_url()).await;
    assert_eq!(
        none.auth(&identity(17), "t4", None).await["code"],
        "not_admitted"
    );
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let server = server(ServerConfig {
        max_connections_per_ip: 3,
        ..ServerConfig::default()
    })
    .await;
    let _a = Client::connect(&server.ws_url()).await;
    let _b = Client::connect(&server.ws_url()).await;
    let _c = Client::connect(&server.ws_url()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["code"], "too_many_connections");
    drop(_a);
    // The slot frees once the server sees the close; retry within a bound.
    let mut admitted = false;
    for _ in 0..100 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        if v["type"] == "challenge" {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted);
}

#[tokio::test]
async fn ip_message_rate_is_shared_by_all_connections_of_an_address() {
    let server = server(ServerConfig {
        message_rate: Rate::unlimited(),
        ip_message_rate: Rate::new(1.0, 10.0),
        ..ServerConfig::default()
    })
    .await;
    let mut a = Client::authed(&server.ws_url(), &identity(18), "ip-a").await;
    let mut b = Client::authed(&server.ws_url(), &identity(19), "ip-b").await;
    // Two auths took 2 of 10 tokens; 8 remain for both connections together.
    for i in 0..4 {
        a.send(json!({"type": "ping", "id": i})).await;
        b.send(json!({"type": "ping", "id": i})).await;
    }
    for _ in 0..4 {
        assert_eq!(a.json().await["type"], "pong");
        assert_eq!(b.json().await["type"], "pong");
    }
    a.send(json!({"type": "ping", "id": 99})).await;
    a.expect_error("rate_limited").await;
}
