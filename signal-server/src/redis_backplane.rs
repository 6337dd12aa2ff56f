//! Scale-out over Redis: shared presence and routing between server instances.
//!
//! Keys (all under the prefix `pl:sig:`):
//! - `inst:<instance>`: exists while the instance lives (expires after [`INSTANCE_TTL`],
//!   refreshed every [`INSTANCE_REFRESH`]).
//! - `dev:<deviceId>`: `<instance>|<publicKey>` of the connection holding the device id.
//! - `room:<room>`: hash `deviceId → <instance>|<member JSON>`.
//! - `instances`: set of the instances that registered and have not been reaped.
//! - `irooms:<instance>`: set of the rooms an instance has had members in.
//!
//! Channels:
//! - `i:<instance>`: messages for one instance: `T` + id + text for a local device; `B` + id +
//!   origin instance + sender id + relay frame; `E` + sender id + target id when a frame the
//!   sender relayed was dropped at the target's full queue (the sender gets `target_busy`);
//!   `K` + id + publicKey to replace a device's connection there.
//! - `rooms`: `R` + instance + room + except + text, a presence event every other instance
//!   hands to its local members of that room.
//!
//! Entries of an instance that died without cleaning up stop counting once its `inst:` key
//! expires: lookups and member lists skip instances that are not alive. Every instance also
//! checks the `instances` set on each refresh; the first to find a member whose `inst:` key
//! has expired claims it (`SREM` answers 1 to one caller only), removes its room entries and
//! announces `left` for each of its members, so their rooms see them leave at most
//! [`INSTANCE_TTL`] + [`INSTANCE_REFRESH`] after the crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;

use crate::hub::{Client, Hub, Out};
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Member, Outgoing, error_text};

const PREFIX: &str = "pl:sig:";
/// How long an instance counts as alive without refreshing its key.
pub(crate) const INSTANCE_TTL: Duration = Duration::from_secs(10);
/// How often an instance refreshes its key.
pub(crate) const INSTANCE_REFRESH: Duration = Duration::from_secs(3);
/// How long a liveness answer is reused before asking Redis again.
const ALIVE_CACHE: Duration = Duration::from_secs(1);

/// Errors setting up the backplane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis side of one server instance.
pub(crate) struct Backplane {
    instance: String,
    conn: MultiplexedConnection,
    alive: Mutex<HashMap<String, std::time::Instant>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    let len_bytes: [u8; 2] = input.get(..2)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes(len_bytes));
    let s = input.get(2..2 + len)?;
    *input = input.get(2 + len..)?;
    std::str::from_utf8(s).ok()
}

fn internal(e: redis::RedisError) -> ErrorCode {
    tracing::warn!(error = %e, "redis backplane request failed");
    ErrorCode::Internal
}

