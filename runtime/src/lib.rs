//! peerlink: device-to-device connections with verified identities, RPC and bulk data.
