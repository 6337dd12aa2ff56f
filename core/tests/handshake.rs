//! The handshake state machine driven by a two-party harness on a virtual clock: every success
//! and failure path, tampering relays, garbage at each step, and random input.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use peerlink_core::handshake::{
    Established, HANDSHAKE_VERSION, Handshake, HandshakeConfig, HandshakeError, HandshakeOutput,
    LinkBinding, RejectReason, Role, TrustLevel,
};
use peerlink_core::identity::Signature;
use peerlink_core::{DeviceInfo, Identity, IdentityError, SignedDeviceInfo};
use proptest::prelude::*;

/// Unix time both sides agree on unless a test skews one clock.
const T_MS: u64 = 1_700_000_000_000;
const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Initiator,
    Responder,
}

/// Rewrites (or drops, by returning `None`) the `index`-th message that `from` sends.
type Tamper = Box<dyn FnMut(Side, usize, Vec<u8>) -> Option<Vec<u8>>>;

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn device_info(id: &Identity, device: &str, timestamp: u64) -> SignedDeviceInfo {
    DeviceInfo::new(id, "user", device, timestamp)
        .sign(id)
        .expect("valid device info")
}

/// Everything a test may vary before the two state machines start.
struct Setup {
    init_id: Identity,
    resp_id: Identity,
    init_info: SignedDeviceInfo,
    resp_info: SignedDeviceInfo,
    binding: LinkBinding,
    init_config: HandshakeConfig,
    resp_config: HandshakeConfig,
    init_trust: Option<TrustLevel>,
    resp_trust: Option<TrustLevel>,
    init_unix_ms: u64,
    resp_unix_ms: u64,
    tamper: Option<Tamper>,
}

impl Setup {
    fn new() -> Self {
        let init_id = identity(1);
        let resp_id = identity(2);
        Self {
            init_info: device_info(&init_id, "initiator-device", T_MS),
            resp_info: device_info(&resp_id, "responder-device", T_MS),
            init_id,
            resp_id,
            binding: LinkBinding::Memory("test-link".into()),
            init_config: HandshakeConfig::default(),
            resp_config: HandshakeConfig::default(),
            init_trust: Some(TrustLevel::KNOWN),
            resp_trust: Some(TrustLevel::TRUSTED),
            init_unix_ms: T_MS,
            resp_unix_ms: T_MS,
            tamper: None,
        }
    }

    fn start(self) -> Pair {
        let now = Instant::now();
        let init = Handshake::initiator(
            &self.init_id,
            self.init_info,
            self.binding,
            self.init_config,
            now,
            self.init_unix_ms,
        )
        .expect("initiator starts");
        let resp = Handshake::responder(
            &self.resp_id,
            self.resp_info,
            self.resp_config,
            now,
            self.resp_unix_ms,
        )
        .expect("responder starts");
        Pair {
            t0: now,
            now,
            init: Party::new(init, self.init_trust, self.init_unix_ms),
            resp: Party::new(resp, self.resp_trust, self.resp_unix_ms),
            to_init: VecDeque::new(),
            to_resp: VecDeque::new(),
            tamper: self.tamper,
        }
    }

    /// Runs the handshake to the end and checks the harness invariants.
    fn run(self) -> Pair {
        let mut pair = self.start();
        pair.drive();
        pair
    }
}

struct Party {
    hs: Handshake,
    trust: Option<TrustLevel>,
    unix_ms: u64,
    asked: Vec<DeviceInfo>,
    sent: Vec<Vec<u8>>,
    established: Option<Box<Established>>,
    failed: Option<HandshakeError>,
    returned_errors: Vec<HandshakeError>,
    outputs_after_end: usize,
}

impl Party {
    fn new(hs: Handshake, trust: Option<TrustLevel>, unix_ms: u64) -> Self {
        Self {
            hs,
            trust,
            unix_ms,
            asked: Vec::new(),
            sent: Vec::new(),
            established: None,
            failed: None,
            returned_errors: Vec::new(),
            outputs_after_end: 0,
        }
    }

    fn ended(&self) -> bool {
        self.established.is_some() || self.failed.is_some()
    }

    fn error(&self) -> &HandshakeError {
        self.failed
            .as_ref()
            .unwrap_or_else(|| panic!("expected a failure, got {:?}", self.established))
    }

    fn established(&self) -> &Established {
        self.established
            .as_deref()
            .unwrap_or_else(|| panic!("expected success, got {:?}", self.failed))
    }

