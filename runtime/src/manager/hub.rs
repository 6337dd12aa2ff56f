//! Broadcast through an elected hub in groups larger than `hub_threshold`.
//!
//! Every member computes the same hub from the group's roster (given by the host) minus the
//! members it has seen leave, with the core's rendezvous election, so no exchange is needed.
//! Each member keeps links to the hub and to the standby (the next in election order); both
//! links are pinned so eviction spares them. A broadcast goes to the hub in one call; the hub
//! runs it and relays it to every other member it is linked to. When the hub's link closes,
//! every member drops it from its live set and the standby — already linked to everyone —
//! takes over at once; members that lack a link to the new standby open one (a WebRTC
//! upgrade signalled over device messages when upgrades are on, otherwise the host dials on
//! [`ManagerEvent::HubChanged`]).
//!
//! A member also learns of a death through the group, not only through its own link: a
//! member that marks a device down (its link closed) tells its group neighbours with a
//! [`MEMBER_DOWN`] notification. A receiver without a link to that device takes the report;
//! one with a link checks it with a ping first (its own link may still look open, half-open
//! or slower to notice) and, if the ping goes unanswered, closes the link. Each device passes
//! a report on once, when it first marks the device down, so it reaches members two hops
//! away and the group agrees on the new hub within about one ping timeout.

use std::collections::BTreeSet;

use bytes::Bytes;
use peerlink_core::manager::{HubRole, elect_hub, hub_role};
use serde::Serialize;

use super::{ConnectionManager, ManagerError, ManagerEvent, State, lock};
use crate::connection::Connection;
use crate::error::RpcError;
use crate::handler::{HandlerError, Request, group_rpc_name};

/// Connection-level RPC: the hub runs a group broadcast and relays it to the other members.
pub const HUB_RELAY: &str = "peerlinkHubRelay";
/// Connection-level notification: the sender saw a group member's link die (MessagePack
/// `[group, device]`).
pub const MEMBER_DOWN: &str = "peerlinkMemberDown";

/// A relay request: MessagePack `[group, name]` followed by the broadcast's encoded
/// arguments, passed on untouched.
pub(crate) fn encode_relay(group: &str, name: &str, args: &[u8]) -> Result<Bytes, RpcError> {
    let mut body =
        rmp_serde::to_vec(&(group, name)).map_err(|e| RpcError::Encode(e.to_string()))?;
    body.extend_from_slice(args);
    Ok(Bytes::from(body))
}

pub(crate) fn decode_relay(body: &Bytes) -> Result<(String, String, Bytes), HandlerError> {
    let mut cursor = std::io::Cursor::new(&body[..]);
    let (group, name): (String, String) = rmp_serde::from_read(&mut cursor)
        .map_err(|e| HandlerError::new("bad_request", e.to_string()))?;
    let start = usize::try_from(cursor.position()).unwrap_or(body.len());
    Ok((group, name, body.slice(start.min(body.len())..)))
}

impl ConnectionManager {
    /// Sets the roster of `group_id` (device ids, this device included or not): the hub is
    /// elected among its live members.
    pub fn set_group_members(&self, group_id: &str, members: impl IntoIterator<Item = String>) {
        lock(&self.inner.state)
            .rosters
            .insert(group_id.to_owned(), members.into_iter().collect());
        self.recompute_hubs();
    }

    /// This device's role in `group_id`'s broadcast tree.
    pub fn hub_role(&self, group_id: &str) -> HubRole {
        let st = lock(&self.inner.state);
        let alive = self.alive(&st, group_id);
        hub_role(
            group_id,
            &self.inner.device_id,
            &alive,
            self.inner.config.hub_threshold,
        )
    }

    /// The elected hub and standby of `group_id` (both `None` for a mesh-sized group).
    pub fn hubs(&self, group_id: &str) -> (Option<String>, Option<String>) {
        let st = lock(&self.inner.state);
        self.hub_pair(&st, group_id)
    }

