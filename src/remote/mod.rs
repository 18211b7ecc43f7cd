//! The Prometheus remote protocol: generated message types, snappy framing and
//! size caps. Knows nothing of HTTP frameworks or AWS.

/// Generated from `proto/*.proto` by `build.rs`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

pub mod chunked;
pub mod codec;
pub mod view;
