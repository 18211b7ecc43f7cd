//! Snappy (block format) + protobuf codecs for remote-write and remote-read bodies, with
//! the decompressed-size cap checked against the length the snappy block declares before
//! anything is allocated (a 20-byte body can declare 4 GiB).

use prost::Message;

use super::pb::WriteRequest;
use super::pb_v2;
use super::view::{ViewError, WindowLimits, WriteRequestView};
use super::view_v2::{self, BodyV2, RequestV2};

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a valid snappy block.
    #[error("the body is not snappy (block format) compressed data: {0}")]
    Snappy(String),
    /// Declared decompressed size over the limit.
    #[error("the body decompresses to {declared} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        declared: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Not a valid protobuf message.
    #[error("the body is not a valid protobuf {message}: {source}")]
    Protobuf {
        /// Expected message name.
        message: &'static str,
        /// Decoder error.
        source: ProtobufError,
    },
    /// Not a valid remote-write 2.0 `io.prometheus.write.v2.Request` (the decoder's own
    /// error: what, in which field, at which byte).
    #[error("the body is not a valid protobuf io.prometheus.write.v2.Request: {0}")]
    RemoteWrite2(#[from] view_v2::DecodeError),
}

/// What a protobuf decoder said.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// prost's error (tests, tools, `/read` after validation).
    #[error(transparent)]
    Prost(#[from] prost::DecodeError),
    /// The zero-copy view's error (field and byte offset).
    #[error(transparent)]
    View(#[from] ViewError),
}

/// Decompresses a snappy block, refusing it before allocation if it declares more than `limit`.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let declared =
        snap::raw::decompress_len(body).map_err(|e| CodecError::Snappy(e.to_string()))?;
    if declared > limit {
        return Err(CodecError::TooLarge { declared, limit });
    }
    let mut out = vec![0u8; declared];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| CodecError::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

/// Compresses into a snappy block.
pub fn compress(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// Decodes a snappy-compressed remote-write 1.0 `WriteRequest`.
pub fn decode_write_request(body: &[u8], limit: usize) -> Result<WriteRequest, CodecError> {
    let raw = decompress(body, limit)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| CodecError::Protobuf {
        message: "prometheus.WriteRequest",
        source: e.into(),
    })
}

/// Decodes an uncompressed remote-write 1.0 `WriteRequest` (from [`decompress`]) into a view
/// borrowing its strings; the same inputs are refused as by [`decode_write_request`] (with
/// the view's own error: a refused body is never decoded twice).
pub fn decode_write_request_view(raw: &[u8]) -> Result<WriteRequestView<'_>, CodecError> {
    WriteRequestView::decode(raw).map_err(|e| CodecError::Protobuf {
        message: "prometheus.WriteRequest",
        source: e.into(),
    })
}

/// Decodes an uncompressed remote-write 2.0 `io.prometheus.write.v2.Request` (from
/// [`decompress`]) into the same borrowed view as 1.0.
pub fn decode_write_request_v2(raw: &[u8]) -> Result<RequestV2<'_>, CodecError> {
    Ok(view_v2::decode(raw)?)
}

/// A decompressed remote-write body of either protocol, decoded a window of series at a
/// time ([`WriteBody::window`]) so that what the decoder and the planner keep per series
/// is bounded by the window, not by the body.
#[derive(Debug)]
pub enum WriteBody<'a> {
    /// Remote write 1.0.
    V1(&'a [u8]),
    /// Remote write 2.0, its framing and symbol table checked.
    V2(BodyV2<'a>),
}

/// One window of a [`WriteBody`].
#[derive(Debug)]
pub struct Window<'a> {
    /// The window's series.
    pub view: WriteRequestView<'a>,
    /// Exemplars in them (2.0; validated, not stored).
    pub exemplars: u64,
    /// Where the next window starts; `None` for the last one.
    pub next: Option<usize>,
}

impl<'a> WriteBody<'a> {
    /// A 1.0 body (nothing is checked until a window is decoded).
    pub fn v1(raw: &'a [u8]) -> Self {
        WriteBody::V1(raw)
    }

