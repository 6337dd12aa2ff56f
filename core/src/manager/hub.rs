//! Hub election for large groups: one member relays broadcasts to the rest.

use std::collections::BTreeSet;

/// This device's part in a group's broadcast tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubRole {
    /// Small group: everyone connects to everyone and broadcasts directly.
    Mesh,
    /// This device is the hub: it relays broadcasts to every member.
    Hub,
    /// Another device is the hub: broadcasts go to it, and come from it.
    Spoke {
        /// The hub's device id.
        hub: String,
    },
    /// No live member is left to serve as hub.
    Alone,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Elects the hub of `group` among the `alive` members.
///
/// Rendezvous hashing: every member scores `hash(group, device)` and the lowest score wins,
/// ties broken by device id. Every device that sees the same live set elects the same hub
/// without a message exchange, hubs of different groups spread over different devices, and
/// when the hub leaves, the next-lowest score takes over (members other than the hub keep
/// their place, so failover moves no other role).
pub fn elect_hub<'a>(group: &str, alive: impl IntoIterator<Item = &'a str>) -> Option<String> {
    alive
        .into_iter()
        .map(|d| (fnv1a(&[group.as_bytes(), d.as_bytes()]), d))
        .min()
        .map(|(_, d)| d.to_owned())
}

/// The role of `me` in `group` whose live members are `alive` (including `me`), with a mesh
/// below `threshold` members.
pub fn hub_role(group: &str, me: &str, alive: &BTreeSet<String>, threshold: usize) -> HubRole {
    if alive.len() <= threshold {
        return HubRole::Mesh;
    }
    match elect_hub(group, alive.iter().map(String::as_str)) {
        Some(hub) if hub == me => HubRole::Hub,
        Some(hub) => HubRole::Spoke { hub },
        None => HubRole::Alone,
    }
}
