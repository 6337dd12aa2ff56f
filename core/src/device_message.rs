//! Device messages (`sendDeviceMessage`): signed messages that travel from device to device
//! over already-verified connections, relayed hop by hop, with no server involved.
//!
//! # What is signed
//!
//! The sender signs [`DEVICE_MESSAGE_LABEL`] followed by a MessagePack array
//! `[1, deviceMessageId, fromDeviceId, fromPublicKey(bin 32), toDeviceId, dataContextId,
//! maxTtl, payload(bin)]`. Two fields are left out on purpose because relays must change them:
//!
//! - `ttl`: every relay decrements it. It is bounded by the signed `maxTtl` (a relay can never
//!   raise it above what the sender allowed) and by `maxTtl - hops.len()`, so a relay that
//!   resets it while keeping the hop list is caught. A relay that also strips hops gains
//!   nothing beyond `maxTtl` extra hops, and duplicate suppression by `deviceMessageId`
//!   stops loops.
//! - `hops`: every relay appends its device id. It is a routing hint and a diagnostic, never
//!   a proof of anything.
//!
//! Everything else is covered by the signature: a relay that edits the payload, the target,
//! the context or the id makes verification fail.
//!
//! # Who the sender is
//!
//! The message carries the sender's public key. The signature proves the holder of that key
//! wrote the message; whether the key belongs to `fromDeviceId` is a question for the caller,
//! who passes the key it knows for that device (from a verified connection or a signed device
//! info) to [`DeviceMessage::verify`]. Without a known key the message is only
//! self-consistent.
//!
//! # Routing
//!
//! [`Router`] decides what to do with each message, in this order: drop duplicates; deliver
//! if addressed here (or broadcast); refuse when `ttl` is 0; send straight to the target when
//! it is a neighbour; send through a neighbour known (from its network info, devices up to
//! two hops away) to reach the target; otherwise forward to the few neighbours that reach the
//! most devices this device does not already know. It never floods every neighbour.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, IdentityError, PublicKey, Signature};

/// Domain-separation label of device-message signatures.
pub const DEVICE_MESSAGE_LABEL: &[u8] = b"peerlink/device-message/v1\0";
/// Default hop budget (Peers uses 5 in its examples).
pub const DEFAULT_TTL: u8 = 5;
/// Largest hop budget a message may ask for.
pub const MAX_TTL: u8 = 16;
/// Longest accepted id (message, device or context), in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Largest accepted payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;

/// Why a device message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceMessageError {
    /// The signature does not verify (the message was altered or forged).
    #[error("device message signature does not verify")]
    BadSignature,
    /// The message was signed by another key than the one known for its sender.
    #[error("device message signed by a key other than the sender's")]
    WrongSender,
    /// `ttl` is above the signed `maxTtl`, or more hops were taken than `maxTtl` allows.
    #[error("ttl {ttl} with {hops} hops breaks the signed maxTtl {max_ttl}")]
    TtlOutOfBounds {
        /// The claimed remaining ttl.
        ttl: u8,
        /// Hops recorded.
        hops: usize,
        /// The signed bound.
        max_ttl: u8,
    },
    /// A field breaks a documented limit.
    #[error("invalid device message field {field}: {reason}")]
    InvalidField {
        /// Field name as on the wire (camelCase).
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl From<IdentityError> for DeviceMessageError {
    fn from(_: IdentityError) -> Self {
        Self::BadSignature
    }
}

/// A signed message from one device to another (or to a group when `toDeviceId` is empty).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMessage {
    /// Unique id chosen by the sender (used for duplicate suppression).
    pub device_message_id: String,
    /// The sender's device id.
    pub from_device_id: String,
    /// The sender's Ed25519 key (signed).
    pub from_public_key: PublicKey,
    /// The target device id; empty means every device of the `dataContextId` group.
    pub to_device_id: String,
    /// The group (data context) the message belongs to.
    pub data_context_id: String,
    /// Hops left; decremented by each relay. Not signed, bounded by `maxTtl`.
    pub ttl: u8,
    /// The hop budget the sender allowed (signed).
    pub max_ttl: u8,
    /// Application bytes (MessagePack by convention).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Signature over [`DeviceMessage::signing_bytes`].
    pub signature: Signature,
    /// Device ids of the relays it passed, in order. Not signed.
    pub hops: Vec<String>,
}

