//! The Prometheus remote protocol: generated message types, snappy framing and
//! size caps. Knows nothing of HTTP frameworks or AWS.

/// Generated from `proto/*.proto` by `build.rs`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Remote-Write 2.0 messages (`io.prometheus.write.v2`), generated like [`pb`].
#[allow(clippy::all, missing_docs)]
pub mod pb_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

pub mod chunked;
pub mod codec;
pub mod view;
pub mod view_v2;
