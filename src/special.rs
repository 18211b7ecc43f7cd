//! The reserved encoding of sample values a Timestream DOUBLE cannot hold: NaN (with its
//! payload bits, so Prometheus' staleness marker survives), +Inf and -Inf. Shared by the
//! write planner and the read path; the design and what SQL users see are in
//! `documentation/special-values.md`.
//!
//! A special sample is a record with the reserved measure name [`MEASURE_NAME`], the
//! series' labels as dimensions plus the metric name in the dimension [`NAME_DIMENSION`]
//! (`__name__`: Prometheus reserves label names starting with `__`, and `__name__` itself
//! always becomes the measure name, so no label can collide with it), and a VARCHAR value
//! from [`encode`]. The metric's own measure keeps only numbers, so SQL over
//! `measure_value::double` answers exactly as before.

/// Measure name of every special-value record.
pub const MEASURE_NAME: &str = "__special_value__";
/// Dimension holding the metric name of a special-value record.
pub const NAME_DIMENSION: &str = "__name__";
/// Prometheus' staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Prometheus' ordinary NaN (`value.NormalNaN`, Go's `math.NaN()`).
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// What a special value is, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A NaN other than the staleness marker (any payload).
    Nan = 0,
    /// Prometheus' staleness marker.
    StaleNan,
    /// +Inf.
    PosInf,
    /// -Inf.
    NegInf,
}

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; 4] = [Kind::Nan, Kind::StaleNan, Kind::PosInf, Kind::NegInf];

    /// The kind of a non-finite value (None for a finite one).
    pub fn of(v: f64) -> Option<Kind> {
        if v.is_finite() {
            None
        } else if v.to_bits() == STALE_NAN_BITS {
            Some(Kind::StaleNan)
        } else if v.is_nan() {
            Some(Kind::Nan)
        } else if v > 0.0 {
            Some(Kind::PosInf)
        } else {
            Some(Kind::NegInf)
        }
    }

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nan => "nan",
            Kind::StaleNan => "stale_nan",
            Kind::PosInf => "pos_inf",
            Kind::NegInf => "neg_inf",
        }
    }
}

/// The stored text of a non-finite value: `+Inf`, `-Inf`, `StaleNaN`, `NaN` (Prometheus'
/// NaN, 0x7ff8000000000001) or, for any other NaN, `NaN:0x` and its 16 hex digits.
/// Writes what the value is in words a SQL user can read; every bit is kept.
pub fn encode(v: f64) -> std::borrow::Cow<'static, str> {
    let bits = v.to_bits();
    match bits {
        STALE_NAN_BITS => "StaleNaN".into(),
        NORMAL_NAN_BITS => "NaN".into(),
        _ if v.is_nan() => format!("NaN:0x{bits:016x}").into(),
        _ if v == f64::INFINITY => "+Inf".into(),
        _ if v == f64::NEG_INFINITY => "-Inf".into(),
        // Not reached for non-finite input; kept total so a caller's mistake stays readable.
        _ => format!("{v}").into(),
    }
}

/// The value [`encode`] wrote (None for any other text).
pub fn decode(s: &str) -> Option<f64> {
    Some(match s {
        "StaleNaN" => f64::from_bits(STALE_NAN_BITS),
        "NaN" => f64::from_bits(NORMAL_NAN_BITS),
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => {
            let hex = s.strip_prefix("NaN:0x")?;
            if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let v = f64::from_bits(u64::from_str_radix(hex, 16).ok()?);
            // Only NaNs travel this way; anything else is not ours.
            v.is_nan().then_some(v)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn named_values() {
        assert_eq!(encode(f64::from_bits(STALE_NAN_BITS)), "StaleNaN");
        assert_eq!(encode(f64::from_bits(NORMAL_NAN_BITS)), "NaN");
        assert_eq!(encode(f64::INFINITY), "+Inf");
        assert_eq!(encode(f64::NEG_INFINITY), "-Inf");
        // Rust's NaN is not Prometheus' NaN: its payload is kept.
        assert_eq!(encode(f64::NAN), "NaN:0x7ff8000000000000");
        assert_eq!(encode(-f64::NAN), "NaN:0xfff8000000000000");
        assert_eq!(
            Kind::of(f64::from_bits(STALE_NAN_BITS)),
            Some(Kind::StaleNan)
        );
        assert_eq!(Kind::of(f64::NAN), Some(Kind::Nan));
        assert_eq!(Kind::of(f64::NEG_INFINITY), Some(Kind::NegInf));
        assert_eq!(Kind::of(1.0), None);
        for bad in [
            "",
            "nan",
            "Inf",
            "NaN:0x7ff000000000000",
            "NaN:0x3ff0000000000000",
            "NaN:0x7ff0000000000000",
            "NaN:0x+ff8000000000001",
        ] {
            assert_eq!(decode(bad).map(f64::to_bits), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_non_finite_bit_pattern_round_trips(bits in any::<u64>()) {
            // Put the random payload into the NaN/Inf exponent range.
            let bits = bits | 0x7ff0_0000_0000_0000;
            let v = f64::from_bits(bits);
            let text = encode(v);
            prop_assert_eq!(decode(&text).map(f64::to_bits), Some(bits), "{}", text);
        }
    }
}
