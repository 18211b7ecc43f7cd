//! STREAMED_XOR_CHUNKS: Prometheus' XOR chunk encoding (tsdb/chunkenc/xor.go)
//! and the remote-read frame format: `uvarint(len) ‖ CRC32-Castagnoli(msg) as
//! big-endian u32 ‖ msg`, msg = a marshalled `ChunkedReadResponse`.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use super::pb::{chunk::Encoding, Chunk, ChunkedReadResponse, ChunkedSeries, Label, Sample};

/// Prometheus cuts XOR chunks at 120 samples.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Prometheus' default `--storage.remote.read-max-bytes-in-frame`.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// MSB-first bit writer (chunkenc.bstream).
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 = need a new byte).
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, one: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if one {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    fn bits(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }
}

fn put_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.byte((x as u8) | 0x80);
        x >>= 7;
    }
    w.byte(x as u8);
}

fn put_varint(w: &mut BitWriter, x: i64) {
    put_uvarint(w, ((x << 1) ^ (x >> 63)) as u64);
}

/// XOR-encode up to [`MAX_SAMPLES_PER_CHUNK`] samples (time-ordered) exactly as
/// Prometheus' `XORChunk` appender does: 2-byte big-endian count, then the
/// bit stream.
pub fn encode_xor(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter {
        bytes: vec![0, 0],
        free: 0,
    };
    let n = samples.len().min(u16::MAX as usize);
    w.bytes[..2].copy_from_slice(&(n as u16).to_be_bytes());
    let (mut t, mut v, mut t_delta) = (0i64, 0f64, 0u64);
    let (mut leading, mut trailing) = (0xffu8, 0u8);
    for (i, s) in samples[..n].iter().enumerate() {
        match i {
            0 => {
                put_varint(&mut w, s.timestamp);
                w.bits(s.value.to_bits(), 64);
            }
            1 => {
                t_delta = s.timestamp.wrapping_sub(t) as u64;
                put_uvarint(&mut w, t_delta);
                xor_write(&mut w, s.value, v, &mut leading, &mut trailing);
            }
            _ => {
                let delta = s.timestamp.wrapping_sub(t) as u64;
                let dod = delta.wrapping_sub(t_delta) as i64;
                if dod == 0 {
                    w.bit(false);
                } else if bit_range(dod, 14) {
                    w.bits(0b10, 2);
                    w.bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    w.bits(0b110, 3);
                    w.bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    w.bits(0b1110, 4);
                    w.bits(dod as u64, 20);
                } else {
                    w.bits(0b1111, 4);
                    w.bits(dod as u64, 64);
                }
                t_delta = delta;
                xor_write(&mut w, s.value, v, &mut leading, &mut trailing);
            }
        }
        t = s.timestamp;
        v = s.value;
    }
    w.bytes
}

fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

fn xor_write(w: &mut BitWriter, new: f64, cur: f64, leading: &mut u8, trailing: &mut u8) {
    let delta = new.to_bits() ^ cur.to_bits();
    if delta == 0 {
        w.bit(false);
        return;
    }
    w.bit(true);
    let new_leading = (delta.leading_zeros() as u8).min(31);
    let new_trailing = delta.trailing_zeros() as u8;
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        w.bit(false);
        w.bits(
            delta >> *trailing,
            64 - u32::from(*leading) - u32::from(*trailing),
        );
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    w.bit(true);
    w.bits(u64::from(new_leading), 5);
    let sigbits = 64 - u32::from(new_leading) - u32::from(new_trailing);
    // 64 significant bits are written as 0 (6 bits); the reader maps 0 back to 64.
    w.bits(u64::from(sigbits), 6);
    w.bits(delta >> new_trailing, sigbits);
}

/// Cut time-ordered samples into XOR chunks of at most 120 samples.
pub fn chunks(samples: &[Sample]) -> Vec<Chunk> {
    samples
        .chunks(MAX_SAMPLES_PER_CHUNK)
        .map(|c| Chunk {
            min_time_ms: c[0].timestamp,
            max_time_ms: c[c.len() - 1].timestamp,
            r#type: Encoding::Xor as i32,
            data: Bytes::from(encode_xor(c)),
        })
        .collect()
}

