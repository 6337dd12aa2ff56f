//! The connection manager from JavaScript: one connection per remote device, groups, calls by
//! device id, the upgrade to direct WebRTC links, and its events.

use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use napi::bindgen_prelude::{Function, Unknown};
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::core::device_message::{DEFAULT_TTL, DeliveryStatus, DeviceMessage};
use peerlink::core::manager::{ManagerConfig, PathKind};
use peerlink::manager::{ManagerError, ManagerEvent, UpgradeConfig};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

use crate::bridge::{JsCallback, JsMsgpack, Native, Thrown, ToJs, call_js, promise};
use crate::connection::{Connection, bytes_arg, encode_args};
use crate::error::{Failure, sync_error};
use crate::identity::Identity;
use crate::node::Node;
use crate::webrtc::{WebRtcOptions, webrtc_config};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn manager_failure(e: ManagerError) -> Failure {
    match e {
        ManagerError::Rpc(rpc) => rpc.into(),
        ManagerError::Node(e) => e.into(),
        other => Failure::new(other.code(), other.to_string()),
    }
}

/// Options of `new ConnectionManager(node, identity, options)`.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The node's user id.
    pub user_id: String,
    /// The node's device id.
    pub device_id: String,
    /// Most connections kept (default 30).
    pub max_connections: Option<u32>,
    /// Path kinds in order of preference, best first (default `['wss', 'ws', 'webrtc',
    /// 'relay']`); `memory` is also known.
    pub path_preference: Option<Vec<String>>,
}

/// Options of `manager.enableWebrtcUpgrade(options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// Settings of each WebRTC link.
    pub webrtc: Option<WebRtcOptions>,
    /// Upgrade on its own (default true); false: only `upgrade(deviceId)` starts one.
    pub automatic: Option<bool>,
    /// Longest time from the offer to a verified connection (default 20 000 ms).
    pub open_timeout_ms: Option<f64>,
}

/// Something that happened to the manager's connections (`type`: `added`, `pathChanged`,
/// `removed`, `groupReady`, `groupReadyFailed`, `iceRestarting`, `iceRestarted`,
/// `hubChanged`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
#[allow(unreachable_pub)] // a JS type: only ever passed out to callbacks
pub struct ManagerEventInfo {
    /// The kind of event.
    #[napi(js_name = "type")]
    pub kind: String,
    /// The remote device (every event but `hubChanged`).
    pub device_id: Option<String>,
    /// The connection concerned (for `pathChanged` the new one).
    pub connection_id: Option<f64>,
    /// `pathChanged`: the previous link kind.
    pub from: Option<String>,
    /// `pathChanged`: the new link kind; `added`: the link kind.
    pub transport_kind: Option<String>,
    /// Group events: the group.
    pub group_id: Option<String>,
    /// `hubChanged`: the hub's device id (absent: the group is mesh-sized again).
    pub hub: Option<String>,
}

fn event_info(event: ManagerEvent) -> Option<ManagerEventInfo> {
    let mut info = ManagerEventInfo::default();
    match event {
        ManagerEvent::Added {
            device_id,
            connection,
        } => {
            info.kind = "added".into();
            info.device_id = Some(device_id);
            info.connection_id = Some(connection.id() as f64);
            info.transport_kind = Some(connection.transport_kind().as_str().to_owned());
        }
        ManagerEvent::PathChanged {
            device_id,
            from,
            connection,
        } => {
            info.kind = "pathChanged".into();
            info.device_id = Some(device_id);
            info.from = Some(from.as_str().to_owned());
            info.connection_id = Some(connection.id() as f64);
            info.transport_kind = Some(connection.transport_kind().as_str().to_owned());
        }
        ManagerEvent::Removed {
            device_id,
            connection_id,
        } => {
            info.kind = "removed".into();
            info.device_id = Some(device_id);
            info.connection_id = Some(connection_id as f64);
        }
        ManagerEvent::GroupReady {
            device_id,
            group_id,
        } => {
            info.kind = "groupReady".into();
            info.device_id = Some(device_id);
            info.group_id = Some(group_id);
        }
        ManagerEvent::GroupReadyFailed {
            device_id,
            group_id,
        } => {
            info.kind = "groupReadyFailed".into();
            info.device_id = Some(device_id);
            info.group_id = Some(group_id);
        }
        ManagerEvent::IceRestarting {
            device_id,
            connection_id,
        } => {
            info.kind = "iceRestarting".into();
            info.device_id = Some(device_id);
            info.connection_id = Some(connection_id as f64);
        }
        ManagerEvent::IceRestarted {
            device_id,
            connection_id,
        } => {
            info.kind = "iceRestarted".into();
            info.device_id = Some(device_id);
            info.connection_id = Some(connection_id as f64);
        }
        ManagerEvent::HubChanged { group_id, hub } => {
            info.kind = "hubChanged".into();
            info.group_id = Some(group_id);
            info.hub = hub;
        }
        _ => return None,
    }
    Some(info)
}