impl std::fmt::Debug for DeviceMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMessage")
            .field("id", &self.device_message_id)
            .field("from", &self.from_device_id)
            .field("to", &self.to_device_id)
            .field("context", &self.data_context_id)
            .field("ttl", &self.ttl)
            .field("max_ttl", &self.max_ttl)
            .field("payload_len", &self.payload.len())
            .field("hops", &self.hops)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SigningForm<'a>(
    u8,
    &'a str,
    &'a str,
    #[serde(with = "serde_bytes")] &'a [u8; 32],
    &'a str,
    &'a str,
    u8,
    #[serde(with = "serde_bytes")] &'a [u8],
);

fn check_id(
    field: &'static str,
    value: &str,
    may_be_empty: bool,
) -> Result<(), DeviceMessageError> {
    if value.len() > MAX_ID_BYTES {
        return Err(DeviceMessageError::InvalidField {
            field,
            reason: "too long",
        });
    }
    if value.is_empty() && !may_be_empty {
        return Err(DeviceMessageError::InvalidField {
            field,
            reason: "empty",
        });
    }
    Ok(())
}

impl DeviceMessage {
    /// Builds and signs a message from `identity` (device `from`) with `ttl` hops.
    #[allow(clippy::too_many_arguments)]
    pub fn new_signed(
        identity: &Identity,
        device_message_id: impl Into<String>,
        from_device_id: impl Into<String>,
        to_device_id: impl Into<String>,
        data_context_id: impl Into<String>,
        ttl: u8,
        payload: Vec<u8>,
    ) -> Result<Self, DeviceMessageError> {
        let mut message = DeviceMessage {
            device_message_id: device_message_id.into(),
            from_device_id: from_device_id.into(),
            from_public_key: identity.public_key(),
            to_device_id: to_device_id.into(),
            data_context_id: data_context_id.into(),
            ttl,
            max_ttl: ttl,
            payload,
            signature: Signature::from_bytes([0; 64]),
            hops: Vec::new(),
        };
        message.check_fields()?;
        message.signature = identity.sign(&message.signing_bytes());
        Ok(message)
    }

    fn check_fields(&self) -> Result<(), DeviceMessageError> {
        check_id("deviceMessageId", &self.device_message_id, false)?;
        check_id("fromDeviceId", &self.from_device_id, false)?;
        check_id("toDeviceId", &self.to_device_id, true)?;
        check_id("dataContextId", &self.data_context_id, true)?;
        if self.max_ttl > MAX_TTL {
            return Err(DeviceMessageError::InvalidField {
                field: "maxTtl",
                reason: "above the largest hop budget",
            });
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DeviceMessageError::InvalidField {
                field: "payload",
                reason: "too large",
            });
        }
        if self.hops.len() > usize::from(MAX_TTL) {
            return Err(DeviceMessageError::InvalidField {
                field: "hops",
                reason: "too many",
            });
        }
        for hop in &self.hops {
            check_id("hops", hop, false)?;
        }
        Ok(())
    }

    /// The exact bytes that are signed (see the module docs).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let form = SigningForm(
            1,
            &self.device_message_id,
            &self.from_device_id,
            self.from_public_key.as_bytes(),
            &self.to_device_id,
            &self.data_context_id,
            self.max_ttl,
            &self.payload,
        );
        let mut out = DEVICE_MESSAGE_LABEL.to_vec();
        // Serialising strings, bytes and integers into a Vec cannot fail.
        out.extend_from_slice(&rmp_serde::to_vec(&form).unwrap_or_default());
        out
    }

    /// Checks limits, the ttl bound and the signature. `expected_sender` is the key known for
    /// `fromDeviceId`, when known; it must match the signing key.
    pub fn verify(&self, expected_sender: Option<&PublicKey>) -> Result<(), DeviceMessageError> {
        self.check_fields()?;
        let bound = usize::from(self.max_ttl).saturating_sub(self.hops.len());
        if self.ttl > self.max_ttl || usize::from(self.ttl) > bound {
            return Err(DeviceMessageError::TtlOutOfBounds {
                ttl: self.ttl,
                hops: self.hops.len(),
                max_ttl: self.max_ttl,
            });
        }
        if let Some(key) = expected_sender {
            if key != &self.from_public_key {
                return Err(DeviceMessageError::WrongSender);
            }
        }
        self.from_public_key
            .verify(&self.signing_bytes(), &self.signature)?;
        Ok(())
    }

    /// Whether this is a group broadcast (empty `toDeviceId`).
    pub fn is_broadcast(&self) -> bool {
        self.to_device_id.is_empty()
    }

    /// The copy a relay sends on: `ttl` one lower and `relay` appended to `hops`.
    pub fn forwarded_by(&self, relay: &str) -> DeviceMessage {
        let mut next = self.clone();
        next.ttl = next.ttl.saturating_sub(1);
        next.hops.push(relay.to_owned());
        next
    }

    /// MessagePack encoding (a map with camelCase names).
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes [`DeviceMessage::to_bytes`] output. Does not verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceMessageError> {
        rmp_serde::from_slice(bytes).map_err(|_| DeviceMessageError::InvalidField {
            field: "message",
            reason: "malformed MessagePack",
        })
    }
}