impl Backplane {
    /// Connects to Redis and registers a new instance.
    pub(crate) async fn connect(url: &str) -> Result<Arc<Self>, BackplaneError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        let mut instance = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut instance);
        let instance: String = instance.iter().map(|b| format!("{b:02x}")).collect();
        let bp = Arc::new(Self {
            instance,
            conn,
            alive: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        bp.refresh().await?;
        Ok(bp)
    }

    async fn refresh(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let ttl = u64::try_from(INSTANCE_TTL.as_millis()).unwrap_or(10_000);
        redis::cmd("SET")
            .arg(format!("{PREFIX}inst:{}", self.instance))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut conn)
            .await?;
        conn.sadd(format!("{PREFIX}instances"), &self.instance)
            .await
    }

    /// Finds instances whose liveness key expired, claims each (one reaper wins), drops its
    /// room entries and announces `left` for its members, locally and to the other instances.
    async fn reap(&self, hub: &Hub) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let instances: Vec<String> = conn.smembers(format!("{PREFIX}instances")).await?;
        for dead in instances {
            if dead == self.instance {
                continue;
            }
            let alive: bool = conn.exists(format!("{PREFIX}inst:{dead}")).await?;
            if alive {
                continue;
            }
            let claimed: i64 = conn.srem(format!("{PREFIX}instances"), &dead).await?;
            if claimed != 1 {
                continue;
            }
            lock(&self.alive).remove(&dead);
            let rooms_key = format!("{PREFIX}irooms:{dead}");
            let rooms: Vec<String> = conn.smembers(&rooms_key).await?;
            let prefix = format!("{dead}|");
            for room in rooms {
                let key = format!("{PREFIX}room:{room}");
                let entries: HashMap<String, String> = conn.hgetall(&key).await?;
                for (device, value) in entries {
                    if !value.starts_with(&prefix) {
                        continue;
                    }
                    let removed: i64 = conn.hdel(&key, &device).await?;
                    if removed != 1 {
                        continue;
                    }
                    let text = Utf8Bytes::from(
                        Outgoing::Left {
                            re: None,
                            room: &room,
                            device_id: &device,
                        }
                        .to_text(),
                    );
                    hub.broadcast_local(&room, Some(&device), &text);
                    self.publish_room(&room, &device, &text).await;
                }
            }
            let _: i64 = conn.del(&rooms_key).await?;
            tracing::info!(instance = %dead, "reaped the members of a dead instance");
        }
        Ok(())
    }

    /// Starts the subscriber and the liveness refresher for `hub`.
    pub(crate) async fn start(
        self: &Arc<Self>,
        url: &str,
        hub: Weak<Hub>,
    ) -> Result<(), BackplaneError> {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub
            .subscribe(format!("{PREFIX}i:{}", self.instance))
            .await?;
        pubsub.subscribe(format!("{PREFIX}rooms")).await?;
        let me = Arc::downgrade(self);
        let hub_weak = hub.clone();
        let listener = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            // Runs until the subscription ends or the hub is gone.
            while let Some(msg) = stream.next().await {
                let (Some(hub), Some(me)) = (hub.upgrade(), me.upgrade()) else {
                    break;
                };
                Metrics::inc(&hub.metrics.backplane_messages);
                me.on_message(&hub, msg.get_payload_bytes());
            }
            tracing::warn!("redis subscription ended");
        });
        let me = Arc::downgrade(self);
        let hub_for_reaper = hub_weak;
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INSTANCE_REFRESH);
            // Runs until the backplane is dropped.
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                if let Err(e) = me.refresh().await {
                    tracing::warn!(error = %e, "redis liveness refresh failed");
                }
                if let Some(hub) = hub_for_reaper.upgrade()
                    && let Err(e) = me.reap(&hub).await
                {
                    tracing::warn!(error = %e, "reaping dead instances failed");
                }
            }
        });
        lock(&self.tasks).extend([listener.abort_handle(), refresher.abort_handle()]);
        Ok(())
    }

    /// Stops background tasks and removes the instance key so peers stop routing here.
    pub(crate) async fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let mut conn = self.conn.clone();
        let _: Result<(), _> = conn.del(format!("{PREFIX}inst:{}", self.instance)).await;
        let _: Result<(), _> = conn
            .srem(format!("{PREFIX}instances"), &self.instance)
            .await;
        let _: Result<(), _> = conn.del(format!("{PREFIX}irooms:{}", self.instance)).await;
    }

    /// Stops background tasks without touching Redis (crash simulation).
    pub(crate) fn abort(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn on_message(&self, hub: &Hub, payload: &[u8]) {
        let Some((&kind, mut rest)) = payload.split_first() else {
            return;
        };
        match kind {
            b'T' | b'B' | b'E' | b'K' => {
                let Some(device) = take_str(&mut rest) else {
                    return;
                };
                let Some(client) = hub.local(device) else {
                    return;
                };
                match kind {
                    b'T' => {
                        if let Ok(text) = std::str::from_utf8(rest) {
                            let _ = client.queue.try_send(Out::Text(Utf8Bytes::from(text)));
                        }
                    }
                    b'B' => {
                        // `B` + target + origin instance + sender + frame. The target's
                        // queue is bounded: when it is full the frame is dropped (never
                        // buffered here) and the sender is told `target_busy`, as it would
                        // be on one instance.
                        let (Some(origin), Some(sender)) =
                            (take_str(&mut rest), take_str(&mut rest))
                        else {
                            return;
                        };
                        if client
                            .queue
                            .try_send(Out::Binary(Bytes::copy_from_slice(rest)))
                            .is_err()
                        {
                            Metrics::inc(&hub.metrics.relay_dropped);
                            let mut msg = vec![b'E'];
                            push_str(&mut msg, sender);
                            msg.extend_from_slice(device.as_bytes());
                            let mut conn = self.conn.clone();
                            let channel = format!("{PREFIX}i:{origin}");
                            tokio::spawn(async move {
                                let _: Result<(), _> = conn.publish(channel, msg).await;
                            });
                        }
                    }
                    b'E' => {
                        // A frame this client sent to another instance was dropped there.
                        if let Ok(target) = std::str::from_utf8(rest) {
                            let text = error_text(ErrorCode::TargetBusy, None, Some(target));
                            let _ = client.queue.try_send(Out::Text(Utf8Bytes::from(text)));
                        }
                    }
                    _ => {
                        if std::str::from_utf8(rest).is_ok_and(|k| k == client.member.public_key) {
                            client.kick(ErrorCode::Replaced);
                        }
                    }
                }
            }
            b'R' => {
                let (Some(origin), Some(room), Some(except)) = (
                    take_str(&mut rest),
                    take_str(&mut rest),
                    take_str(&mut rest),
                ) else {
                    return;
                };
                if origin == self.instance {
                    return;
                }
                if let Ok(text) = std::str::from_utf8(rest) {
                    hub.broadcast_local(room, Some(except), &Utf8Bytes::from(text));
                }
            }
            _ => {}
        }
    }

    async fn is_alive(&self, instance: &str) -> bool {
        if instance == self.instance {
            return true;
        }
        if let Some(at) = lock(&self.alive).get(instance)
            && at.elapsed() < ALIVE_CACHE
        {
            return true;
        }
        let mut conn = self.conn.clone();
        let alive: bool = conn
            .exists(format!("{PREFIX}inst:{instance}"))
            .await
            .unwrap_or(false);
        let mut cache = lock(&self.alive);
        if alive {
            cache.insert(instance.to_owned(), std::time::Instant::now());
        } else {
            cache.remove(instance);
        }
        alive
    }

    pub(crate) async fn register(&self, client: &Client) -> Result<(), ErrorCode> {
        let key = format!("{PREFIX}dev:{}", client.member.device_id);
        let mut conn = self.conn.clone();
        let old: Option<String> = conn.get(&key).await.map_err(internal)?;
        if let Some(old) = old
            && let Some((instance, public_key)) = old.split_once('|')
            && instance != self.instance
            && self.is_alive(instance).await
        {
            if public_key != client.member.public_key {
                return Err(ErrorCode::DeviceIdTaken);
            }
            let mut msg = vec![b'K'];
            push_str(&mut msg, &client.member.device_id);
            msg.extend_from_slice(public_key.as_bytes());
            let _: Result<(), _> = conn.publish(format!("{PREFIX}i:{instance}"), msg).await;
        }
        let value = format!("{}|{}", self.instance, client.member.public_key);
        conn.set::<_, _, ()>(&key, value).await.map_err(internal)
    }

    pub(crate) async fn unregister(&self, client: &Client) {
        let key = format!("{PREFIX}dev:{}", client.member.device_id);
        let mut conn = self.conn.clone();
        // Delete only our own entry: a newer connection elsewhere may hold the id already.
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let value = format!("{}|{}", self.instance, client.member.public_key);
        let _: Result<i64, _> = script.key(key).arg(value).invoke_async(&mut conn).await;
    }

    /// The instance holding `device_id`, if it is alive.
    pub(crate) async fn lookup(&self, device_id: &str) -> Result<Option<String>, ErrorCode> {
        let mut conn = self.conn.clone();
        let value: Option<String> = conn
            .get(format!("{PREFIX}dev:{device_id}"))
            .await
            .map_err(internal)?;
        let Some((instance, _)) = value.as_deref().and_then(|v| v.split_once('|')) else {
            return Ok(None);
        };
        if instance == self.instance || !self.is_alive(instance).await {
            // Our own stale entry (the device left this instance) or a dead instance's.
            return Ok(None);
        }
        Ok(Some(instance.to_owned()))
    }

    /// Adds `member` to the shared room and returns the other live members.
    pub(crate) async fn join(
        &self,
        room: &str,
        member: &Member,
        already: bool,
        max_members: usize,
    ) -> Result<Vec<Member>, ErrorCode> {
        let key = format!("{PREFIX}room:{room}");
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(member).map_err(|_| ErrorCode::Internal)?;
        let entries: HashMap<String, String> = conn.hgetall(&key).await.map_err(internal)?;
        let mut others = Vec::new();
        let mut live = 0usize;
        for (device, value) in entries {
            let Some((instance, member_json)) = value.split_once('|') else {
                continue;
            };
            if !self.is_alive(instance).await {
                let _: Result<(), _> = conn.hdel(&key, &device).await;
                continue;
            }
            live += 1;
            if device == member.device_id {
                continue;
            }
            if let Ok(m) = serde_json::from_str::<Member>(member_json) {
                others.push(m);
            }
        }
        // Sized by live members only, so a dead instance's leftovers cannot fill a room.
        let counted = live.saturating_sub(usize::from(already));
        if !already && counted >= max_members {
            return Err(ErrorCode::RoomFull);
        }
        conn.hset::<_, _, _, ()>(&key, &member.device_id, format!("{}|{json}", self.instance))
            .await
            .map_err(internal)?;
        conn.sadd::<_, _, ()>(format!("{PREFIX}irooms:{}", self.instance), room)
            .await
            .map_err(internal)?;
        Ok(others)
    }

    pub(crate) async fn leave(&self, room: &str, member: &Member) {
        let key = format!("{PREFIX}room:{room}");
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            "local v = redis.call('HGET', KEYS[1], ARGV[1]) if v and string.sub(v, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. '|' then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
        );
        let _: Result<i64, _> = script
            .key(key)
            .arg(&member.device_id)
            .arg(&self.instance)
            .invoke_async(&mut conn)
            .await;
    }

    pub(crate) async fn publish_room(&self, room: &str, except: &str, text: &Utf8Bytes) {
        let mut msg = vec![b'R'];
        push_str(&mut msg, &self.instance);
        push_str(&mut msg, room);
        push_str(&mut msg, except);
        msg.extend_from_slice(text.as_str().as_bytes());
        let mut conn = self.conn.clone();
        if let Err(e) = conn
            .publish::<_, _, ()>(format!("{PREFIX}rooms"), msg)
            .await
        {
            tracing::warn!(error = %e, "redis publish failed");
        }
    }

    async fn forward(
        &self,
        instance: &str,
        kind: u8,
        device: &str,
        body: &[u8],
    ) -> Result<(), ErrorCode> {
        let mut msg = Vec::with_capacity(3 + device.len() + body.len());
        msg.push(kind);
        push_str(&mut msg, device);
        msg.extend_from_slice(body);
        let mut conn = self.conn.clone();
        let receivers: i64 = conn
            .publish(format!("{PREFIX}i:{instance}"), msg)
            .await
            .map_err(internal)?;
        if receivers == 0 {
            return Err(ErrorCode::TargetOffline);
        }
        Ok(())
    }

    pub(crate) async fn forward_text(
        &self,
        instance: &str,
        device: &str,
        text: &str,
    ) -> Result<(), ErrorCode> {
        self.forward(instance, b'T', device, text.as_bytes()).await
    }

    /// Forwards a relay frame from local `sender` to `device` on `instance`.
    pub(crate) async fn forward_binary(
        &self,
        instance: &str,
        device: &str,
        sender: &str,
        frame: &[u8],
    ) -> Result<(), ErrorCode> {
        let mut body = Vec::with_capacity(4 + self.instance.len() + sender.len() + frame.len());
        push_str(&mut body, &self.instance);
        push_str(&mut body, sender);
        body.extend_from_slice(frame);
        self.forward(instance, b'B', device, &body).await
    }
}