type EventCallback = JsCallback<ManagerEventInfo, ManagerEventInfo>;

/// Options of `manager.sendDeviceMessage(…)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct DeviceMessageOptions {
    /// Hop budget (default 5, at most 255).
    pub ttl: Option<u32>,
}

/// What `sendDeviceMessage` resolves with.
#[napi(object)]
#[allow(unreachable_pub)] // a JS type: only ever passed out
pub struct DeviceMessageResult {
    /// `'200'` delivered, `'404'` no route or no handler, `'503'` a device on the path could
    /// not take it now, `'TTL0'` the hop budget ran out, `'rejected'` refused (bad signature,
    /// bad fields or a duplicate).
    pub status: String,
    /// The relays the message passed, ending with the device that answered.
    pub hops: Vec<String>,
    /// The target handler's answer (empty unless delivered).
    pub payload: napi::bindgen_prelude::Buffer,
}

/// A verified device message, as the `onDeviceMessage` handler receives it.
#[napi(object)]
#[allow(unreachable_pub)] // a JS type: only ever passed out to callbacks
pub struct DeviceMessageInfo {
    /// Unique id chosen by the sender.
    pub device_message_id: String,
    /// The sender's device id (its signature was checked).
    pub from_device_id: String,
    /// The target device id; empty for a broadcast within the group.
    pub to_device_id: String,
    /// The group (data context) the message belongs to.
    pub data_context_id: String,
    /// Hops left.
    pub ttl: u32,
    /// The application bytes.
    pub payload: napi::bindgen_prelude::Buffer,
    /// Device ids of the relays it passed, in order.
    pub hops: Vec<String>,
}

impl From<DeviceMessage> for DeviceMessageInfo {
    fn from(m: DeviceMessage) -> Self {
        Self {
            device_message_id: m.device_message_id,
            from_device_id: m.from_device_id,
            to_device_id: m.to_device_id,
            data_context_id: m.data_context_id,
            ttl: u32::from(m.ttl),
            payload: m.payload.into(),
            hops: m.hops,
        }
    }
}

type MessageCallback = JsCallback<DeviceMessage, DeviceMessageInfo>;

/// The answer of a device-message handler: its bytes, or a delivery status.
fn message_answer(env: sys::napi_env, value: sys::napi_value) -> Result<Vec<u8>, DeliveryStatus> {
    match crate::value::byte_view(env, value) {
        Ok(Some(bytes)) => Ok(bytes.to_vec()),
        _ if crate::value::is_nullish(env, value) => Ok(Vec::new()),
        _ => {
            tracing::warn!("a device-message handler must return a Buffer, Uint8Array or nothing");
            Err(DeliveryStatus::Unavailable)
        }
    }
}

/// A throw or rejection answers `404` when the error's `code` is `'404'`, else `503`.
fn message_failure(thrown: Thrown) -> Result<Vec<u8>, DeliveryStatus> {
    match thrown.code.as_deref() {
        Some("404") => Err(DeliveryStatus::NotFound),
        _ => {
            tracing::debug!(message = %thrown.message, "a device-message handler failed");
            Err(DeliveryStatus::Unavailable)
        }
    }
}

/// One device's outcome in `broadcast`: `value` when its call succeeded, else `error`.
struct BroadcastResults(Vec<(String, Result<Bytes, Failure>)>);

impl ToJs for BroadcastResults {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        use crate::value;
        let raw = env.raw();
        let internal = |e: value::ValueError| Failure::new("internal", e.0);
        let array = value::array(raw).map_err(internal)?;
        for (i, (device_id, result)) in self.0.into_iter().enumerate() {
            let item = value::object(raw).map_err(internal)?;
            let id = value::string(raw, &device_id).map_err(internal)?;
            value::set_own(raw, item, "deviceId", id).map_err(internal)?;
            match result {
                Ok(bytes) => {
                    let decoded = JsMsgpack(bytes).to_js(env)?;
                    value::set_own(raw, item, "value", decoded).map_err(internal)?;
                }
                Err(failure) => {
                    let error = failure.to_js(raw);
                    if error.is_null() {
                        return Err(Failure::new("internal", "cannot create an error"));
                    }
                    value::set_own(raw, item, "error", error).map_err(internal)?;
                }
            }
            value::set_element(raw, array, i as u32, item).map_err(internal)?;
        }
        Ok(array)
    }
}

