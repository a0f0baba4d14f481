//! A dashboard's panels as data: headline numbers, line and bar charts, a donut, a heatmap
//! and messages, with the words and numbers they show. The web turns them into markup; the
//! product decides what each panel holds and what it says when there is nothing to draw.

use super::Unit;

/// One panel of a region.
#[derive(Clone, Debug)]
pub enum Panel {
    /// A row of headline numbers, then a note (no header).
    Stats {
        id: String,
        stats: Vec<Stat>,
        note: String,
    },
    /// A titled panel: its header, then its blocks in order.
    Titled {
        id: String,
        title: String,
        subtitle: Option<String>,
        blocks: Vec<Block>,
    },
}

/// A headline number.
#[derive(Clone, Debug)]
pub struct Stat {
    /// The number as shown (`12,345`, `97.5%`).
    pub shown: String,
    /// The number as read by machines (tests, live updates), when it has one.
    pub raw: Option<String>,
    /// The words under it.
    pub label: String,
    /// Drawn in the failure colour.
    pub failed: bool,
}

impl Stat {
    /// A number without a raw value or label extras.
    pub fn new(shown: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            shown: shown.into(),
            raw: None,
            label: label.into(),
            failed: false,
        }
    }

    /// With its machine-readable value.
    pub fn raw(mut self, raw: impl Into<String>) -> Self {
        self.raw = Some(raw.into());
        self
    }

    /// Drawn in the failure colour.
    pub fn failed(mut self) -> Self {
        self.failed = true;
        self
    }
}

/// A part of a titled panel.
#[derive(Clone, Debug)]
pub enum Block {
    /// A big headline number.
    BigStat(Stat),
    Chart(Chart),
    /// Nothing to draw: the message, or the usual "no data in this range".
    Empty(Option<String>),
}

/// A colour by meaning; the web picks the hue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Primary,
    Success,
    Failed,
    Pending,
    Amount,
    /// The n-th colour of a palette for many series (wraps around).
    Palette(usize),
}

/// What runs along the x axis of a chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// The window's time buckets ([`super::Window::buckets`]).
    Buckets,
    /// The window's days ([`super::Window::days`]).
    Days,
}

/// One series of values along an [`Axis`], `None` where there is no value (a gap).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub tone: Tone,
    pub values: Vec<Option<f64>>,
}

impl Series {
    /// A series without gaps.
    pub fn new(name: impl Into<String>, tone: Tone, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            tone,
            values: values.into_iter().map(Some).collect(),
        }
    }
}

/// One row of horizontal bars: its label and a value per legend entry (stacked left to
/// right).
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    pub values: Vec<f64>,
    /// An extra tooltip line (e.g. the other measure of the row).
    pub note: Option<String>,
}

/// One slice of a donut.
#[derive(Clone, Debug)]
pub struct Slice {
    pub name: String,
    pub tone: Tone,
    pub value: f64,
}

/// A grid of cells, rows x columns.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Row labels (also the first half of a cell's name).
    pub rows: Vec<String>,
    /// Row keys for `data-row`.
    pub row_keys: Vec<String>,
    /// Column labels.
    pub columns: Vec<String>,
    /// Column names, the second half of a cell's name (`03:00–04:00 IST`).
    pub column_names: Vec<String>,
    /// values[row][column]; `None` where there can be no value (not yet happened).
    pub values: Vec<Vec<Option<f64>>>,
    /// Which column labels to write (every n-th).
    pub column_every: usize,
}

/// A chart; `label` is its accessible name.
#[derive(Clone, Debug)]
pub enum Chart {
    /// Lines (filled below when `area`).
    Line {
        label: String,
        x: Axis,
        series: Vec<Series>,
        unit: Unit,
        area: bool,
    },
    /// Vertical bars, the series stacked.
    StackedBars {
        label: String,
        x: Axis,
        series: Vec<Series>,
        unit: Unit,
    },
    /// Horizontal bars, one per row, `legend` naming each stacked value.
    HBars {
        label: String,
        rows: Vec<Row>,
        legend: Vec<(String, Tone)>,
        unit: Unit,
    },
    /// A donut with `caption` under the total in its middle.
    Donut {
        label: String,
        slices: Vec<Slice>,
        unit: Unit,
        caption: String,
    },
    Heatmap {
        label: String,
        heatmap: Heatmap,
        unit: Unit,
    },
}
