//! Snappy + protobuf decoding of a remote-read body, as `/read` does it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use timestream_prometheus_connector::remote::codec::decompress;
use timestream_prometheus_connector::remote::pb::ReadRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = decompress(data, 1 << 20) {
        let _ = ReadRequest::decode(raw.as_slice());
    }
});
