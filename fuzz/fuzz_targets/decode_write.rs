//! Snappy + protobuf decoding of a remote-write body: never a panic, and a body whose
//! snappy header declares more than the cap is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timestream_prometheus_connector::remote::codec::{decode_write_request, CodecError};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let declared = snap::raw::decompress_len(data).ok();
    let r = decode_write_request(data, LIMIT);
    if declared.is_some_and(|d| d > LIMIT) {
        assert!(matches!(r, Err(CodecError::TooLarge { .. })));
    }
});
