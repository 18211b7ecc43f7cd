//! Snappy + protobuf decoding of a remote-read body, as `/read` does it: never a panic,
//! and a body whose snappy header declares more than the cap is refused before any
//! allocation of that size (the handler answers it 413).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use timestream_prometheus_connector::remote::codec::{decompress, CodecError};
use timestream_prometheus_connector::remote::pb::ReadRequest;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let declared = snap::raw::decompress_len(data).ok();
    match decompress(data, LIMIT) {
        Ok(raw) => {
            assert!(raw.len() <= LIMIT);
            let _ = ReadRequest::decode(raw.as_slice());
        }
        Err(CodecError::TooLarge { declared: d, limit }) => {
            assert_eq!(Some(d), declared);
            assert!(d > limit);
        }
        Err(_) => assert!(declared.is_none_or(|d| d <= LIMIT)),
    }
});
