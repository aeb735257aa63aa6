//! Aligned text tables like `kubectl`'s, and the number formats the CLI prints. Pure:
//! returns strings.

/// Spaces between columns.
const GAP: usize = 3;

/// Left-aligned columns, each as wide as its widest cell plus a gap of three spaces; no
/// trailing spaces; one `\n` after every row.
pub(crate) fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] + GAP - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A header row from string literals.
pub(crate) fn cells(s: &[&str]) -> Vec<String> {
    s.iter().map(|c| (*c).to_owned()).collect()
}

/// The cell for a missing value.
pub(crate) fn dash() -> String {
    "-".to_owned()
}

/// `0.9876` -> `98.76%`.
pub(crate) fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

/// Requests per second with one decimal (`20.0`).
pub(crate) fn rate(rps: f64) -> String {
    format!("{rps:.1}")
}

/// Seconds as milliseconds with precision that fits the magnitude (`0.42ms`, `3.1ms`,
/// `61ms`, `1.20s`).
pub(crate) fn latency(secs: f64) -> String {
    let ms = secs * 1000.0;
    // Thresholds just below each power of ten, so that rounding never prints `10.0ms`.
    if ms < 0.995 {
        format!("{ms:.2}ms")
    } else if ms < 9.95 {
        format!("{ms:.1}ms")
    } else if ms < 999.5 {
        format!("{ms:.0}ms")
    } else {
        format!("{secs:.2}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(percent(0.98765), "98.77%");
        assert_eq!(rate(2.25), "2.2");
        assert_eq!(latency(0.00042), "0.42ms");
        assert_eq!(latency(0.0031), "3.1ms");
        assert_eq!(latency(0.061), "61ms");
        assert_eq!(latency(1.2), "1.20s");
        assert_eq!(latency(0.000999), "1.0ms");
        assert_eq!(latency(0.00999), "10ms");
        assert_eq!(latency(0.9996), "1.00s");
    }

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let rows = vec![
            cells(&["NAME", "RPS"]),
            vec!["converter".into(), "1.0".into()],
            vec!["web".into(), dash()],
            vec!["é".into(), String::new()],
        ];
        assert_eq!(
            align(&rows),
            "NAME        RPS\nconverter   1.0\nweb         -\né\n"
        );
    }
}
