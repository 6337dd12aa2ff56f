//! Device messages: signing, verification against relay edits, ttl bounds, routing.

use std::time::{Duration, Instant};

use peerlink_core::Identity;
use peerlink_core::device_message::{
    DeliveryStatus, DeviceMessage, DeviceMessageError, RouteDecision, Router, RouterConfig,
};

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

fn message(to: &str, ttl: u8) -> DeviceMessage {
    DeviceMessage::new_signed(
        &identity(1),
        "m1",
        "alice",
        to,
        "g1",
        ttl,
        b"hello".to_vec(),
    )
    .expect("valid message")
}

#[test]
fn a_signed_message_verifies_and_survives_the_wire() {
    let m = message("carol", 5);
    m.verify(Some(&identity(1).public_key())).expect("verifies");
    let back = DeviceMessage::from_bytes(&m.to_bytes()).expect("decodes");
    assert_eq!(back, m);
    back.verify(None).expect("still verifies");
}

#[test]
fn relays_may_decrement_ttl_and_append_hops() {
    let m = message("carol", 5).forwarded_by("bob").forwarded_by("dave");
    assert_eq!(m.ttl, 3);
    assert_eq!(m.hops, vec!["bob".to_owned(), "dave".to_owned()]);
    m.verify(Some(&identity(1).public_key()))
        .expect("relayed copy verifies");
}

#[test]
fn a_relay_that_edits_a_signed_field_fails_verification() {
    let base = message("carol", 5).forwarded_by("bob");
    type Edit = Box<dyn Fn(&mut DeviceMessage)>;
    let edits: Vec<Edit> = vec![
        Box::new(|m| m.payload = b"evil".to_vec()),
        Box::new(|m| m.to_device_id = "mallory".into()),
        Box::new(|m| m.data_context_id = "g2".into()),
        Box::new(|m| m.device_message_id = "m2".into()),
        Box::new(|m| m.from_device_id = "eve".into()),
        Box::new(|m| m.max_ttl = 9),
    ];
    for edit in edits {
        let mut m = base.clone();
        edit(&mut m);
        assert!(m.verify(None).is_err(), "edited message verified: {m:?}");
    }
}

#[test]
fn ttl_cannot_be_raised_past_the_signed_bound() {
    let mut m = message("carol", 5).forwarded_by("bob");
    m.ttl = 5; // one hop taken, so at most 4 remain
    assert!(matches!(
        m.verify(None),
        Err(DeviceMessageError::TtlOutOfBounds { .. })
    ));
    let mut m = message("carol", 5);
    m.ttl = 6;
    assert!(matches!(
        m.verify(None),
        Err(DeviceMessageError::TtlOutOfBounds { .. })
    ));
}

#[test]
fn a_message_signed_by_another_key_is_refused() {
    let forged = DeviceMessage::new_signed(&identity(9), "m1", "alice", "carol", "g1", 5, vec![])
        .expect("valid");
    assert_eq!(
        forged.verify(Some(&identity(1).public_key())),
        Err(DeviceMessageError::WrongSender)
    );
}

#[test]
fn garbage_bytes_are_a_typed_error() {
    assert!(DeviceMessage::from_bytes(&[0xc1, 0x00, 0xff]).is_err());
}

fn router(me: &str) -> Router {
    Router::new(me, RouterConfig::default())
}

#[test]
fn routes_directly_to_a_neighbour() {
    let mut r = router("bob");
    r.set_neighbour("carol", ["g1".to_owned()]);
    r.set_neighbour("dave", ["g1".to_owned()]);
    let m = message("carol", 5);
    assert_eq!(
        r.route(&m, Some("alice"), Instant::now()),
        RouteDecision::Forward {
            to: vec!["carol".to_owned()]
        }
    );
}

#[test]
fn routes_through_the_neighbour_that_reaches_the_target() {
    let mut r = router("bob");
    for n in ["alice", "dave", "erin"] {
        r.set_neighbour(n, ["g1".to_owned()]);
    }
    r.set_reach("erin", ["carol".to_owned()]);
    r.set_reach("dave", ["frank".to_owned()]);
    let m = message("carol", 5);
    assert_eq!(
        r.route(&m, Some("alice"), Instant::now()),
        RouteDecision::Forward {
            to: vec!["erin".to_owned()]
        }
    );
}

#[test]
fn unknown_targets_go_to_the_few_neighbours_with_the_most_new_ground_not_everyone() {
    let config = RouterConfig {
        fanout: 2,
        ..RouterConfig::default()
    };
    let mut r = Router::new("bob", config);
    for n in ["alice", "n1", "n2", "n3", "n4"] {
        r.set_neighbour(n, ["g1".to_owned()]);
    }
    r.set_reach("n1", ["x1".to_owned()]);
    r.set_reach("n2", ["x2".to_owned(), "x3".to_owned(), "x4".to_owned()]);
    r.set_reach("n3", ["x5".to_owned(), "x6".to_owned()]);
    // n4 only reaches devices bob already links to: nothing new.
    r.set_reach("n4", ["n1".to_owned(), "n2".to_owned()]);
    let m = message("zed", 5);
    assert_eq!(
        r.route(&m, Some("alice"), Instant::now()),
        RouteDecision::Forward {
            to: vec!["n2".to_owned(), "n3".to_owned()]
        }
    );
}

#[test]
fn duplicates_are_suppressed_until_the_window_passes() {
    let mut r = router("carol");
    let m = message("carol", 5);
    let t0 = Instant::now();
    assert!(matches!(
        r.route(&m, Some("bob"), t0),
        RouteDecision::Deliver { .. }
    ));
    assert_eq!(
        r.route(&m, Some("dave"), t0 + Duration::from_secs(1)),
        RouteDecision::Answer(DeliveryStatus::Rejected)
    );
    assert!(matches!(
        r.route(&m, Some("dave"), t0 + Duration::from_secs(600)),
        RouteDecision::Deliver { .. }
    ));
}

#[test]
fn ttl_zero_stops_at_a_relay_and_no_route_is_404() {
    let mut r = router("bob");
    r.set_neighbour("carol", ["g1".to_owned()]);
    let mut m = message("zed", 1).forwarded_by("x");
    assert_eq!(m.ttl, 0);
    assert_eq!(
        r.route(&m, Some("x"), Instant::now()),
        RouteDecision::Answer(DeliveryStatus::TtlExpired)
    );
    m = message("zed", 5);
    let mut lonely = router("bob");
    lonely.set_neighbour("alice", ["g1".to_owned()]);
    assert_eq!(
        lonely.route(&m, Some("alice"), Instant::now()),
        RouteDecision::Answer(DeliveryStatus::NotFound)
    );
    assert_eq!(DeliveryStatus::TtlExpired.code(), "TTL0");
    assert_eq!(DeliveryStatus::NotFound.code(), "404");
    assert_eq!(DeliveryStatus::Unavailable.code(), "503");
    assert_eq!(DeliveryStatus::Delivered.code(), "200");
}

#[test]
fn a_broadcast_is_delivered_and_forwarded_within_its_group_only() {
    let mut r = router("bob");
    r.set_neighbour("alice", ["g1".to_owned()]);
    r.set_neighbour("carol", ["g1".to_owned()]);
    r.set_neighbour("dave", ["g2".to_owned()]);
    let m = message("", 5);
    assert!(m.is_broadcast());
    assert_eq!(
        r.route(&m, Some("alice"), Instant::now()),
        RouteDecision::Deliver {
            forward: vec!["carol".to_owned()]
        }
    );
}