/// Outcome class of a device message, as Peers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// `200`: delivered and handled.
    Delivered,
    /// `404`: no route to the target, or no handler for the message at the target.
    NotFound,
    /// `503`: a device on the path could not take it now (retriable).
    Unavailable,
    /// `TTL0`: the hop budget ran out before the target.
    TtlExpired,
    /// Refused: bad signature, bad fields or a duplicate.
    Rejected,
}

impl DeliveryStatus {
    /// The status code string Peers uses: `"200"`, `"404"`, `"503"`, `"TTL0"`, `"rejected"`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Delivered => "200",
            Self::NotFound => "404",
            Self::Unavailable => "503",
            Self::TtlExpired => "TTL0",
            Self::Rejected => "rejected",
        }
    }
}

/// What comes back to the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMessageResult {
    /// Outcome.
    pub status: DeliveryStatus,
    /// The relays the message passed, ending with the device that answered.
    pub hops: Vec<String>,
    /// The handler's answer (empty unless delivered).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// What a device should do with a message ([`Router::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteDecision {
    /// Hand it to the local handler. For a broadcast, also forward to `forward`.
    Deliver {
        /// Neighbours a broadcast goes on to (empty for a direct message).
        forward: Vec<String>,
    },
    /// Send the [`DeviceMessage::forwarded_by`] copy to these neighbours, in order of
    /// preference (the first answer that is `200` wins).
    Forward {
        /// Neighbour device ids.
        to: Vec<String>,
    },
    /// Answer the sender with this status and stop.
    Answer(DeliveryStatus),
}

/// Settings of a [`Router`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// How many neighbours an unroutable message is forwarded to (the "few").
    pub fanout: usize,
    /// How long a message id is remembered for duplicate suppression.
    pub dedup_window: Duration,
    /// Most message ids remembered at once (oldest forgotten first).
    pub dedup_capacity: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            fanout: 3,
            dedup_window: Duration::from_secs(120),
            dedup_capacity: 4096,
        }
    }
}

/// Routing state of one device: its neighbours, what they reach, and recently seen ids.
#[derive(Debug, Clone)]
pub struct Router {
    me: String,
    config: RouterConfig,
    /// Neighbour → groups shared with it.
    neighbours: BTreeMap<String, BTreeSet<String>>,
    /// Neighbour → devices it reported as its own neighbours (the 2-hop network cache).
    reach: BTreeMap<String, BTreeSet<String>>,
    seen: BTreeMap<String, Instant>,
    seen_order: VecDeque<(Instant, String)>,
}

