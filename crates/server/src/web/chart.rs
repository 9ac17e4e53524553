//! Small horizontal bar charts, laid out here and drawn as SVG by the
//! templates (no script, no vendored library): each bar is a link to the
//! list it counts.

use serde::Serialize;

/// One bar: its label, count, link and geometry (SVG user units).
#[derive(Debug, Serialize)]
pub(crate) struct Bar {
    pub label: String,
    pub value: usize,
    pub href: String,
    pub y: i64,
    pub w: i64,
    /// Text baseline.
    pub ty: i64,
    /// Where the count is written (after the bar).
    pub tx: i64,
    /// `s-<status>` or empty: the bar's colour class.
    pub class: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Chart {
    pub width: i64,
    pub height: i64,
    /// Where bars start (after the labels).
    pub x0: i64,
    pub bars: Vec<Bar>,
}

const ROW: i64 = 22;
const BAR_H: i64 = 16;
const LABEL_W: i64 = 110;
const MAX_W: i64 = 200;

/// Lays out `(label, value, href, class)` rows, longest bar `MAX_W` wide;
/// a non-zero value is at least 2 units wide so it never vanishes.
pub(crate) fn bars(rows: Vec<(String, usize, String, String)>) -> Chart {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let bars = rows
        .into_iter()
        .enumerate()
        .map(|(i, (label, value, href, class))| {
            let w = if value == 0 {
                0
            } else {
                ((value as i64 * MAX_W) / max as i64).max(2)
            };
            let y = i as i64 * ROW + 3;
            Bar {
                label,
                value,
                href,
                y,
                w,
                ty: y + BAR_H - 4,
                tx: LABEL_W + w + 6,
                class,
            }
        })
        .collect::<Vec<_>>();
    Chart {
        width: LABEL_W + MAX_W + 50,
        height: (bars.len() as i64 * ROW).max(ROW) + 4,
        x0: LABEL_W,
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_longest_and_never_vanish() {
        let c = bars(vec![
            ("a".into(), 100, "/runs?status=a".into(), String::new()),
            ("b".into(), 1, "/runs?status=b".into(), String::new()),
            ("c".into(), 0, "/runs?status=c".into(), String::new()),
        ]);
        let w: Vec<i64> = c.bars.iter().map(|b| b.w).collect();
        assert_eq!(w, vec![MAX_W, 2, 0]);
        assert_eq!(c.bars[1].y, ROW + 3);
        assert_eq!(c.height, 3 * ROW + 4);
        assert_eq!(bars(Vec::new()).height, ROW + 4);
    }
}
