//! Parquet datasets, as the Hugging Face hub exports them: each row becomes the same JSON
//! row a JSONL line would be (lists of structs become lists of objects, nulls absent
//! fields), so every format reads as it does from JSONL. Errors name the row group and the
//! row within it; a file with none of the known columns is refused listing those it has.

use anyhow::{Context, Result, bail};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::path::Path;

use super::{DatasetFormat, Example, Row, row_to_example};

/// The top-level columns any format reads.
const KNOWN_COLUMNS: [&str; 11] = [
    "prompt",
    "completion",
    "text",
    "label",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "conversations",
    "messages",
];

pub fn read(path: &Path, format: Option<DatasetFormat>) -> Result<Vec<Example>> {
    let file = std::fs::File::open(path).context("cannot open the Parquet file")?;
    let reader = SerializedFileReader::new(file).context("not a readable Parquet file")?;
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    if !columns.iter().any(|c| KNOWN_COLUMNS.contains(&c.as_str())) {
        bail!(
            "none of the columns a dataset needs ({}); this file has {}",
            KNOWN_COLUMNS.join(", "),
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::new();
    for group in 0..reader.num_row_groups() {
        let unreadable = || format!("row group {}: cannot be read", group + 1);
        let row_group = reader.get_row_group(group).with_context(unreadable)?;
        let rows = row_group.get_row_iter(None).with_context(unreadable)?;
        for (i, row) in rows.enumerate() {
            let at = || format!("row group {}, row {}", group + 1, i + 1);
            let row = row.with_context(at)?;
            let mut value = row.to_json_value();
            // A null cell is an absent field, as a missing key is in JSONL.
            if let serde_json::Value::Object(fields) = &mut value {
                fields.retain(|_, v| !v.is_null());
            }
            let row: Row = serde_json::from_value(value)
                .with_context(|| format!("{}: a field has the wrong type", at()))?;
            out.push(row_to_example(row, format).with_context(at)?);
        }
    }
    Ok(out)
}
