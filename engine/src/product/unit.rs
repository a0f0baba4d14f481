//! How a dashboard's values read: on axes (short) and in tooltips and labels (in full).
//! Plain formatting, so a product can write numbers into its labels the way the charts do.

/// How values read: on axes (short) and in tooltips (in full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things: `12.3k` on axes, `12,345` in tooltips.
    Count,
    /// Indian rupees: `₹12.3L` / `₹1.2Cr` on axes, `₹12,34,567.89` in tooltips.
    Rupees,
    /// A rate: like `Count`, one decimal below 10.
    Rate,
}

impl Unit {
    /// On an axis: `12.3k`, `₹1.5L`.
    pub fn short(self, v: f64) -> String {
        let v = v + 0.0; // no "-0"
        match self {
            Unit::Rupees => {
                let a = v.abs();
                let s = if a >= 1e7 {
                    format!("{}Cr", trim(v / 1e7))
                } else if a >= 1e5 {
                    format!("{}L", trim(v / 1e5))
                } else if a >= 1e3 {
                    format!("{}k", trim(v / 1e3))
                } else {
                    trim(v)
                };
                format!("₹{s}")
            }
            Unit::Count | Unit::Rate => {
                let a = v.abs();
                if a >= 1e9 {
                    format!("{}G", trim(v / 1e9))
                } else if a >= 1e6 {
                    format!("{}M", trim(v / 1e6))
                } else if a >= 1e3 {
                    format!("{}k", trim(v / 1e3))
                } else {
                    trim(v)
                }
            }
        }
    }

    /// In full: `12,345`, `₹12,34,567.89`.
    pub fn full(self, v: f64) -> String {
        let v = v + 0.0; // no "-0"
        match self {
            Unit::Count => group(v.round() as i128),
            Unit::Rate if v.abs() < 10.0 => format!("{v:.1}"),
            Unit::Rate => group(v.round() as i128),
            Unit::Rupees => {
                let paise = (v * 100.0).round() as i128;
                let s = format!(
                    "₹{}.{:02}",
                    group_indian(paise.abs() / 100),
                    paise.abs() % 100
                );
                if paise < 0 { format!("-{s}") } else { s }
            }
        }
    }
}

/// At most one decimal, none when it is zero: `1.5`, `2`, `0.3`.
fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `1234567` -> `1,234,567`.
fn group(v: i128) -> String {
    let digits = v.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

/// Indian grouping: `1234567` -> `12,34,567`.
fn group_indian(v: i128) -> String {
    let digits = v.to_string();
    if digits.len() <= 3 {
        return digits;
    }
    let (head, last3) = digits.split_at(digits.len() - 3);
    let mut out = String::new();
    for (i, c) in head.chars().enumerate() {
        if i > 0 && (head.len() - i).is_multiple_of(2) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out},{last3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(Unit::Count.full(1_234_567.0), "1,234,567");
        assert_eq!(Unit::Count.short(12_300.0), "12.3k");
        assert_eq!(Unit::Count.short(2_000_000.0), "2M");
        assert_eq!(Unit::Rupees.full(1_234_567.891), "₹12,34,567.89");
        assert_eq!(Unit::Rupees.full(999.5), "₹999.50");
        assert_eq!(Unit::Rupees.short(25_000_000.0), "₹2.5Cr");
        assert_eq!(Unit::Rupees.short(150_000.0), "₹1.5L");
        assert_eq!(Unit::Rate.full(2.25), "2.2");
    }
}