/// One frame: uvarint length, big-endian CRC32C, message.
pub fn frame(msg: &ChunkedReadResponse) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(body.len() + 14);
    let mut len = body.len() as u64;
    while len >= 0x80 {
        out.put_u8((len as u8) | 0x80);
        len >>= 7;
    }
    out.put_u8(len as u8);
    out.put_u32(crc32c::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

/// Packs the series of one query into frames of at most [`MAX_FRAME_BYTES`], **one
/// series per frame**, as Prometheus' own server does: its remote-read client reads only
/// `chunked_series[0]` of each frame (storage/remote/codec.go), so a second series in a
/// frame would be lost silently. A series too large for one frame continues in the next
/// frames (labels repeated, later chunks), which the client merges because they are
/// consecutive.
pub struct FrameBuilder {
    query_index: i64,
    max_bytes: usize,
    pending: ChunkedReadResponse,
}

impl FrameBuilder {
    pub fn new(query_index: i64) -> FrameBuilder {
        FrameBuilder::with_limit(query_index, MAX_FRAME_BYTES)
    }

    pub fn with_limit(query_index: i64, max_bytes: usize) -> FrameBuilder {
        FrameBuilder {
            query_index,
            max_bytes,
            pending: ChunkedReadResponse {
                chunked_series: Vec::new(),
                query_index,
            },
        }
    }

    /// Add (a segment of) a series, time-ordered after what was pushed for it before;
    /// returns the frames that became complete.
    pub fn push(&mut self, labels: &[Label], samples: &[Sample]) -> Vec<Bytes> {
        let mut out = Vec::new();
        for chunk in chunks(samples) {
            // Field tag + length prefix of the chunk inside the series.
            let extra = chunk.encoded_len() + 1 + 5;
            let flush = match self.pending.chunked_series.first() {
                None => false,
                Some(s) if s.labels.as_slice() != labels => true,
                Some(_) => self.pending.encoded_len() + extra + 6 > self.max_bytes,
            };
            if flush {
                out.extend(self.flush());
            }
            match self.pending.chunked_series.first_mut() {
                Some(s) => s.chunks.push(chunk),
                None => self.pending.chunked_series.push(ChunkedSeries {
                    labels: labels.to_vec(),
                    chunks: vec![chunk],
                }),
            }
        }
        out
    }

    /// The pending frame, if any.
    pub fn flush(&mut self) -> Option<Bytes> {
        if self.pending.chunked_series.is_empty() {
            return None;
        }
        let msg = std::mem::replace(
            &mut self.pending,
            ChunkedReadResponse {
                chunked_series: Vec::new(),
                query_index: self.query_index,
            },
        );
        Some(frame(&msg))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Independent XOR decoder (tsdb/chunkenc xorIterator) for tests.
    pub(crate) fn decode_xor(data: &[u8]) -> Vec<Sample> {
        struct R<'a> {
            b: &'a [u8],
            pos: usize,
        }
        impl R<'_> {
            fn bit(&mut self) -> bool {
                let v = self.b[self.pos / 8] >> (7 - self.pos % 8) & 1;
                self.pos += 1;
                v == 1
            }
            fn bits(&mut self, n: u32) -> u64 {
                (0..n).fold(0, |acc, _| acc << 1 | u64::from(self.bit()))
            }
            fn uvarint(&mut self) -> u64 {
                let mut x = 0u64;
                let mut s = 0;
                loop {
                    let b = self.bits(8);
                    x |= (b & 0x7f) << s;
                    if b < 0x80 {
                        return x;
                    }
                    s += 7;
                }
            }
        }
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        let mut r = R {
            b: &data[2..],
            pos: 0,
        };
        let mut out = Vec::new();
        let (mut t, mut v, mut delta) = (0i64, 0u64, 0u64);
        let (mut leading, mut trailing) = (0u32, 0u32);
        for i in 0..n {
            if i == 0 {
                let u = r.uvarint();
                t = ((u >> 1) as i64) ^ -((u & 1) as i64);
                v = r.bits(64);
            } else {
                if i == 1 {
                    delta = r.uvarint();
                } else {
                    let mut prefix = 0;
                    while prefix < 4 && r.bit() {
                        prefix += 1;
                    }
                    let dod: i64 = match prefix {
                        0 => 0,
                        p => {
                            let nb = [0, 14, 17, 20, 64][p];
                            let mut x = r.bits(nb) as i64;
                            if nb != 64 && x > (1 << (nb - 1)) {
                                x -= 1 << nb;
                            }
                            x
                        }
                    };
                    delta = (delta as i64 + dod) as u64;
                }
                t += delta as i64;
                if r.bit() {
                    if r.bit() {
                        leading = r.bits(5) as u32;
                        let mut sig = r.bits(6) as u32;
                        if sig == 0 {
                            sig = 64;
                        }
                        trailing = 64 - leading - sig;
                    }
                    let sig = 64 - leading - trailing;
                    v ^= r.bits(sig) << trailing;
                }
            }
            out.push(Sample {
                timestamp: t,
                value: f64::from_bits(v),
            });
        }
        out
    }

    fn s(t: i64, v: f64) -> Sample {
        Sample {
            timestamp: t,
            value: v,
        }
    }

    #[test]
    fn xor_round_trips() {
        let cases: Vec<Vec<Sample>> = vec![
            vec![],
            vec![s(5, 1.0)],
            vec![s(-1000, -0.0), s(1000, f64::MAX)],
            (0..120)
                .map(|i| s(1_700_000_000_000 + i * 15_000, i as f64 * 0.1))
                .collect(),
            (0..120)
                .map(|i| {
                    s(
                        i * i * i * 997 - 40,
                        f64::from_bits((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    )
                })
                .collect(),
            vec![
                s(0, 1.0),
                s(1, 1.0),
                s(2, 1.0),
                s(i64::MAX / 4, f64::NAN),
                s(i64::MAX / 2, 2.0),
            ],
        ];
        for c in cases {
            let got = decode_xor(&encode_xor(&c));
            assert_eq!(got.len(), c.len());
            for (a, b) in got.iter().zip(&c) {
                assert_eq!(a.timestamp, b.timestamp);
                assert_eq!(a.value.to_bits(), b.value.to_bits());
            }
        }
    }

    #[test]
    fn matches_prometheus_golden_bytes() {
        // Appending (1000, 1.0), (2000, 1.0), (3000, 2.0) to chunkenc.NewXORChunk():
        // count 3; varint(1000)=d0 0f; 1.0 bits; uvarint(1000)=e8 07; '0' (same value);
        // dod 0 → '0'; value xor: '1','1', leading 1 (5 bits), sigbits 11 (6 bits), 0x7FF>>... .
        let b = encode_xor(&[s(1000, 1.0), s(2000, 1.0), s(3000, 2.0)]);
        assert_eq!(&b[..4], &[0, 3, 0xd0, 0x0f]);
        assert_eq!(&b[4..12], &1.0f64.to_bits().to_be_bytes());
        assert_eq!(&b[12..14], &[0xe8, 0x07]);
        assert_eq!(
            decode_xor(&b),
            vec![s(1000, 1.0), s(2000, 1.0), s(3000, 2.0)]
        );
    }

    #[test]
    fn chunks_hold_at_most_120_samples() {
        let samples: Vec<Sample> = (0..250).map(|i| s(i, i as f64)).collect();
        let c = chunks(&samples);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].min_time_ms, c[0].max_time_ms), (0, 119));
        assert_eq!((c[2].min_time_ms, c[2].max_time_ms), (240, 249));
        assert_eq!(decode_xor(&c[2].data).len(), 10);
    }

    fn unframe(mut b: &[u8]) -> Vec<ChunkedReadResponse> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (mut len, mut shift, mut k) = (0usize, 0, 0);
            loop {
                let x = b[k];
                len |= ((x & 0x7f) as usize) << shift;
                k += 1;
                if x < 0x80 {
                    break;
                }
                shift += 7;
            }
            let crc = u32::from_be_bytes(b[k..k + 4].try_into().unwrap());
            let msg = &b[k + 4..k + 4 + len];
            assert_eq!(crc, crc32c::crc32c(msg));
            out.push(ChunkedReadResponse::decode(msg).unwrap());
            b = &b[k + 4 + len..];
        }
        out
    }

    #[test]
    fn frames_respect_the_size_limit_and_keep_order() {
        let labels = |i: usize| {
            vec![Label {
                name: "__name__".into(),
                value: format!("m{i:04}"),
            }]
        };
        let mut fb = FrameBuilder::with_limit(7, 1024);
        let mut bytes = Vec::new();
        for i in 0..50 {
            let samples: Vec<Sample> = (0..(i * 37 % 400) as i64)
                .map(|t| s(t * 1000, t as f64 * 1.5))
                .collect();
            for f in fb.push(&labels(i), &samples) {
                bytes.extend_from_slice(&f);
            }
        }
        bytes.extend_from_slice(&fb.flush().unwrap_or_default());
        let frames = unframe(&bytes);
        assert!(frames.len() > 5);
        let mut seen: Vec<(String, usize)> = Vec::new();
        for f in &frames {
            assert_eq!(f.query_index, 7);
            assert!(f.encoded_len() <= 1024, "{}", f.encoded_len());
            // Prometheus' client reads chunked_series[0] only.
            assert_eq!(f.chunked_series.len(), 1, "one series per frame");
            for cs in &f.chunked_series {
                let n: usize = cs.chunks.iter().map(|c| decode_xor(&c.data).len()).sum();
                match seen.last_mut() {
                    Some((name, total)) if *name == cs.labels[0].value => *total += n,
                    _ => seen.push((cs.labels[0].value.clone(), n)),
                }
            }
        }
        let want: Vec<(String, usize)> = (0..50)
            .filter(|i| i * 37 % 400 > 0)
            .map(|i| (format!("m{i:04}"), i * 37 % 400))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_long_series_continues_in_consecutive_frames_in_time_order() {
        let labels = vec![Label {
            name: "__name__".into(),
            value: "long".into(),
        }];
        let other = vec![Label {
            name: "__name__".into(),
            value: "next".into(),
        }];
        let mut fb = FrameBuilder::with_limit(0, 2048);
        let mut bytes = Vec::new();
        // Pushed in segments, as the streaming reader does.
        let all: Vec<Sample> = (0..5000).map(|t| s(t * 15_000, (t as f64).sin())).collect();
        for seg in all.chunks(960) {
            for f in fb.push(&labels, seg) {
                bytes.extend_from_slice(&f);
            }
        }
        for f in fb.push(&other, &[s(1, 1.0)]) {
            bytes.extend_from_slice(&f);
        }
        bytes.extend_from_slice(&fb.flush().unwrap());
        let frames = unframe(&bytes);
        assert!(frames.len() > 3, "{} frames", frames.len());
        let (last, long) = frames.split_last().unwrap();
        assert_eq!(last.chunked_series[0].labels, other);
        let mut got = Vec::new();
        for f in long {
            assert_eq!(f.chunked_series.len(), 1);
            assert!(f.encoded_len() <= 2048);
            assert_eq!(f.chunked_series[0].labels, labels);
            for c in &f.chunked_series[0].chunks {
                let d = decode_xor(&c.data);
                assert_eq!(
                    (c.min_time_ms, c.max_time_ms),
                    (d[0].timestamp, d[d.len() - 1].timestamp)
                );
                got.extend(d);
            }
        }
        assert_eq!(got, all);
    }
}
