//! Snappy + protobuf decoding of a remote-read body, as `/read` does it: never a panic,
//! and a body whose snappy header declares more than the cap is refused before any
//! allocation of that size (the handler answers it 413). The allocation-free validator
//! `/read` runs first (`read_request_counts`) accepts exactly what prost decodes, and
//! counts what prost builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use timestream_prometheus_connector::remote::codec::{decompress, CodecError};
use timestream_prometheus_connector::remote::pb::ReadRequest;
use timestream_prometheus_connector::remote::view::read_request_counts;

const LIMIT: usize = 1 << 20;

fn differential(raw: &[u8]) {
    match (read_request_counts(raw), ReadRequest::decode(raw)) {
        (Ok(c), Ok(r)) => {
            assert_eq!(c.queries, r.queries.len());
            assert_eq!(c.response_types, r.accepted_response_types.len());
            let m: usize = r.queries.iter().map(|q| q.matchers.len()).sum();
            assert_eq!(c.matchers, m);
        }
        (Err(e), Err(_)) => assert!(e.offset <= raw.len()),
        (c, r) => panic!("validator ok={} prost ok={}", c.is_ok(), r.is_ok()),
    }
}

fuzz_target!(|data: &[u8]| {
    differential(data);
    let declared = snap::raw::decompress_len(data).ok();
    match decompress(data, LIMIT) {
        Ok(raw) => {
            assert!(raw.len() <= LIMIT);
            differential(&raw);
        }
        Err(CodecError::TooLarge { declared: d, limit }) => {
            assert_eq!(Some(d), declared);
            assert!(d > limit);
        }
        Err(_) => assert!(declared.is_none_or(|d| d <= LIMIT)),
    }
});