    /// Drains outputs; returns whether anything happened.
    fn drain(
        &mut self,
        side: Side,
        now: Instant,
        outbox: &mut VecDeque<Vec<u8>>,
        tamper: &mut Option<Tamper>,
    ) -> bool {
        let mut progressed = false;
        while let Some(output) = self.hs.poll_output() {
            progressed = true;
            if self.ended() {
                self.outputs_after_end += 1;
                continue;
            }
            match output {
                HandshakeOutput::Transmit(bytes) => {
                    self.sent.push(bytes.clone());
                    let index = self.sent.len() - 1;
                    let delivered = match tamper {
                        Some(f) => f(side, index, bytes),
                        None => Some(bytes),
                    };
                    outbox.extend(delivered);
                }
                HandshakeOutput::TrustRequired(info) => {
                    self.asked.push(info);
                    if let Some(level) = self.trust {
                        self.hs.set_trust_level(level, now);
                    }
                }
                HandshakeOutput::Complete(established) => self.established = Some(established),
                HandshakeOutput::Failed(error) => self.failed = Some(error),
                other => panic!("unknown output {other:?}"),
            }
        }
        progressed
    }

    fn deliver(&mut self, message: Option<Vec<u8>>, now: Instant) -> bool {
        let Some(message) = message else {
            return false;
        };
        // A driver closes the transport once the handshake ended, so nothing more arrives.
        if !self.ended() {
            if let Err(e) = self.hs.handle_input(&message, now, self.unix_ms) {
                self.returned_errors.push(e);
            }
        }
        true
    }
}

struct Pair {
    t0: Instant,
    now: Instant,
    init: Party,
    resp: Party,
    to_init: VecDeque<Vec<u8>>,
    to_resp: VecDeque<Vec<u8>>,
    tamper: Option<Tamper>,
}

impl Pair {
    fn step(&mut self) -> bool {
        let mut progressed = self.init.drain(
            Side::Initiator,
            self.now,
            &mut self.to_resp,
            &mut self.tamper,
        );
        progressed |= self.resp.drain(
            Side::Responder,
            self.now,
            &mut self.to_init,
            &mut self.tamper,
        );
        progressed |= self.resp.deliver(self.to_resp.pop_front(), self.now);
        progressed |= self.init.deliver(self.to_init.pop_front(), self.now);
        progressed
    }

    /// Steps until nothing moves (bounded), then checks the invariants every run must keep.
    fn drive(&mut self) {
        for _ in 0..100 {
            if !self.step() {
                self.check_invariants();
                return;
            }
        }
        panic!("handshake did not settle within 100 steps");
    }

