//! The OpenTelemetry Python SDK as a reference implementation: its base-2
//! exponential histogram of given values, read by running
//! `tests/semconv/exponential_histogram.py` with the interpreter
//! `tests/semconv/ensure-venv.sh` prepares (it installs the SDK when missing).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::semconv::{reference_dir, reference_python};

/// An exponential histogram's buckets, with no zero count before the first
/// bucket or after the last (the SDK sends its whole backing array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExponentialShape {
    /// `None` without a bucket: then the scale says nothing, and SDKs differ
    /// (Go's, OBI's, and the agent keep the maximum, 20; Python's reports 0).
    pub scale: Option<i32>,
    pub zero_count: u64,
    pub offset: i32,
    pub bucket_counts: Vec<u64>,
}

impl ExponentialShape {
    /// The shape of buckets `counts` from `offset`, trimmed.
    pub fn new(scale: i32, zero_count: u64, offset: i32, counts: &[u64]) -> Self {
        let first = counts.iter().position(|c| *c > 0);
        let last = counts.iter().rposition(|c| *c > 0);
        let (offset, bucket_counts) = match (first, last) {
            (Some(first), Some(last)) => (offset + first as i32, counts[first..=last].to_vec()),
            _ => (0, Vec::new()),
        };
        Self {
            scale: (!bucket_counts.is_empty()).then_some(scale),
            zero_count,
            offset,
            bucket_counts,
        }
    }
}

/// The SDK's histogram of `values` (OBI's limits: 160 buckets, scale 20).
pub fn exponential_histogram(values: &[f64]) -> ExponentialShape {
    let python = reference_python();
    let mut child = Command::new(&python)
        .arg(reference_dir().join("exponential_histogram.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let input = serde_json::to_vec(values).unwrap_or_else(|e| panic!("values as JSON: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .unwrap_or_else(|e| panic!("the SDK script does not read its values: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the SDK script: {e}"));
    assert!(
        output.status.success(),
        "exponential_histogram.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the SDK script printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let int = |key: &str| {
        json[key]
            .as_i64()
            .unwrap_or_else(|| panic!("no {key} in {json}"))
    };
    let counts: Vec<u64> = json["bucket_counts"]
        .as_array()
        .unwrap_or_else(|| panic!("no bucket_counts in {json}"))
        .iter()
        .map(|c| c.as_u64().unwrap_or_else(|| panic!("bad count in {json}")))
        .collect();
    ExponentialShape::new(
        int("scale") as i32,
        int("zero_count") as u64,
        int("offset") as i32,
        &counts,
    )
}