fn ignore_result(_: sys::napi_env, _: sys::napi_value) {}

fn log_failure(thrown: crate::bridge::Thrown) {
    tracing::warn!(message = %thrown.message, "a manager event callback failed");
}

/// A device's role in a group's broadcast tree (`manager.hubRole(groupId)`).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct HubRoleInfo {
    /// `mesh`, `hub`, `spoke` or `alone`.
    pub role: String,
    /// `spoke`: the hub's device id.
    pub hub: Option<String>,
}

impl HubRoleInfo {
    fn new(role: &str, hub: Option<String>) -> Self {
        Self {
            role: role.to_owned(),
            hub,
        }
    }
}

/// Keeps one connection per remote device of a node (the better path wins; the old one
/// drains), calls devices by id, runs groups and upgrades links to direct WebRTC.
#[napi]
pub struct ConnectionManager {
    inner: peerlink::manager::ConnectionManager,
    subscriptions: Mutex<Vec<AbortHandle>>,
    /// The JS device-message handler; emptied by `close()`.
    message_handler: Arc<Mutex<Option<Arc<MessageCallback>>>>,
}

#[napi]
impl ConnectionManager {
    /// Starts managing `node`'s connections (current and future). `identity` must be the
    /// node's: it signs device messages.
    #[napi(constructor)]
    pub fn new(
        node: &Node,
        identity: &Identity,
        options: ManagerOptions,
    ) -> Result<Self, napi::Error<String>> {
        let mut config = ManagerConfig::default();
        if let Some(max) = options.max_connections {
            config.max_connections = max as usize;
        }
        if let Some(paths) = options.path_preference {
            config.path_preference = paths
                .iter()
                .map(|p| {
                    [
                        PathKind::Wss,
                        PathKind::Ws,
                        PathKind::WebRtc,
                        PathKind::Relay,
                        PathKind::Memory,
                    ]
                    .into_iter()
                    .find(|k| k.as_str() == p)
                    .ok_or_else(|| {
                        sync_error("invalid_argument", format!("unknown path kind {p:?}"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let _runtime = peerlink::runtime::handle().enter();
        let inner = peerlink::manager::ConnectionManager::new(
            node.inner.clone(),
            identity.inner.clone(),
            options.user_id,
            options.device_id,
            config,
        )
        .map_err(|e| sync_error(e.code(), e))?;
        Ok(Self {
            inner,
            subscriptions: Mutex::new(Vec::new()),
            message_handler: Arc::new(Mutex::new(None)),
        })
    }

    /// This device's id.
    #[napi(getter)]
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_owned()
    }

    /// Devices with a current connection.
    #[napi]
    pub fn connected_devices(&self) -> Vec<String> {
        self.inner.connected_devices()
    }

    /// The current connection to `deviceId`, or `null`.
    #[napi]
    pub fn connection(&self, device_id: String) -> Option<Connection> {
        self.inner.connection(&device_id).map(Connection::from)
    }

    /// Dials a WebSocket URL and adds the connection.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn dial(&self, env: Env, url: String) -> napi::Result<sys::napi_value> {
        let manager = self.inner.clone();
        promise(&env, async move {
            let connection = manager.dial(&url).await.map_err(manager_failure)?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// Calls `name` on device `deviceId`'s current connection.
    #[napi(
        ts_args_type = "deviceId: string, name: string, args?: unknown",
        ts_return_type = "Promise<any>"
    )]
    pub fn call(
        &self,
        env: Env,
        device_id: String,
        name: String,
        args: Option<Unknown<'_>>,
    ) -> napi::Result<sys::napi_value> {
        let body = encode_args(&env, args);
        let manager = self.inner.clone();
        promise(&env, async move {
            let reply = manager
                .call_raw(&device_id, &name, body?)
                .await
                .map_err(manager_failure)?;
            Ok(JsMsgpack(reply))
        })
    }

    /// Calls `name` on every current connection at once. Resolves with one entry per device,
    /// `{ deviceId, value }` or `{ deviceId, error }` (an `Error` with a `code`); it does not
    /// reject because one device failed.
    #[napi(
        ts_args_type = "name: string, args?: unknown",
        ts_return_type = "Promise<Array<{ deviceId: string, value?: any, error?: Error & { code: string } }>>"
    )]
    pub fn broadcast(
        &self,
        env: Env,
        name: String,
        args: Option<Unknown<'_>>,
    ) -> napi::Result<sys::napi_value> {
        let body = encode_args(&env, args);
        let manager = self.inner.clone();
        promise(&env, async move {
            let body = body?;
            let devices = manager.connected_devices();
            let calls = devices
                .iter()
                .map(|device| manager.call_raw(device, &name, body.clone()));
            let results = futures_util::future::join_all(calls).await;
            Ok(BroadcastResults(
                devices
                    .into_iter()
                    .zip(results)
                    .map(|(device, r)| (device, r.map_err(manager_failure)))
                    .collect(),
            ))
        })
    }

    /// Sends a signed device message to `toDeviceId` (empty: every device of the group
    /// `dataContextId`), relayed through other devices when there is no direct connection.
    /// `payload` is bytes (MessagePack by convention). Resolves with the delivery status, the
    /// hops taken and the target's answer.
    #[napi(
        ts_args_type = "toDeviceId: string, dataContextId: string, payload: Uint8Array, options?: DeviceMessageOptions",
        ts_return_type = "Promise<DeviceMessageResult>"
    )]
    pub fn send_device_message(
        &self,
        env: Env,
        to_device_id: String,
        data_context_id: String,
        payload: Unknown<'_>,
        options: Option<DeviceMessageOptions>,
    ) -> napi::Result<sys::napi_value> {
        let payload = bytes_arg(&env, &payload);
        let ttl = match options.and_then(|o| o.ttl) {
            None => Ok(DEFAULT_TTL),
            Some(ttl) => u8::try_from(ttl)
                .map_err(|_| Failure::new("invalid_argument", "ttl must be at most 255")),
        };
        let manager = self.inner.clone();
        promise(&env, async move {
            let result = manager
                .send_device_message_ttl(&to_device_id, &data_context_id, payload?.to_vec(), ttl?)
                .await
                .map_err(manager_failure)?;
            Ok(Native(DeviceMessageResult {
                status: result.status.code().to_owned(),
                hops: result.hops,
                payload: result.payload.into(),
            }))
        })
    }

    /// Sets the handler of device messages addressed to this device (or broadcast in one of
    /// its groups): `handler(message)` returns the answer's bytes (or nothing). A throw or
    /// rejection answers `'503'`, or `'404'` when the error's `code` is `'404'`. Released by
    /// `close()`; does not keep the process alive.
    #[napi(
        ts_args_type = "handler: (message: DeviceMessageInfo) => Uint8Array | null | undefined | Promise<Uint8Array | null | undefined>"
    )]
    pub fn on_device_message(
        &self,
        handler: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: MessageCallback = handler
            .build_threadsafe_function::<DeviceMessage>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(DeviceMessageInfo::from(ctx.value)))?;
        let callback = Arc::new(callback);
        *lock(&self.message_handler) = Some(Arc::clone(&callback));
        let slot = Arc::clone(&self.message_handler);
        self.inner
            .on_device_message(Arc::new(move |message: DeviceMessage| {
                let callback = lock(&slot).clone();
                Box::pin(async move {
                    let Some(callback) = callback else {
                        return Err(DeliveryStatus::NotFound);
                    };
                    call_js(&callback, message, message_answer, message_failure)
                        .await
                        .unwrap_or(Err(DeliveryStatus::NotFound))
                })
            }));
        Ok(())
    }

    /// Asks every connected device which devices it reaches now (the routes device messages
    /// take); the manager also does this after its pings.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn refresh_network_info(&self, env: Env) -> napi::Result<sys::napi_value> {
        let manager = self.inner.clone();
        promise(&env, async move {
            manager.refresh_network_info().await;
            Ok(())
        })
    }

    /// Joins group `groupId` (devices sharing it are asked `groupReady`).
    #[napi]
    pub fn add_group(&self, group_id: String) {
        self.inner.add_group(&group_id);
    }

    /// Leaves group `groupId`.
    #[napi]
    pub fn remove_group(&self, group_id: String) {
        self.inner.remove_group(&group_id);
    }

    /// Registers `handler(args, ctx)` as the group handler `name` of `groupId`: it answers
    /// `broadcastGroup(groupId, name, …)` from other members, now and later.
    #[napi(
        ts_args_type = "groupId: string, name: string, handler: (args: any, ctx: RequestContext) => unknown"
    )]
    pub fn expose_group(
        &self,
        group_id: String,
        name: String,
        handler_fn: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let handler =
            crate::handler::handler(crate::handler::handler_callback(&handler_fn, false)?, false);
        self.inner.expose_group(&group_id, &name, handler);
        Ok(())
    }

    /// Calls the group handler `name` on every other member of `groupId`: directly in a
    /// mesh-sized group, through the elected hub in a larger one. Resolves with the device ids
    /// whose handler ran (not retried: a broadcast sent while the hub fails may reach nobody).
    #[napi(
        ts_args_type = "groupId: string, name: string, args?: unknown",
        ts_return_type = "Promise<string[]>"
    )]
    pub fn broadcast_group(
        &self,
        env: Env,
        group_id: String,
        name: String,
        args: Option<Unknown<'_>>,
    ) -> napi::Result<sys::napi_value> {
        let body = encode_args(&env, args);
        let manager = self.inner.clone();
        promise(&env, async move {
            let body = body?;
            let value = rmpv::decode::read_value(&mut &body[..])
                .map_err(|e| Failure::new("encode", format!("cannot encode arguments: {e}")))?;
            let reached = manager
                .broadcast_group(&group_id, &name, &value)
                .await
                .map_err(manager_failure)?;
            Ok(Native(reached))
        })
    }

    /// Sets the roster of `groupId` (device ids): the hub is elected among its live members
    /// once the group is larger than a mesh.
    #[napi]
    pub fn set_group_members(&self, group_id: String, members: Vec<String>) {
        self.inner.set_group_members(&group_id, members);
    }

    /// This device's role in `groupId`'s broadcast tree: `{ role: 'mesh' | 'hub' | 'alone' }`
    /// or `{ role: 'spoke', hub }`.
    #[napi(ts_return_type = "{ role: 'mesh' | 'hub' | 'spoke' | 'alone', hub?: string }")]
    pub fn hub_role(&self, group_id: String) -> HubRoleInfo {
        use peerlink::core::manager::HubRole;
        match self.inner.hub_role(&group_id) {
            HubRole::Mesh => HubRoleInfo::new("mesh", None),
            HubRole::Hub => HubRoleInfo::new("hub", None),
            HubRole::Spoke { hub } => HubRoleInfo::new("spoke", Some(hub)),
            _ => HubRoleInfo::new("alone", None),
        }
    }

    /// Turns on the upgrade to direct WebRTC links, signalled over the current connection.
    #[napi]
    pub fn enable_webrtc_upgrade(
        &self,
        options: Option<UpgradeOptions>,
    ) -> Result<(), napi::Error<String>> {
        let options = options.unwrap_or_default();
        let webrtc = webrtc_config(options.webrtc).map_err(|f| sync_error(&f.code, f.message))?;
        let mut config = UpgradeConfig::new(webrtc);
        if let Some(automatic) = options.automatic {
            config.automatic = automatic;
        }
        if let Some(ms) = options.open_timeout_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(sync_error(
                    "invalid_argument",
                    "openTimeoutMs must be a positive number of milliseconds",
                ));
            }
            config.open_timeout = Duration::from_secs_f64(ms / 1000.0);
        }
        self.inner.enable_webrtc_upgrade(config);
        Ok(())
    }

    /// Opens a direct WebRTC link to `deviceId` (signalled over the current connection);
    /// it replaces the current path when it ranks better.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn upgrade(&self, env: Env, device_id: String) -> napi::Result<sys::napi_value> {
        let manager = self.inner.clone();
        promise(&env, async move {
            let connection = manager.upgrade(&device_id).await.map_err(manager_failure)?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// Calls `callback(event)` for every manager event. Does not keep the process alive;
    /// released by `close()`.
    #[napi(ts_args_type = "callback: (event: ManagerEventInfo) => void")]
    pub fn on_event(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: EventCallback = callback
            .build_threadsafe_function::<ManagerEventInfo>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(ctx.value))?;
        let mut events = self.inner.events();
        let task = peerlink::runtime::handle().spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(info) = event_info(event) {
                            call_js(&callback, info, ignore_result, log_failure).await;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        lock(&self.subscriptions).push(task.abort_handle());
        Ok(())
    }

    /// Stops the manager (connections stay open; close the node to end them) and releases
    /// the event callbacks.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        for task in std::mem::take(&mut *lock(&self.subscriptions)) {
            task.abort();
        }
        lock(&self.message_handler).take();
        self.inner.shutdown();
        promise(&env, async { Ok(()) })
    }

    /// `await using manager = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

impl Drop for ConnectionManager {
    fn drop(&mut self) {
        for task in std::mem::take(&mut *lock(&self.subscriptions)) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("device_id", &self.inner.device_id())
            .finish_non_exhaustive()
    }
}