    fn check_invariants(&self) {
        for (name, party) in [("initiator", &self.init), ("responder", &self.resp)] {
            assert_eq!(party.outputs_after_end, 0, "{name}: output after the end");
            assert!(
                !(party.established.is_some() && party.failed.is_some()),
                "{name}: both completed and failed"
            );
            if let Some(returned) = party.returned_errors.first() {
                assert_eq!(
                    Some(returned),
                    party.failed.as_ref(),
                    "{name}: the returned error must also be the Failed output"
                );
            }
            if party.ended() {
                assert!(party.hs.is_finished(), "{name}: finished flag");
                assert_eq!(
                    party.hs.poll_timeout(),
                    None,
                    "{name}: no timer after the end"
                );
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.t0 + by;
    }
}

fn rejected(reason: RejectReason) -> impl Fn(&HandshakeError) -> bool {
    move |e| matches!(e, HandshakeError::RejectedByPeer { reason: r, .. } if *r == reason)
}

fn assert_rejected(party: &Party, reason: RejectReason) {
    assert!(
        rejected(reason)(party.error()),
        "expected RejectedByPeer({reason:?}), got {:?}",
        party.error()
    );
    assert!(party.established.is_none());
}

// ---------------------------------------------------------------------------------------------
// Success

fn assert_success(pair: &Pair, init_info: &SignedDeviceInfo, resp_info: &SignedDeviceInfo) {
    let i = pair.init.established();
    let r = pair.resp.established();
    assert_eq!(i.role, Role::Initiator);
    assert_eq!(r.role, Role::Responder);
    assert_eq!(&i.remote, resp_info, "initiator got the responder's info");
    assert_eq!(&r.remote, init_info, "responder got the initiator's info");
    assert_eq!(i.handshake_hash, r.handshake_hash);
    assert_ne!(i.handshake_hash, [0u8; 32]);
    assert_eq!(
        i.keys.send, r.keys.recv,
        "initiator sends with what responder receives"
    );
    assert_eq!(
        i.keys.recv, r.keys.send,
        "responder sends with what initiator receives"
    );
    assert_ne!(i.keys.send, i.keys.recv, "directions use different keys");
    assert_eq!(pair.init.asked, vec![resp_info.info.clone()]);
    assert_eq!(pair.resp.asked, vec![init_info.info.clone()]);
    assert_eq!(pair.init.sent.len(), 2, "Hello and Finish");
    assert_eq!(pair.resp.sent.len(), 2, "Response and Confirm");
}

#[test]
fn success_with_each_identity_in_each_role() {
    for (a, b) in [(1u8, 2u8), (2, 1)] {
        let mut setup = Setup::new();
        setup.init_id = identity(a);
        setup.resp_id = identity(b);
        setup.init_info = device_info(&setup.init_id, &format!("dev-{a}"), T_MS);
        setup.resp_info = device_info(&setup.resp_id, &format!("dev-{b}"), T_MS);
        let (init_info, resp_info) = (setup.init_info.clone(), setup.resp_info.clone());
        let pair = setup.run();
        assert_success(&pair, &init_info, &resp_info);
        assert_eq!(pair.init.established().trust_level, TrustLevel::KNOWN);
        assert_eq!(pair.resp.established().trust_level, TrustLevel::TRUSTED);
    }
}

#[test]
fn two_runs_give_fresh_keys_and_hashes() {
    let first = Setup::new().run();
    let second = Setup::new().run();
    assert_ne!(
        first.init.established().handshake_hash,
        second.init.established().handshake_hash
    );
    assert_ne!(
        first.init.established().keys.send,
        second.init.established().keys.send
    );
}

#[test]
fn hello_layout_is_version_type_binding_then_ephemeral_key() {
    let mut setup = Setup::new();
    setup.binding = LinkBinding::WebSocketUrl("WS://127.0.0.1:9000/".into());
    let pair = setup.run();
    let hello = &pair.init.sent[0];
    let url = b"ws://127.0.0.1:9000";
    assert_eq!(
        &hello[..5],
        &[HANDSHAKE_VERSION, 0x01, 0x01, 0x00, url.len() as u8]
    );
    assert_eq!(&hello[5..5 + url.len()], url);
    assert_eq!(
        hello.len(),
        5 + url.len() + 32,
        "Noise message 1 is the bare ephemeral key"
    );
    assert_eq!(&pair.resp.sent[0][..2], &[HANDSHAKE_VERSION, 0x02]);
    assert_eq!(&pair.init.sent[1][..2], &[HANDSHAKE_VERSION, 0x03]);
    assert_eq!(
        pair.resp.sent[1].len(),
        2 + 1 + 16,
        "Confirm: header, one byte, tag"
    );
    assert_eq!(&pair.resp.sent[1][..2], &[HANDSHAKE_VERSION, 0x04]);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let pair = Setup::new().run();
    let e = pair.init.established();
    let shown = format!("{e:?} {:?}", pair.init.hs);
    assert!(shown.contains("redacted"));
    for key in [e.keys.send, e.keys.recv] {
        assert!(!shown.contains(&hex::encode(key)));
        assert!(!shown.contains(&format!("{:?}", key)));
    }
}

// ---------------------------------------------------------------------------------------------
// Identity failures

/// Device info naming `owner`'s keys but signed by someone else.
fn forged_info(owner: &Identity, signer: &Identity) -> SignedDeviceInfo {
    let info = DeviceInfo::new(owner, "user", "forged", T_MS);
    let signature: Signature = signer.sign(&info.signing_bytes());
    SignedDeviceInfo { info, signature }
}

#[test]
fn bad_signature_from_initiator_fails_responder() {
    let mut setup = Setup::new();
    setup.init_info = forged_info(&setup.init_id, &identity(9));
    let pair = setup.run();
    assert_eq!(
        pair.resp.error(),
        &HandshakeError::BadSignature(IdentityError::BadSignature)
    );
    assert_rejected(&pair.init, RejectReason::Identity);
    assert!(
        pair.resp.asked.is_empty(),
        "no trust question for an unverified peer"
    );
}

#[test]
fn bad_signature_from_responder_fails_initiator() {
    let mut setup = Setup::new();
    setup.resp_info = forged_info(&setup.resp_id, &identity(9));
    let pair = setup.run();
    assert_eq!(
        pair.init.error(),
        &HandshakeError::BadSignature(IdentityError::BadSignature)
    );
    assert_rejected(&pair.resp, RejectReason::Identity);
    assert!(pair.init.asked.is_empty());
    assert_eq!(
        pair.init.sent.len(),
        2,
        "Hello, then the Reject instead of Finish"
    );
    assert_eq!(&pair.init.sent[1][..3], &[HANDSHAKE_VERSION, 0x0F, 0x03]);
}

#[test]
fn device_info_of_another_identity_is_a_key_mismatch() {
    let other = identity(7);
    // The initiator proves key 1 in Noise but presents the (validly signed) info of key 7.
    let mut setup = Setup::new();
    setup.init_info = device_info(&other, "other", T_MS);
    let pair = setup.run();
    assert_eq!(pair.resp.error(), &HandshakeError::KeyMismatch);
    assert_rejected(&pair.init, RejectReason::Identity);

    let mut setup = Setup::new();
    setup.resp_info = device_info(&other, "other", T_MS);
    let pair = setup.run();
    assert_eq!(pair.init.error(), &HandshakeError::KeyMismatch);
    assert_rejected(&pair.resp, RejectReason::Identity);
}

#[test]
fn initiator_expecting_another_responder_fails() {
    let mut setup = Setup::new();
    setup.init_config.expected_remote = Some(identity(5).public_key());
    let pair = setup.run();
    assert_eq!(
        pair.init.error(),
        &HandshakeError::UnexpectedRemote {
            actual: identity(2).public_key()
        }
    );
    assert_rejected(&pair.resp, RejectReason::Identity);

    let mut setup = Setup::new();
    setup.init_config.expected_remote = Some(identity(2).public_key());
    let pair = setup.run();
    pair.init.established();
}

// ---------------------------------------------------------------------------------------------
// Clock skew

#[test]
fn responder_clock_six_minutes_ahead_is_refused_by_initiator() {
    let mut setup = Setup::new();
    let ahead = T_MS + 6 * MINUTE_MS;
    setup.resp_unix_ms = ahead;
    setup.resp_info = device_info(&setup.resp_id, "responder-device", ahead);
    let pair = setup.run();
    assert_eq!(
        pair.init.error(),
        &HandshakeError::ClockSkew {
            skew_ms: 6 * MINUTE_MS,
            allowed_ms: 5 * MINUTE_MS
        }
    );
    assert_rejected(&pair.resp, RejectReason::ClockSkew);
}

#[test]
fn stale_initiator_info_is_refused_by_responder() {
    let mut setup = Setup::new();
    setup.init_info = device_info(&setup.init_id, "initiator-device", T_MS - 6 * MINUTE_MS);
    let pair = setup.run();
    assert!(matches!(
        pair.resp.error(),
        HandshakeError::ClockSkew { skew_ms, .. } if *skew_ms == 6 * MINUTE_MS
    ));
    assert_rejected(&pair.init, RejectReason::ClockSkew);
}

#[test]
fn four_minutes_of_skew_is_accepted() {
    // Each side's clock and info are 4 minutes apart from the other's: within the 5 allowed.
    let mut setup = Setup::new();
    let ahead = T_MS + 4 * MINUTE_MS;
    setup.resp_unix_ms = ahead;
    setup.resp_info = device_info(&setup.resp_id, "responder-device", ahead);
    let (init_info, resp_info) = (setup.init_info.clone(), setup.resp_info.clone());
    let pair = setup.run();
    assert_success(&pair, &init_info, &resp_info);
}

// ---------------------------------------------------------------------------------------------
// Trust

#[test]
fn initiator_refusing_trust_fails_untrusted_and_responder_is_rejected() {
    let mut setup = Setup::new();
    setup.init_trust = Some(TrustLevel::UNTRUSTED);
    let pair = setup.run();
    assert_eq!(
        pair.init.error(),
        &HandshakeError::Untrusted {
            level: TrustLevel::UNTRUSTED
        }
    );
    assert_rejected(&pair.resp, RejectReason::Untrusted);
    let reject = &pair.init.sent[1];
    assert_eq!(
        reject,
        &[
            &[HANDSHAKE_VERSION, 0x0F, 0x05, 0x00, 11][..],
            b"not trusted"
        ]
        .concat(),
        "the Reject names no trust level"
    );
    assert!(
        pair.resp.asked.is_empty(),
        "responder never saw the initiator's info"
    );
}

#[test]
fn responder_refusing_trust_fails_untrusted_and_initiator_is_rejected() {
    let mut setup = Setup::new();
    setup.resp_trust = Some(TrustLevel::MALICIOUS);
    let pair = setup.run();
    assert_eq!(
        pair.resp.error(),
        &HandshakeError::Untrusted {
            level: TrustLevel::MALICIOUS
        }
    );
    assert_rejected(&pair.init, RejectReason::Untrusted);
}

#[test]
fn trust_level_zero_is_allowed() {
    let mut setup = Setup::new();
    setup.init_trust = Some(TrustLevel::UNKNOWN);
    setup.resp_trust = Some(TrustLevel(0));
    let pair = setup.run();
    assert_eq!(pair.resp.established().trust_level, TrustLevel::UNKNOWN);
}

// ---------------------------------------------------------------------------------------------
// Version, ordering, size

#[test]
fn hello_with_another_version_is_rejected() {
    let mut setup = Setup::new();
    setup.tamper = Some(Box::new(|from, index, mut msg| {
        if from == Side::Initiator && index == 0 {
            msg[0] = 2;
        }
        Some(msg)
    }));
    let pair = setup.run();
    assert_eq!(
        pair.resp.error(),
        &HandshakeError::VersionMismatch { ours: 1, theirs: 2 }
    );
    assert_rejected(&pair.init, RejectReason::Version);
}

#[test]
fn response_with_another_version_fails_initiator() {
    let mut setup = Setup::new();
    setup.tamper = Some(Box::new(|from, index, mut msg| {
        if from == Side::Responder && index == 0 {
            msg[0] = 0;
        }
        Some(msg)
    }));
    let pair = setup.run();
    assert_eq!(
        pair.init.error(),
        &HandshakeError::VersionMismatch { ours: 1, theirs: 0 }
    );
}

#[test]
fn out_of_order_types_are_malformed() {
    // Responder sees a Finish first.
    let mut pair = Setup::new().start();
    let err = pair
        .resp
        .hs
        .handle_input(&[HANDSHAKE_VERSION, 0x03, 1, 2, 3], pair.now, T_MS)
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");

    // Initiator sees a Confirm where the Response belongs.
    let mut pair = Setup::new().start();
    let err = pair
        .init
        .hs
        .handle_input(
            &[&[HANDSHAKE_VERSION, 0x04][..], &[0u8; 17]].concat(),
            pair.now,
            T_MS,
        )
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");

    // Anything arriving while the trust decision is pending.
    let mut setup = Setup::new();
    setup.init_trust = None;
    let mut pair = setup.run();
    assert_eq!(pair.init.asked.len(), 1);
    let hello = pair.init.sent[0].clone();
    let err = pair
        .init
        .hs
        .handle_input(&hello, pair.now, T_MS)
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
}

#[test]
fn oversized_message_is_malformed() {
    let mut pair = Setup::new().start();
    let mut big = vec![0u8; 64 * 1024 + 1];
    big[0] = HANDSHAKE_VERSION;
    big[1] = 0x01;
    let err = pair.resp.hs.handle_input(&big, pair.now, T_MS).unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
}

#[test]
fn input_after_completion_is_malformed_and_produces_nothing() {
    let mut pair = Setup::new().run();
    pair.init.established();
    let confirm = pair.resp.sent[1].clone();
    let err = pair
        .init
        .hs
        .handle_input(&confirm, pair.now, T_MS)
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
    assert!(pair.init.hs.poll_output().is_none());
    pair.init.hs.handle_transport_closed();
    pair.init
        .hs
        .handle_timeout(pair.now + Duration::from_secs(3600));
    pair.init.hs.set_trust_level(TrustLevel::SELF, pair.now);
    assert!(pair.init.hs.poll_output().is_none());
}

// ---------------------------------------------------------------------------------------------
// Time and transport

#[test]
fn no_response_times_out_at_the_deadline() {
    let mut setup = Setup::new();
    setup.tamper = Some(Box::new(|from, _, msg| {
        (from == Side::Initiator).then_some(msg)
    }));
    let mut pair = setup.start();
    pair.drive();
    assert!(!pair.init.ended() && !pair.resp.ended());
    let deadline = pair.t0 + Duration::from_secs(10);
    assert_eq!(pair.init.hs.poll_timeout(), Some(deadline));
    assert_eq!(pair.resp.hs.poll_timeout(), Some(deadline));

    pair.advance(Duration::from_millis(9_999));
    pair.init.hs.handle_timeout(pair.now);
    pair.drive();
    assert!(!pair.init.ended(), "not yet at the deadline");

    pair.advance(Duration::from_secs(10));
    pair.init.hs.handle_timeout(pair.now);
    pair.resp.hs.handle_timeout(pair.now);
    pair.drive();
    assert_eq!(pair.init.error(), &HandshakeError::Timeout);
    assert_eq!(pair.resp.error(), &HandshakeError::Timeout);
    assert_eq!(pair.init.sent.len(), 1, "a timeout sends no Reject");
}

#[test]
fn pending_trust_decision_times_out() {
    let mut setup = Setup::new();
    setup.resp_trust = None;
    setup.resp_config.timeout = Duration::from_secs(3);
    let mut pair = setup.run();
    assert_eq!(pair.resp.asked.len(), 1);
    pair.advance(Duration::from_secs(3));
    pair.resp.hs.handle_timeout(pair.now);
    pair.drive();
    assert_eq!(pair.resp.error(), &HandshakeError::Timeout);
    // A late answer changes nothing.
    pair.resp.hs.set_trust_level(TrustLevel::TRUSTED, pair.now);
    assert!(pair.resp.hs.poll_output().is_none());
}

#[test]
fn message_arriving_after_the_deadline_times_out() {
    let mut pair = Setup::new().start();
    pair.init.drain(
        Side::Initiator,
        pair.now,
        &mut pair.to_resp,
        &mut pair.tamper,
    );
    let hello = pair.to_resp.pop_front().expect("hello");
    let late = pair.t0 + Duration::from_secs(11);
    assert_eq!(
        pair.resp.hs.handle_input(&hello, late, T_MS),
        Err(HandshakeError::Timeout)
    );
}

#[test]
fn transport_closed_fails_without_reject() {
    let mut setup = Setup::new();
    setup.tamper = Some(Box::new(|from, _, msg| {
        (from == Side::Initiator).then_some(msg)
    }));
    let mut pair = setup.run();
    pair.init.hs.handle_transport_closed();
    pair.resp.hs.handle_transport_closed();
    pair.drive();
    assert_eq!(pair.init.error(), &HandshakeError::TransportClosed);
    assert_eq!(pair.resp.error(), &HandshakeError::TransportClosed);
    assert_eq!(pair.init.sent.len(), 1);
    assert_eq!(pair.resp.sent.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Link binding

fn ws(url: &str) -> LinkBinding {
    LinkBinding::WebSocketUrl(url.into())
}

#[test]
fn relay_between_two_addresses_is_caught_by_the_accept_check() {
    let mut setup = Setup::new();
    setup.binding = ws("ws://127.0.0.1:1111");
    setup.resp_config.accepted_bindings = vec![ws("ws://127.0.0.1:2222")];
    let pair = setup.run();
    match pair.resp.error() {
        HandshakeError::BindingNotAccepted(shown) => assert!(shown.contains(":1111"), "{shown}"),
        other => panic!("expected BindingNotAccepted, got {other:?}"),
    }
    assert_rejected(&pair.init, RejectReason::Binding);
    assert_eq!(pair.resp.sent.len(), 1, "only the Reject, no Response");
}

#[test]
fn accepted_binding_matches_after_normalisation() {
    let mut setup = Setup::new();
    setup.binding = ws("ws://127.0.0.1:2222");
    setup.resp_config.accepted_bindings =
        vec![ws("ws://127.0.0.1:1111"), ws("WS://127.0.0.1:2222/")];
    let (init_info, resp_info) = (setup.init_info.clone(), setup.resp_info.clone());
    let pair = setup.run();
    assert_success(&pair, &init_info, &resp_info);

    let mut setup = Setup::new();
    setup.binding = ws("ws://LOCALHOST/");
    setup.resp_config.accepted_bindings = vec![ws("ws://localhost:80")];
    setup.run().init.established();
}

/// Re-encodes a Hello with another binding, keeping the Noise part.
fn rewrite_hello(hello: &[u8], kind: u8, binding: &[u8]) -> Vec<u8> {
    let old_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let noise = &hello[5 + old_len..];
    let mut out = vec![hello[0], hello[1], kind];
    out.extend_from_slice(&(binding.len() as u16).to_be_bytes());
    out.extend_from_slice(binding);
    out.extend_from_slice(noise);
    out
}

#[test]
fn relay_rewriting_the_dialled_url_gives_transcript_mismatch() {
    let mut setup = Setup::new();
    setup.binding = ws("ws://127.0.0.1:1111");
    setup.resp_config.accepted_bindings = vec![ws("ws://127.0.0.1:2222")];
    setup.tamper = Some(Box::new(|from, index, msg| {
        Some(if from == Side::Initiator && index == 0 {
            rewrite_hello(&msg, 0x01, b"ws://127.0.0.1:2222")
        } else {
            msg
        })
    }));
    let pair = setup.run();
    assert_eq!(pair.init.error(), &HandshakeError::TranscriptMismatch);
    assert_rejected(&pair.resp, RejectReason::Other);
    assert!(
        pair.init.asked.is_empty(),
        "nothing unverified reaches the trust policy"
    );
}

const FP_A: &str = "sha-256 AA:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
const FP_B: &str = "sha-256 BB:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

fn webrtc(offerer: &str, answerer: &str) -> LinkBinding {
    LinkBinding::WebRtcFingerprints {
        offerer: offerer.into(),
        answerer: answerer.into(),
    }
}

#[test]
fn webrtc_binding_with_same_fingerprints_succeeds_despite_case() {
    let mut setup = Setup::new();
    setup.binding = webrtc(FP_A, FP_B);
    setup.resp_config.local_binding = Some(webrtc(&FP_A.to_lowercase(), &FP_B.to_uppercase()));
    setup.run().init.established();
}

#[test]
fn webrtc_swapped_fingerprints_give_transcript_mismatch() {
    let mut setup = Setup::new();
    setup.binding = webrtc(FP_A, FP_B);
    setup.resp_config.local_binding = Some(webrtc(FP_B, FP_A));
    let pair = setup.run();
    assert_eq!(pair.init.error(), &HandshakeError::TranscriptMismatch);
    assert_rejected(&pair.resp, RejectReason::Other);
}

#[test]
fn responder_uses_its_local_webrtc_binding_not_the_hello_copy() {
    // A relay rewriting the Hello's copy cannot steer the responder: it uses its own view.
    let mut setup = Setup::new();
    setup.binding = webrtc(FP_A, FP_B);
    setup.resp_config.local_binding = Some(webrtc(FP_A, FP_B));
    setup.tamper = Some(Box::new(|from, index, msg| {
        Some(if from == Side::Initiator && index == 0 {
            rewrite_hello(&msg, 0x02, b"sha-256 00\0sha-256 11")
        } else {
            msg
        })
    }));
    setup.run().resp.established();
}

// ---------------------------------------------------------------------------------------------
// Garbage at every step

/// Message `index` of `from` in a successful run, in order: I0 Hello, R0 Response,
/// I1 Finish, R1 Confirm.
const STEPS: [(Side, usize, &str); 4] = [
    (Side::Initiator, 0, "Hello"),
    (Side::Responder, 0, "Response"),
    (Side::Initiator, 1, "Finish"),
    (Side::Responder, 1, "Confirm"),
];

fn run_with_replacement(
    from: Side,
    index: usize,
    f: impl Fn(Vec<u8>) -> Vec<u8> + 'static,
) -> Pair {
    let mut setup = Setup::new();
    setup.binding = ws("ws://127.0.0.1:4444");
    setup.tamper = Some(Box::new(move |side, i, msg| {
        Some(if side == from && i == index {
            f(msg)
        } else {
            msg
        })
    }));
    setup.run()
}

fn receiver(pair: &Pair, from: Side) -> &Party {
    match from {
        Side::Initiator => &pair.resp,
        Side::Responder => &pair.init,
    }
}

fn is_garbage_error(e: &HandshakeError) -> bool {
    matches!(
        e,
        HandshakeError::Malformed(_) | HandshakeError::TranscriptMismatch
    )
}

/// The altered message must end the handshake with a garbage error at its receiver, or
/// (Hello only: its binding and key are unauthenticated) at the initiator one step later.
fn assert_garbage_caught(pair: &Pair, from: Side, what: &str) {
    let rx = receiver(pair, from);
    let caught_at_receiver = rx.failed.as_ref().is_some_and(is_garbage_error);
    let caught_later =
        from == Side::Initiator && pair.init.failed.as_ref().is_some_and(is_garbage_error);
    assert!(
        caught_at_receiver || caught_later,
        "{what}: init {:?} / resp {:?}",
        pair.init.failed,
        pair.resp.failed
    );
    assert!(
        pair.init.established.is_none(),
        "{what}: initiator completed"
    );
    if from == Side::Initiator {
        assert!(
            pair.resp.established.is_none(),
            "{what}: responder completed"
        );
    }
}

#[test]
fn truncated_messages_fail_cleanly_at_every_step() {
    for (from, index, name) in STEPS {
        let reference = run_with_replacement(from, index, |m| m);
        let len = match from {
            Side::Initiator => reference.init.sent[index].len(),
            Side::Responder => reference.resp.sent[index].len(),
        };
        let mut cuts: Vec<usize> = vec![0, 1, 2, 3, 4, 5, len / 2, len.saturating_sub(17), len - 1];
        cuts.retain(|&c| c < len);
        for cut in cuts {
            let pair = run_with_replacement(from, index, move |mut m| {
                m.truncate(cut);
                m
            });
            assert_garbage_caught(&pair, from, &format!("{name} cut to {cut}"));
        }
    }
}

#[test]
fn flipped_bytes_fail_cleanly_at_every_step() {
    for (from, index, name) in STEPS {
        let reference = run_with_replacement(from, index, |m| m);
        let len = match from {
            Side::Initiator => reference.init.sent[index].len(),
            Side::Responder => reference.resp.sent[index].len(),
        };
        // Every byte of the short messages, a stride through the long ones, always the tail.
        let stride = if len > 100 { 7 } else { 1 };
        let positions: Vec<usize> = (2..len)
            .step_by(stride)
            .chain(len.saturating_sub(3)..len)
            .collect();
        for pos in positions {
            for mask in [0x01u8, 0x80] {
                let pair = run_with_replacement(from, index, move |mut m| {
                    m[pos] ^= mask;
                    m
                });
                assert_garbage_caught(&pair, from, &format!("{name} byte {pos} ^ {mask:#04x}"));
            }
        }
        // The type byte: any other type is out of order.
        let pair = run_with_replacement(from, index, |mut m| {
            m[1] = 0x07;
            m
        });
        assert!(
            matches!(receiver(&pair, from).error(), HandshakeError::Malformed(_)),
            "{name} with unknown type"
        );
    }
}

#[test]
fn garbage_reject_is_malformed() {
    let mut setup = Setup::new();
    setup.tamper = Some(Box::new(|from, _, msg| {
        Some(if from == Side::Responder {
            vec![HANDSHAKE_VERSION, 0x0F, 0x05, 0x00, 0xFF, b'x']
        } else {
            msg
        })
    }));
    let pair = setup.run();
    assert!(matches!(pair.init.error(), HandshakeError::Malformed(_)));
}

// ---------------------------------------------------------------------------------------------
// Random input

fn fresh_responder(now: Instant) -> Handshake {
    let id = identity(2);
    Handshake::responder(
        &id,
        device_info(&id, "r", T_MS),
        HandshakeConfig::default(),
        now,
        T_MS,
    )
    .expect("responder")
}

fn initiator_awaiting_response(now: Instant) -> Handshake {
    let id = identity(1);
    let mut hs = Handshake::initiator(
        &id,
        device_info(&id, "i", T_MS),
        LinkBinding::Memory("fuzz".into()),
        HandshakeConfig::default(),
        now,
        T_MS,
    )
    .expect("initiator");
    assert!(matches!(
        hs.poll_output(),
        Some(HandshakeOutput::Transmit(_))
    ));
    assert!(hs.poll_output().is_none());
    hs
}

/// Feeds `bytes`; an error must be returned and reported as the final `Failed` output.
fn assert_typed_outcome(hs: &mut Handshake, bytes: &[u8], now: Instant) {
    let result = hs.handle_input(bytes, now, T_MS);
    let outputs: Vec<HandshakeOutput> = std::iter::from_fn(|| hs.poll_output()).collect();
    match result {
        Err(e) => {
            match outputs.last() {
                Some(HandshakeOutput::Failed(reported)) => assert_eq!(reported, &e),
                other => panic!("error {e:?} not reported, last output {other:?}"),
            }
            assert!(hs.is_finished());
        }
        Ok(()) => {
            // Only a well-formed Hello can be accepted; it must be answered.
            assert!(matches!(
                outputs.first(),
                Some(HandshakeOutput::Transmit(_))
            ));
            assert!(!hs.is_finished());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_a_responder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let now = Instant::now();
        assert_typed_outcome(&mut fresh_responder(now), &bytes, now);
    }

    #[test]
    fn random_hello_bodies_never_panic_a_responder(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let now = Instant::now();
        let mut hello = vec![HANDSHAKE_VERSION, 0x01];
        hello.extend_from_slice(&body);
        assert_typed_outcome(&mut fresh_responder(now), &hello, now);
    }

    #[test]
    fn random_bytes_never_panic_an_initiator(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let now = Instant::now();
        let mut hs = initiator_awaiting_response(now);
        assert_typed_outcome(&mut hs, &bytes, now);
        prop_assert!(hs.is_finished());
    }

    #[test]
    fn random_response_bodies_fail_an_initiator(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let now = Instant::now();
        let mut hs = initiator_awaiting_response(now);
        let mut msg = vec![HANDSHAKE_VERSION, 0x02];
        msg.extend_from_slice(&body);
        let err = hs.handle_input(&msg, now, T_MS).unwrap_err();
        prop_assert!(is_garbage_error(&err), "{err:?}");
    }
}
