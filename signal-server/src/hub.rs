//! Shared server state: who is connected, who is in which room, per-IP accounting, and routing
//! to local clients (and, with Redis configured, to clients of other instances).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Member, Outgoing, signal_head};
use crate::queue::OutQueue;
use crate::rate::Bucket;
use crate::redis_backplane::Backplane;

/// Something queued for one client's socket.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    Text(Utf8Bytes),
    Binary(Bytes),
}

/// One authenticated connection as the rest of the server sees it.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) conn_id: u64,
    pub(crate) member: Member,
    /// The start of every signal this client sends (see [`signal_head`]).
    pub(crate) signal_head: Box<str>,
    pub(crate) queue: OutQueue,
    kick_code: AtomicUsize,
}

const NO_KICK: usize = usize::MAX;

impl Client {
    pub(crate) fn new(conn_id: u64, member: Member, queue_capacity: usize) -> Self {
        Self {
            conn_id,
            signal_head: signal_head(&member),
            member,
            queue: OutQueue::new(queue_capacity),
            kick_code: AtomicUsize::new(NO_KICK),
        }
    }

    /// Asks the client's session to close with `code`. The first reason wins.
    pub(crate) fn kick(&self, code: ErrorCode) {
        let _ = self.kick_code.compare_exchange(
            NO_KICK,
            code.index(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.queue.wake();
    }

    /// Whether [`Client::kick`] was called: a kicked client is on its way out and no longer
    /// a target for new messages.
    pub(crate) fn is_kicked(&self) -> bool {
        self.kick_code.load(Ordering::Acquire) != NO_KICK
    }

    /// What the client's session does next: ready with the reason once [`Client::kick`] was
    /// called, else as [`OutQueue::poll_recv`]. One waker registration covers both (a kick
    /// wakes the queue's consumer), so waiting costs the session one atomic registration and
    /// one atomic load per wake-up, no lock.
    pub(crate) fn poll_next(
        &self,
        cx: &mut Context<'_>,
        batch: &mut std::collections::VecDeque<Out>,
    ) -> Poll<Result<bool, ErrorCode>> {
        // Registers the waker before the kick is checked, so a kick in between still wakes.
        let queued = self.queue.poll_recv(cx, batch);
        let index = self.kick_code.load(Ordering::Acquire);
        if index != NO_KICK {
            batch.clear();
            return Poll::Ready(Err(ErrorCode::ALL
                .get(index)
                .copied()
                .unwrap_or(ErrorCode::Internal)));
        }
        queued.map(Ok)
    }

    /// Queues presence or control text; a client whose queue is full is too slow to stay.
    pub(crate) fn push_or_kick(&self, out: Out) {
        if self.queue.try_send(out).is_err() {
            self.kick(ErrorCode::SlowConsumer);
        }
    }
}

struct IpEntry {
    connections: usize,
    bucket: Bucket,
}

const IP_SHARDS: usize = 16;

/// Shards of the device map (a power of two): a lookup locks one shard, so sessions on
/// different worker threads seldom meet on a lock.
const CLIENT_SHARDS: usize = 64;

/// Locally connected clients by device id, in one shard.
type ClientShard = HashMap<Arc<str>, Arc<Client>>;

/// Local members of one room, by device id.
type RoomMembers = HashMap<Arc<str>, Arc<Client>>;

/// State shared by every session of one server instance.
pub(crate) struct Hub {
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<Metrics>,
    clients: [Mutex<ClientShard>; CLIENT_SHARDS],
    rooms: Mutex<HashMap<Arc<str>, RoomMembers>>,
    ips: [Mutex<HashMap<IpAddr, IpEntry>>; IP_SHARDS],
    next_conn: std::sync::atomic::AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) backplane: Option<Arc<Backplane>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Releases a per-IP connection slot when the session ends.
pub(crate) struct IpSlot {
    hub: Arc<Hub>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut shard = lock(self.hub.ip_shard(self.ip));
        if let Some(entry) = shard.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

/// Where a message for a device goes.
pub(crate) enum Route {
    Local(Arc<Client>),
    Remote(String),
}

impl Hub {
    pub(crate) fn new(
        config: ServerConfig,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        backplane: Option<Arc<Backplane>>,
    ) -> Self {
        Self {
            config,
            metrics,
            clients: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            rooms: Mutex::new(HashMap::new()),
            ips: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next_conn: std::sync::atomic::AtomicU64::new(1),
            shutdown,
            backplane,
        }
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The shard of the device map that holds `device_id` (FNV-1a over its bytes).
    fn client_shard(&self, device_id: &str) -> &Mutex<ClientShard> {
        let mut h: u32 = 0x811c_9dc5;
        for b in device_id.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        &self.clients[h as usize & (CLIENT_SHARDS - 1)]
    }

    fn ip_shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, IpEntry>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => u128::from(v6) as usize,
        };
        // IP_SHARDS is a power of two; the mask keeps the index in range.
        &self.ips[h & (IP_SHARDS - 1)]
    }

    /// Takes a connection slot for `ip`, or `None` when the IP is at its limit.
    pub(crate) fn ip_connect(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<IpSlot> {
        let mut shard = lock(self.ip_shard(ip));
        let rate = self.config.ip_message_rate;
        let entry = shard.entry(ip).or_insert_with(|| IpEntry {
            connections: 0,
            bucket: Bucket::new(rate, now),
        });
        if entry.connections >= self.config.max_connections_per_ip {
            return None;
        }
        entry.connections += 1;
        Some(IpSlot {
            hub: Arc::clone(self),
            ip,
        })
    }

    /// Charges one message to `ip`'s shared bucket.
    pub(crate) fn ip_allows(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.ip_message_rate;
        if rate.per_second.is_infinite() {
            return true;
        }
        let mut shard = lock(self.ip_shard(ip));
        shard
            .get_mut(&ip)
            .is_none_or(|e| e.bucket.try_take(rate, 1.0, now))
    }

    /// Registers an authenticated client. A live connection of the same device with the same
    /// key is replaced; one with a different key keeps the id.
    pub(crate) async fn register(&self, client: &Arc<Client>) -> Result<(), ErrorCode> {
        let device: Arc<str> = Arc::from(client.member.device_id.as_str());
        let shard = self.client_shard(&device);
        let taken = |clients: &ClientShard| {
            clients
                .get(&device)
                .is_some_and(|old| old.member.public_key != client.member.public_key)
        };
        if taken(&lock(shard)) {
            return Err(ErrorCode::DeviceIdTaken);
        }
        // The shared registry decides first, so a refusal leaves no local trace.
        if let Some(bp) = &self.backplane {
            bp.register(client).await?;
        }
        let replaced = {
            let mut clients = lock(shard);
            if taken(&clients) {
                return Err(ErrorCode::DeviceIdTaken);
            }
            clients.insert(device, Arc::clone(client))
        };
        if let Some(old) = replaced {
            old.kick(ErrorCode::Replaced);
        }
        Ok(())
    }

    /// Removes a client, if it is still the registered connection of its device.
    pub(crate) async fn unregister(&self, client: &Arc<Client>) {
        let removed = {
            let key = client.member.device_id.as_str();
            let mut clients = lock(self.client_shard(key));
            if clients
                .get(key)
                .is_some_and(|c| c.conn_id == client.conn_id)
            {
                clients.remove(key);
                true
            } else {
                false
            }
        };
        if removed && let Some(bp) = &self.backplane {
            bp.unregister(client).await;
        }
    }

    /// The locally connected client of `device_id`.
    pub(crate) fn local(&self, device_id: &str) -> Option<Arc<Client>> {
        lock(self.client_shard(device_id)).get(device_id).cloned()
    }

    /// Finds where `device_id` is connected.
    pub(crate) async fn route(&self, device_id: &str) -> Result<Route, ErrorCode> {
        if let Some(c) = self.local(device_id) {
            return Ok(Route::Local(c));
        }
        match &self.backplane {
            Some(bp) => match bp.lookup(device_id).await? {
                Some(instance) => Ok(Route::Remote(instance)),
                None => Err(ErrorCode::TargetOffline),
            },
            None => Err(ErrorCode::TargetOffline),
        }
    }

    /// Adds `client` to `room` and returns the other members. `already` is true when it was
    /// a member before (nothing is announced then).
    pub(crate) async fn join(
        &self,
        client: &Arc<Client>,
        room: &str,
    ) -> Result<(Vec<Member>, bool), ErrorCode> {
        let room_key: Arc<str> = Arc::from(room);
        let device: Arc<str> = Arc::from(client.member.device_id.as_str());
        let (others, already) = {
            let mut rooms = lock(&self.rooms);
            let members = rooms.entry(Arc::clone(&room_key)).or_default();
            let already = members.contains_key(&device);
            if !already && self.backplane.is_none() && members.len() >= self.config.max_room_members
            {
                if members.is_empty() {
                    rooms.remove(&room_key);
                }
                return Err(ErrorCode::RoomFull);
            }
            let others: Vec<Member> = members
                .values()
                .filter(|c| c.member.device_id != client.member.device_id)
                .map(|c| c.member.clone())
                .collect();
            if members.is_empty() {
                Metrics::gauge(&self.metrics.rooms_open, 1);
            }
            members.insert(Arc::clone(&device), Arc::clone(client));
            (others, already)
        };
        let others = match &self.backplane {
            Some(bp) => match bp
                .join(room, &client.member, already, self.config.max_room_members)
                .await
            {
                Ok(all) => all,
                Err(code) => {
                    self.remove_local_member(room, &client.member.device_id, client.conn_id);
                    return Err(code);
                }
            },
            None => others,
        };
        if !already {
            let text = Utf8Bytes::from(
                Outgoing::Joined {
                    room,
                    member: &client.member,
                }
                .to_text(),
            );
            self.broadcast_local(room, Some(&client.member.device_id), &text);
            if let Some(bp) = &self.backplane {
                bp.publish_room(room, &client.member.device_id, &text).await;
            }
        }
        Ok((others, already))
    }

    fn remove_local_member(&self, room: &str, device_id: &str, conn_id: u64) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some(members) = rooms.get_mut(room) else {
            return false;
        };
        let removed = match members.get(device_id) {
            Some(c) if c.conn_id == conn_id => members.remove(device_id).is_some(),
            _ => false,
        };
        if members.is_empty() {
            rooms.remove(room);
            Metrics::gauge(&self.metrics.rooms_open, -1);
        }
        removed
    }

    /// Removes `client` from `room` and tells the other members.
    pub(crate) async fn leave(&self, client: &Arc<Client>, room: &str) {
        if !self.remove_local_member(room, &client.member.device_id, client.conn_id) {
            return;
        }
        let text = Utf8Bytes::from(
            Outgoing::Left {
                re: None,
                room,
                device_id: &client.member.device_id,
            }
            .to_text(),
        );
        self.broadcast_local(room, Some(&client.member.device_id), &text);
        if let Some(bp) = &self.backplane {
            bp.leave(room, &client.member).await;
            bp.publish_room(room, &client.member.device_id, &text).await;
        }
    }

    /// Queues `text` for every local member of `room` except `except`.
    pub(crate) fn broadcast_local(&self, room: &str, except: Option<&str>, text: &Utf8Bytes) {
        let targets: Vec<Arc<Client>> = {
            let rooms = lock(&self.rooms);
            match rooms.get(room) {
                Some(members) => members
                    .values()
                    .filter(|c| Some(c.member.device_id.as_str()) != except)
                    .cloned()
                    .collect(),
                None => return,
            }
        };
        for target in targets {
            target.push_or_kick(Out::Text(text.clone()));
        }
    }
}
