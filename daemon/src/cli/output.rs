//! Lists for the operator: an aligned table for people, CSV, JSON or YAML for scripts.
//! A command describes its row type once ([`Row`]) and every format follows from it.

use std::io::{self, Write};

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Csv,
    Json,
    Yaml,
}

impl ListFormat {
    pub fn name(self) -> &'static str {
        match self {
            ListFormat::Table => "table",
            ListFormat::Csv => "csv",
            ListFormat::Json => "json",
            ListFormat::Yaml => "yaml",
        }
    }
}

/// One row of a list. The structured formats serialize the row; the table shows
/// [`Row::cells`], which may differ (a date with how soon it comes, `-` for nothing).
pub trait Row: Serialize {
    /// The table's column titles.
    const HEADER: &'static [&'static str];
    /// The serialized field names, in field order. Written by hand so that an empty list
    /// still gets its CSV header: serde only reveals names through a row.
    const COLUMNS: &'static [&'static str];
    /// The table cells, one per [`Row::HEADER`] title, already safe for a terminal.
    fn cells(&self) -> Vec<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write the output: {0}")]
    Write(io::Error),
    #[error("cannot format the list as {format}: {detail}")]
    Format {
        format: &'static str,
        detail: String,
    },
}

/// Writes `rows` to `out` in `format`.
pub fn render<R: Row>(
    rows: &[R],
    format: ListFormat,
    out: &mut dyn Write,
) -> Result<(), OutputError> {
    let format_err = |detail: String| OutputError::Format {
        format: format.name(),
        detail,
    };
    match format {
        ListFormat::Table => table(R::HEADER, rows.iter().map(Row::cells).collect(), out),
        ListFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(out);
            writer
                .write_record(R::COLUMNS)
                .map_err(|e| format_err(e.to_string()))?;
            for row in rows {
                writer
                    .serialize(row)
                    .map_err(|e| format_err(e.to_string()))?;
            }
            writer.flush().map_err(OutputError::Write)
        }
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, rows).map_err(|e| format_err(e.to_string()))?;
            writeln!(out).map_err(OutputError::Write)
        }
        ListFormat::Yaml => {
            let text = serde_yaml_ng::to_string(rows).map_err(|e| format_err(e.to_string()))?;
            out.write_all(text.as_bytes()).map_err(OutputError::Write)
        }
    }
}

/// Columns padded to their widest cell, two spaces apart; no trailing blanks.
fn table(header: &[&str], rows: Vec<Vec<String>>, out: &mut dyn Write) -> Result<(), OutputError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(OutputError::Write)?;
    }
    Ok(())
}

/// Text from certificates and callers: keep control characters out of the operator's
/// terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// [`printable`], with `empty` standing in for nothing.
pub fn printable_or(text: &str, empty: &str) -> String {
    if text.is_empty() {
        empty.to_owned()
    } else {
        printable(text)
    }
}
