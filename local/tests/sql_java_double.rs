//! DOUBLE rendering versus Java's `Double.toString` (what Timestream's Java/boto clients see).
//! Both must parse back to the identical f64. Where the strings differ, ours must not be
//! longer: JDK ≤ 18 sometimes printed more digits than needed (fixed by JDK-4511638 in JDK 19),
//! and ours follows the JDK 19+ specification (which also picks the closest two-digit form for
//! subnormals such as 9.9E-324 where JDK 17 prints 1.0E-323). Skips without a JDK.

#[path = "../../tests/support/tools.rs"]
mod tools;

use rusqlite::types::ValueRef;
use std::io::Write;
use std::process::{Command, Stdio};
use timestream_local::sql::{render, Datum, ScalarType};

const JAVA: &str = r#"
import java.io.*;
public class DoubleOracle {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        StringBuilder out = new StringBuilder();
        String line;
        while ((line = in.readLine()) != null) {
            out.append(Double.toString(Double.longBitsToDouble(Long.parseUnsignedLong(line, 16)))).append('\n');
        }
        System.out.print(out);
    }
}
"#;

fn ours(x: f64) -> String {
    match render(ScalarType::Double, ValueRef::Real(x)) {
        Datum::Scalar(s) => s,
        Datum::Null => panic!("finite double rendered as NULL"),
    }
}

fn corpus() -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        0.1,
        1.0,
        35.0,
        -1.5,
        5e-324,
        1e-323,
        2.225_073_858_507_201e-308,
        1e-300,
        1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        9_007_199_254_740_993.0,
        123_456_789.123,
        0.001,
        0.000_999_999,
        9_999_999.999,
        10_000_000.0,
        1e23,
        2e-3,
        1_655_487_883.771_000_1,
    ];
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..3000 {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = match i % 3 {
            0 => f64::from_bits(s),
            1 => (s >> 11) as f64 / (1u64 << 40) as f64 * 10f64.powi((i % 25) - 12),
            _ => ((s >> 40) as f64) / 1000.0,
        };
        if x.is_finite() {
            v.push(x);
        }
    }
    v
}

#[test]
fn doubles_match_java_or_are_shorter() {
    if !tools::require_jdk("the Double.toString cross-check") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DoubleOracle.java"), JAVA).unwrap();
    let st = Command::new("javac")
        .arg("DoubleOracle.java")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let xs = corpus();
    let input: String = xs.iter().map(|x| format!("{:x}\n", x.to_bits())).collect();
    let mut child = Command::new("java")
        .args(["-cp", ".", "DoubleOracle"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let java: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(java.len(), xs.len());
    let mut same = 0;
    for (x, j) in xs.iter().zip(&java) {
        let o = ours(*x);
        assert_eq!(o.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{o}");
        assert_eq!(j.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{j}");
        if o == *j {
            same += 1;
        } else {
            let digits = |s: &str| {
                let m = s.split('E').next().unwrap_or(s);
                m.trim_start_matches('-')
                    .trim_start_matches(['0', '.'])
                    .chars()
                    .filter(char::is_ascii_digit)
                    .count()
            };
            assert!(
                digits(&o) <= digits(j),
                "{x:e}: ours {o}, Java {j} (ours must only differ by being no longer)"
            );
            // Same layout (plain vs. E notation) as Java.
            assert_eq!(o.contains('E'), j.contains('E'), "{o} vs {j}");
        }
    }
    assert!(
        same * 10 > xs.len() * 9,
        "only {same} of {} identical",
        xs.len()
    );
}
