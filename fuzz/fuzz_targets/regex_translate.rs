//! RE2 → Java translation of arbitrary patterns: never a panic, and the "matches the
//! empty string" answer agrees with the regex crate whenever both accept the pattern
//! and the regex crate reads it like RE2 (no escapes, no nested or set-operation
//! bracket classes, where the two syntaxes differ).
#![no_main]

use libfuzzer_sys::fuzz_target;
use timestream_prometheus_connector::read::regex::{translate, RegexOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = translate(p, RegexOptions::default()) else {
        return;
    };
    let re2_like = !p.contains('\\') && p.matches('[').count() <= 1;
    if re2_like {
        if let Ok(r) = regex::Regex::new(&format!("^(?s:{p})$")) {
            assert_eq!(t.matches_empty, r.is_match(""), "{p:?}");
        }
    }
});
