//! A product's Prometheus metric families as data; the web encodes them (text exposition)
//! after the orchestrator's own.

/// One metric family: its descriptor and its samples.
#[derive(Clone, Debug)]
pub struct MetricFamily {
    /// The name without the `_total` a counter's samples get when encoded.
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    /// Zero or more samples; a family without samples is still described.
    pub samples: Vec<Sample>,
}

/// The metric types a product reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
}

/// One sample: its labels (in order) and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: MetricValue,
}

/// A sample's value, integral or not (they are written differently: `5` and `5.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricValue {
    Int(i64),
    Float(f64),
}