impl Router {
    /// A router for device `me`.
    pub fn new(me: impl Into<String>, config: RouterConfig) -> Self {
        Self {
            me: me.into(),
            config,
            neighbours: BTreeMap::new(),
            reach: BTreeMap::new(),
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// This device's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Records a direct connection to `device`, sharing `groups`.
    pub fn set_neighbour(&mut self, device: &str, groups: impl IntoIterator<Item = String>) {
        self.neighbours
            .insert(device.to_owned(), groups.into_iter().collect());
    }

    /// Forgets a neighbour and what it reached.
    pub fn remove_neighbour(&mut self, device: &str) {
        self.neighbours.remove(device);
        self.reach.remove(device);
    }

    /// Records the devices `neighbour` is connected to (from its network info).
    pub fn set_reach(&mut self, neighbour: &str, devices: impl IntoIterator<Item = String>) {
        if self.neighbours.contains_key(neighbour) {
            let devices = devices.into_iter().filter(|d| d != &self.me).collect();
            self.reach.insert(neighbour.to_owned(), devices);
        }
    }

    /// Current neighbours.
    pub fn neighbours(&self) -> impl Iterator<Item = &str> {
        self.neighbours.keys().map(String::as_str)
    }

    /// Whether `device` is a neighbour.
    pub fn is_neighbour(&self, device: &str) -> bool {
        self.neighbours.contains_key(device)
    }

    /// Every device known to be reachable within two hops (neighbours included).
    pub fn known_devices(&self) -> BTreeSet<String> {
        let mut known: BTreeSet<String> = self.neighbours.keys().cloned().collect();
        for devices in self.reach.values() {
            known.extend(devices.iter().cloned());
        }
        known
    }

    fn remember(&mut self, id: &str, now: Instant) -> bool {
        // Forgets ids older than the window, and the oldest beyond the capacity.
        while let Some((at, old)) = self.seen_order.front() {
            let expired = now.saturating_duration_since(*at) > self.config.dedup_window;
            if expired || self.seen_order.len() >= self.config.dedup_capacity.max(1) {
                if self.seen.get(old) == Some(at) {
                    self.seen.remove(old);
                }
                self.seen_order.pop_front();
            } else {
                break;
            }
        }
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), now);
        self.seen_order.push_back((now, id.to_owned()));
        true
    }

    /// Decides what to do with a verified `message` that arrived from neighbour `from`
    /// (`None` when it originates here). Remembers its id for duplicate suppression.
    pub fn route(
        &mut self,
        message: &DeviceMessage,
        from: Option<&str>,
        now: Instant,
    ) -> RouteDecision {
        if !self.remember(&message.device_message_id, now) {
            return RouteDecision::Answer(DeliveryStatus::Rejected);
        }
        let excluded = |d: &str| {
            Some(d) == from || d == message.from_device_id || message.hops.iter().any(|h| h == d)
        };
        if message.is_broadcast() {
            let forward = if message.ttl == 0 {
                Vec::new()
            } else {
                self.neighbours
                    .iter()
                    .filter(|(d, groups)| !excluded(d) && groups.contains(&message.data_context_id))
                    .map(|(d, _)| d.clone())
                    .collect()
            };
            // The sender itself does not deliver its own broadcast.
            if from.is_none() {
                return if forward.is_empty() {
                    RouteDecision::Answer(DeliveryStatus::NotFound)
                } else {
                    RouteDecision::Forward { to: forward }
                };
            }
            return RouteDecision::Deliver { forward };
        }
        if message.to_device_id == self.me {
            return RouteDecision::Deliver {
                forward: Vec::new(),
            };
        }
        if message.ttl == 0 {
            return RouteDecision::Answer(DeliveryStatus::TtlExpired);
        }
        let target = message.to_device_id.as_str();
        if self.neighbours.contains_key(target) && !excluded(target) {
            return RouteDecision::Forward {
                to: vec![target.to_owned()],
            };
        }
        let via: Vec<String> = self
            .reach
            .iter()
            .filter(|(n, devices)| !excluded(n) && devices.contains(target))
            .map(|(n, _)| n.clone())
            .take(self.config.fanout.max(1))
            .collect();
        if !via.is_empty() {
            return RouteDecision::Forward { to: via };
        }
        // Nobody is known to reach it: ask the few neighbours that reach the most devices
        // this one is not connected to (new ground), not every neighbour.
        let mut scored: Vec<(usize, &String)> = self
            .neighbours
            .keys()
            .filter(|n| !excluded(n))
            .map(|n| {
                let fresh = self
                    .reach
                    .get(n)
                    .map(|devices| {
                        devices
                            .iter()
                            .filter(|d| !self.neighbours.contains_key(*d) && !excluded(d))
                            .count()
                    })
                    .unwrap_or(0);
                (fresh, n)
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let to: Vec<String> = scored
            .into_iter()
            .take(self.config.fanout.max(1))
            .map(|(_, n)| n.clone())
            .collect();
        if to.is_empty() {
            RouteDecision::Answer(DeliveryStatus::NotFound)
        } else {
            RouteDecision::Forward { to }
        }
    }
}