    fn alive(&self, st: &State, group_id: &str) -> BTreeSet<String> {
        let mut alive: BTreeSet<String> = st
            .rosters
            .get(group_id)
            .map(|r| {
                r.iter()
                    .filter(|d| !st.down.contains(*d))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        alive.insert(self.inner.device_id.clone());
        alive
    }

    fn hub_pair(&self, st: &State, group_id: &str) -> (Option<String>, Option<String>) {
        let alive = self.alive(st, group_id);
        if alive.len() <= self.inner.config.hub_threshold {
            return (None, None);
        }
        let hub = elect_hub(group_id, alive.iter().map(String::as_str));
        let standby = elect_hub(
            group_id,
            alive
                .iter()
                .map(String::as_str)
                .filter(|d| Some(*d) != hub.as_deref()),
        );
        (hub, standby)
    }

    /// Re-elects every group's hub after a membership or link change: pins the links to
    /// hubs and standbys, reports changed hubs, and asks for missing links.
    pub(super) fn recompute_hubs(&self) {
        let mut changed = Vec::new();
        let mut wanted = BTreeSet::new();
        {
            let mut st = lock(&self.inner.state);
            let groups: Vec<String> = st.rosters.keys().cloned().collect();
            for group in groups {
                let (hub, standby) = self.hub_pair(&st, &group);
                wanted.extend(hub.iter().cloned());
                wanted.extend(standby.iter().cloned());
                if st.hubs.get(&group) != Some(&hub) {
                    st.hubs.insert(group.clone(), hub.clone());
                    changed.push((group, hub));
                }
            }
            wanted.remove(&self.inner.device_id);
            let linked: Vec<String> = st.entries.keys().cloned().collect();
            for d in linked {
                st.table.set_pinned(&d, wanted.contains(&d));
            }
        }
        for (group_id, hub) in changed {
            let _ = self
                .inner
                .events
                .send(ManagerEvent::HubChanged { group_id, hub });
        }
        for d in wanted {
            if self.connection(&d).is_none() {
                self.maybe_upgrade(&d);
            }
        }
    }

    /// A device's current link closed (or members reported it dead): it no longer counts as
    /// a live member, and the group neighbours hear of it once.
    pub(super) fn hub_member_lost(&self, device_id: &str) {
        let reports: Vec<(Connection, String)> = {
            let mut st = lock(&self.inner.state);
            if !st.down.insert(device_id.to_owned()) {
                return;
            }
            let groups: Vec<String> = st
                .rosters
                .iter()
                .filter(|(_, r)| r.contains(device_id))
                .map(|(g, _)| g.clone())
                .collect();
            st.entries
                .iter()
                .filter(|(d, _)| d.as_str() != device_id)
                .flat_map(|(_, e)| {
                    groups
                        .iter()
                        .filter(|g| e.groups.contains(*g))
                        .map(|g| (e.connection.clone(), g.clone()))
                })
                .collect()
        };
        self.recompute_hubs();
        if reports.is_empty() {
            return;
        }
        let device = device_id.to_owned();
        tokio::spawn(async move {
            for (c, group) in reports {
                let _ = c.notify(MEMBER_DOWN, &(&group, &device)).await;
            }
        });
    }

    /// A member reported `device` of `group` dead: taken as is when this device has no link
    /// to it, checked with a ping when it has one.
    pub(super) async fn on_member_down(&self, req: Request) -> Result<bytes::Bytes, HandlerError> {
        let (group, device): (String, String) = req.args()?;
        let reporter = req.connection.remote().device_id.clone();
        let known = {
            let st = lock(&self.inner.state);
            let in_group = st.rosters.get(&group).is_some_and(|r| r.contains(&device))
                && st
                    .entries
                    .get(&reporter)
                    .is_some_and(|e| e.groups.contains(&group));
            if !in_group || device == self.inner.device_id || st.down.contains(&device) {
                return Ok(bytes::Bytes::new());
            }
            st.entries.get(&device).map(|e| e.connection.clone())
        };
        match known {
            None => self.hub_member_lost(&device),
            Some(c) => {
                let timeout = self.inner.config.ping_timeout;
                let alive = matches!(tokio::time::timeout(timeout, c.ping()).await, Ok(Ok(_)));
                if !alive {
                    // Closing runs the usual removal, which marks it down and reports it.
                    c.close("unanswered ping after a member reported it down")
                        .await;
                }
            }
        }
        Ok(bytes::Bytes::new())
    }

    /// A device got a link: it counts as live again.
    pub(super) fn hub_member_linked(&self, device_id: &str) {
        lock(&self.inner.state).down.remove(device_id);
        self.recompute_hubs();
    }

    /// Calls the group handler `name` (registered with [`ConnectionManager::expose_group`])
    /// on every other member of `group_id`: directly in a mesh-sized group, through the
    /// elected hub in a larger one. Returns the devices whose handler ran; the call is not
    /// retried, so a broadcast sent while the hub fails may reach nobody (the error says so)
    /// and the next one goes through the new hub.
    pub async fn broadcast_group<A>(
        &self,
        group_id: &str,
        name: &str,
        args: &A,
    ) -> Result<Vec<String>, ManagerError>
    where
        A: Serialize + ?Sized,
    {
        let body = rmp_serde::to_vec_named(args).map_err(|e| RpcError::Encode(e.to_string()))?;
        match self.hub_role(group_id) {
            HubRole::Mesh | HubRole::Hub => {
                Ok(self.relay(group_id, name, Bytes::from(body), None).await)
            }
            HubRole::Spoke { hub } => {
                let relay = encode_relay(group_id, name, &body)?;
                let reply = self.call_raw(&hub, HUB_RELAY, relay).await?;
                let mut reached: Vec<String> =
                    rmp_serde::from_slice(&reply).map_err(|e| RpcError::Decode(e.to_string()))?;
                reached.sort();
                Ok(reached)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Calls `name_<group>` on every connection sharing `group` except `origin`.
    async fn relay(
        &self,
        group: &str,
        name: &str,
        body: Bytes,
        origin: Option<&str>,
    ) -> Vec<String> {
        let targets: Vec<(String, Connection)> = lock(&self.inner.state)
            .entries
            .iter()
            .filter(|(d, e)| e.groups.contains(group) && Some(d.as_str()) != origin)
            .map(|(d, e)| (d.clone(), e.connection.clone()))
            .collect();
        let rpc = group_rpc_name(name, group);
        let calls = targets
            .iter()
            .map(|(_, c)| c.call_raw(&rpc, body.clone(), Default::default()));
        let results = futures_util::future::join_all(calls).await;
        let mut reached: Vec<String> = targets
            .into_iter()
            .zip(results)
            .filter(|(_, r)| r.is_ok())
            .map(|((d, _), _)| d)
            .collect();
        reached.sort();
        reached
    }

    /// The hub side of [`HUB_RELAY`]: runs the group handler here, then relays to the rest.
    pub(super) async fn on_hub_relay(&self, req: Request) -> Result<Bytes, HandlerError> {
        let (group, name, body) = decode_relay(&req.body)?;
        let origin = req.connection.remote().device_id.clone();
        let handler = {
            let st = lock(&self.inner.state);
            let shares = st
                .entries
                .get(&origin)
                .is_some_and(|e| e.groups.contains(&group));
            if !shares {
                return Err(HandlerError::new(
                    "not_member",
                    "the sender does not share this group",
                ));
            }
            st.group_handlers
                .get(&(name.clone(), group.clone()))
                .cloned()
        };
        let here = async {
            match handler {
                Some(h) => h(Request {
                    name: group_rpc_name(&name, &group),
                    body: body.clone(),
                    connection: req.connection.clone(),
                    is_notify: false,
                })
                .await
                .is_ok(),
                None => false,
            }
        };
        let (ran_here, mut reached) =
            tokio::join!(here, self.relay(&group, &name, body.clone(), Some(&origin)));
        if ran_here {
            reached.push(self.inner.device_id.clone());
        }
        rmp_serde::to_vec_named(&reached)
            .map(Bytes::from)
            .map_err(|e| HandlerError::new("encode", e.to_string()))
    }
}