    /// A 2.0 body: its framing and symbol table are checked here.
    pub fn v2(raw: &'a [u8]) -> Result<Self, CodecError> {
        Ok(WriteBody::V2(BodyV2::new(raw)?))
    }

    /// The window that starts at byte `from`: 0, or the previous window's `next`.
    pub fn window(&self, from: usize, limits: WindowLimits) -> Result<Window<'a>, CodecError> {
        match self {
            WriteBody::V1(raw) => {
                let (view, next) =
                    WriteRequestView::decode_window(raw, from, limits).map_err(|e| {
                        CodecError::Protobuf {
                            message: "prometheus.WriteRequest",
                            source: e.into(),
                        }
                    })?;
                Ok(Window {
                    view,
                    exemplars: 0,
                    next,
                })
            }
            WriteBody::V2(body) => {
                let (req, next) = body.window(from, limits)?;
                Ok(Window {
                    view: req.view,
                    exemplars: req.exemplars,
                    next,
                })
            }
        }
    }
}

/// Encodes a `WriteRequest` the way Prometheus sends it (for tests and the load tool).
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    compress(&req.encode_to_vec())
}

/// The same data as a remote-write 2.0 request, laid out as Prometheus 3.x lays it out
/// (symbols interned in first-use order after `""`, refs packed), for tests, benchmarks
/// and the load tool. Metadata entries of 1.0 are per metric family and have no place in a
/// 2.0 series; they are dropped.
pub fn to_v2(req: &WriteRequest) -> pb_v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: std::collections::HashMap<String, u32> =
        std::collections::HashMap::from([(String::new(), 0)]);
    let mut sym = |s: &str| -> u32 {
        if let Some(&i) = index.get(s) {
            return i;
        }
        let i = symbols.len() as u32;
        symbols.push(s.to_string());
        index.insert(s.to_string(), i);
        i
    };
    let mut refs = |labels: &[super::pb::Label]| -> Vec<u32> {
        labels
            .iter()
            .flat_map(|l| [sym(&l.name), sym(&l.value)])
            .collect()
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|t| pb_v2::TimeSeries {
            labels_refs: refs(&t.labels),
            samples: t
                .samples
                .iter()
                .map(|s| pb_v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            // Fields 1–16 of the two Histogram messages have the same numbers and types.
            histograms: t
                .histograms
                .iter()
                .map(|h| {
                    pb_v2::Histogram::decode(h.encode_to_vec().as_slice())
                        .expect("same wire layout")
                })
                .collect(),
            exemplars: t
                .exemplars
                .iter()
                .map(|e| pb_v2::Exemplar {
                    labels_refs: refs(&e.labels),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
            metadata: None,
            created_timestamp: 0,
        })
        .collect();
    pb_v2::Request {
        symbols,
        timeseries,
    }
}

/// [`to_v2`], snappy-compressed: a remote-write 2.0 body.
pub fn encode_write_request_v2(req: &WriteRequest) -> Vec<u8> {
    compress(&to_v2(req).encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb::{Label, Sample, TimeSeries};

    #[test]
    fn round_trip() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.5,
                    timestamp: 7,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = encode_write_request(&req);
        assert_eq!(decode_write_request(&body, 1 << 20).unwrap(), req);
    }

    #[test]
    fn declared_length_checked_before_allocation() {
        // Varint 0xFFFFFFFF (4 GiB - 1) as the declared length, then garbage.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        match decompress(&body, 1 << 20) {
            Err(CodecError::TooLarge { declared, .. }) => assert_eq!(declared, 0xffff_ffff),
            other => panic!("{other:?}"),
        }
        let big = compress(&vec![0u8; 4096]);
        assert!(matches!(
            decompress(&big, 4095),
            Err(CodecError::TooLarge { .. })
        ));
        assert_eq!(decompress(&big, 4096).unwrap().len(), 4096);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_write_request(b"hello world", 1 << 20).is_err());
        assert!(decode_write_request(&[], 1 << 20).is_err());
        let not_proto = compress(&[0xff; 16]);
        assert!(matches!(
            decode_write_request(&not_proto, 1 << 20),
            Err(CodecError::Protobuf { .. })
        ));
    }
}
