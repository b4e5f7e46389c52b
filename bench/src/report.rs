//! Plain-text tables for benchmark output.
//!
//! A [`Table`] holds rows of already formatted cells and prints them with
//! each column as wide as its widest cell: the first column (the label)
//! left-aligned, the others (figures) right-aligned.

/// A table of text cells under a header row.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table, a rule under the header, each line indented.
    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in self.rows.iter().enumerate() {
            println!("  {}", line(row, &widths));
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
                println!("  {}", "-".repeat(total));
            }
        }
    }
}

fn line(row: &[String], widths: &[usize]) -> String {
    let cells: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            if c == 0 {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            }
        })
        .collect();
    cells.join("  ").trim_end().to_string()
}

/// Microseconds with one decimal: `181.4 us`.
pub fn us(v: f64) -> String {
    format!("{v:.1} us")
}

/// A rate, rounded to whole units per second: `5120/s`.
pub fn per_sec(v: f64) -> String {
    format!("{v:.0}/s")
}

/// A ratio with two decimals: `2.11x`.
pub fn times(v: f64) -> String {
    format!("{v:.2}x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_left_figures_right() {
        let widths = [6, 5, 4];
        let row = vec!["ab".to_string(), "1.0".into(), "2".into()];
        assert_eq!(line(&row, &widths), "ab        1.0     2");
    }

    #[test]
    fn missing_cells_are_blank_and_trailing_space_trimmed() {
        assert_eq!(line(&["x".to_string()], &[3, 4]), "x");
    }
}
