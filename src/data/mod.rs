//! Datasets: built-in tasks and user files (JSONL, a JSON array, CSV or Parquet with
//! `prompt`/`completion`, `text` or `text`/`label` columns, or conversations in the Alpaca,
//! ShareGPT or `messages` forms), tokenised into examples with a loss mask.

pub mod batch;
pub mod builtin;
pub mod chat;
mod parquet_rows;
pub mod reviews;
pub mod template;

use anyhow::{Context, Result, bail};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One training example before tokenisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Example {
    /// Loss on the completion only.
    Completion { prompt: String, completion: String },
    /// A text and its class: a classifier predicts the label; a decoder is taught to
    /// answer it as a word after the text (`text\nLabel:` → ` label`).
    Labeled { text: String, label: String },
    /// Plain causal language modelling: loss on every token.
    Text { text: String },
    /// A conversation (from Alpaca, ShareGPT or `messages` rows): loss on the assistant's
    /// turns only.
    Chat { turns: Vec<chat::Turn> },
}

impl Example {
    /// The example as a decoder is trained on it.
    pub fn for_decoder(&self) -> std::borrow::Cow<'_, Example> {
        match self {
            Example::Labeled { text, label } => std::borrow::Cow::Owned(Example::Completion {
                prompt: format!("{text}\nLabel:"),
                completion: format!(" {label}"),
            }),
            other => std::borrow::Cow::Borrowed(other),
        }
    }
}

/// The form of a dataset's rows, when the user names it (`dataset_format` in a RunConfig);
/// otherwise each row's form is read from the fields it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// `prompt` and `completion`.
    PromptCompletion,
    /// `text` alone: plain language modelling.
    Text,
    /// `text` and `label`.
    TextLabel,
    /// `instruction`, `output`, optional `input`, `system`, `history`.
    Alpaca,
    /// `conversations` of `from`/`value` turns, optional `system`.
    Sharegpt,
    /// `messages` of `role`/`content` turns.
    Messages,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 6] = [
        DatasetFormat::PromptCompletion,
        DatasetFormat::Text,
        DatasetFormat::TextLabel,
        DatasetFormat::Alpaca,
        DatasetFormat::Sharegpt,
        DatasetFormat::Messages,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::PromptCompletion => "prompt_completion",
            DatasetFormat::Text => "text",
            DatasetFormat::TextLabel => "text_label",
            DatasetFormat::Alpaca => "alpaca",
            DatasetFormat::Sharegpt => "sharegpt",
            DatasetFormat::Messages => "messages",
        }
    }

    /// The fields a row of this form must have.
    fn required(self) -> &'static [&'static str] {
        match self {
            DatasetFormat::PromptCompletion => &["prompt", "completion"],
            DatasetFormat::Text => &["text"],
            DatasetFormat::TextLabel => &["text", "label"],
            DatasetFormat::Alpaca => &["instruction", "output"],
            DatasetFormat::Sharegpt => &["conversations"],
            DatasetFormat::Messages => &["messages"],
        }
    }
}

/// How an evaluation is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of evaluation examples whose whole completion the model predicts greedily.
    ExactMatch,
    /// exp(mean token loss); lower is better.
    Perplexity,
    /// Share of evaluation examples labelled correctly: by a classifier's head, or, for a
    /// decoder, by the label whose answer (` label` and end of sequence) it finds likeliest
    /// among the task's labels (as lm-evaluation-harness scores multiple choice).
    Accuracy,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::ExactMatch => "exact_match",
            Metric::Perplexity => "perplexity",
            Metric::Accuracy => "accuracy",
        }
    }
    /// The metric a [`Metric::name`] names.
    pub fn from_name(name: &str) -> Option<Metric> {
        [Metric::ExactMatch, Metric::Perplexity, Metric::Accuracy]
            .into_iter()
            .find(|m| m.name() == name)
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::ExactMatch | Metric::Accuracy)
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    pub metric: Metric,
}

/// The built-in tasks, by the name used after `builtin:`: real Chinese reviews
/// ([`reviews`]) and the tasks generated from word lists ([`builtin::GENERATED`]).
pub const BUILTIN_TASKS: [&str; 5] = [
    "reviews-zh",
    "sentiment",
    "arithmetic",
    "reverse",
    "sentiment-labels",
];

pub fn builtin_dir() -> PathBuf {
    crate::assets_dir().join("datasets")
}

/// Loads a config's `dataset` (and optional `eval_dataset`), each row's form read from its
/// fields.
pub fn load(dataset: &str, eval_dataset: Option<&str>, seed: u64) -> Result<Dataset> {
    load_as(dataset, eval_dataset, seed, None)
}

/// The same, every row of a user's file read as `format` when one is named.
pub fn load_as(
    dataset: &str,
    eval_dataset: Option<&str>,
    seed: u64,
    format: Option<DatasetFormat>,
) -> Result<Dataset> {
    if let Some(task) = dataset.strip_prefix("builtin:") {
        if !BUILTIN_TASKS.contains(&task) {
            bail!(
                "unknown built-in dataset `{task}` (built-in: {})",
                BUILTIN_TASKS.join(", ")
            );
        }
        let dir = builtin_dir();
        let train = read_file(&dir.join(format!("{task}.train.jsonl")))?;
        let eval = read_file(&dir.join(format!("{task}.eval.jsonl")))?;
        return finish(dataset.to_string(), train, eval);
    }
    let mut train = read_file_as(Path::new(dataset), format)?;
    let eval = match eval_dataset {
        Some(e) => read_file_as(Path::new(e), format)?,
        None => {
            // Hold out a tenth (at least one, at most 500) in a seeded order.
            train.shuffle(&mut StdRng::seed_from_u64(seed));
            let n = (train.len() / 10).clamp(1, 500);
            if train.len() < 2 {
                bail!(
                    "{dataset} has {} example(s): at least 2 are needed to hold one out for evaluation",
                    train.len()
                );
            }
            train.split_off(train.len() - n)
        }
    };
    finish(dataset.to_string(), train, eval)
}

impl Dataset {
    /// Whether every example is a text with a label (a classifier can train on it).
    pub fn is_labeled(&self) -> bool {
        self.train
            .iter()
            .chain(&self.eval)
            .all(|e| matches!(e, Example::Labeled { .. }))
    }

    /// The classes a classifier learns, in id order: the training labels, numerically
    /// sorted when they are all integers, else alphabetically. An evaluation label that no
    /// training example has is refused (a classifier could never predict it).
    pub fn labels(&self) -> Result<Vec<String>> {
        let label = |e: &Example| match e {
            Example::Labeled { label, .. } => Some(label.clone()),
            _ => None,
        };
        let mut labels: Vec<String> = self.train.iter().filter_map(label).collect();
        labels.sort();
        labels.dedup();
        if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
            labels.sort_by_key(|l| l.parse::<i64>().expect("checked"));
        }
        if labels.len() < 2 {
            bail!(
                "{}: a classifier needs at least two labels in the training data, found {}",
                self.name,
                labels.len()
            );
        }
        if let Some(unseen) = self
            .eval
            .iter()
            .filter_map(label)
            .find(|l| !labels.contains(l))
        {
            bail!(
                "{}: the evaluation label `{unseen}` never occurs in the training data (labels: {})",
                self.name,
                labels.join(", ")
            );
        }
        Ok(labels)
    }
}

fn finish(name: String, train: Vec<Example>, eval: Vec<Example>) -> Result<Dataset> {
    let completion =
        |e: &Example| matches!(e, Example::Completion { .. } | Example::Labeled { .. });
    let labeled = |e: &Example| matches!(e, Example::Labeled { .. });
    let conversation = |e: &Example| matches!(e, Example::Chat { .. });
    // Labels are a choice among a few answers: scoring which answer the model prefers has
    // a chance level (the majority share) and separates "learned the task" from "learned
    // to write a label at all". Exact match of the greedy answer conflated the two: on
    // reviews-zh, soft prompts scored 0.000 while choosing the right label of two.
    let metric = if train.iter().all(labeled) && eval.iter().all(labeled) {
        Metric::Accuracy
    } else if train.iter().chain(&eval).any(conversation) {
        // Long free answers: the perplexity of the assistant's words says how well they are
        // learned; an exact match of a whole answer almost never happens.
        if !train.iter().chain(&eval).all(conversation) {
            bail!("{name} mixes conversations with other kinds of examples");
        }
        Metric::Perplexity
    } else if train.iter().all(completion) && eval.iter().all(completion) {
        Metric::ExactMatch
    } else if !train.iter().any(completion) && !eval.iter().any(completion) {
        Metric::Perplexity
    } else {
        bail!("{name} mixes prompt/completion examples with plain text ones");
    };
    if eval.is_empty() {
        bail!("{name} has no evaluation examples");
    }
    Ok(Dataset {
        name,
        train,
        eval,
        metric,
    })
}

/// The largest dataset file read: examples are held in memory, tokenised, so a larger file
/// (a wrong pick, a dump) is refused by its size before any of it is read.
pub const MAX_DATASET_BYTES: u64 = 256 << 20;

/// Reads a `.jsonl`, `.json`, `.csv` or `.parquet` file of examples.
pub fn read_file(path: &Path) -> Result<Vec<Example>> {
    read_file_as(path, None)
}

/// The same, every row read as `format` when one is named.
pub fn read_file_as(path: &Path, format: Option<DatasetFormat>) -> Result<Vec<Example>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read dataset {}", path.display()))?
        .len();
    if size > MAX_DATASET_BYTES {
        bail!(
            "{} is {:.1} GB; dataset files over {} MB are refused (split it or take a sample)",
            path.display(),
            size as f64 / 1e9,
            MAX_DATASET_BYTES >> 20
        );
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        let examples =
            parquet_rows::read(path, format).with_context(|| format!("in {}", path.display()))?;
        if examples.is_empty() {
            bail!("{} has no examples", path.display());
        }
        return Ok(examples);
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read dataset {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let examples = match ext {
        "csv" => parse_csv_as(&text, format),
        "jsonl" | "json" if text.trim_start().starts_with('[') => {
            parse_json_array_as(&text, format)
        }
        "jsonl" | "json" => parse_jsonl_as(&text, format),
        other => bail!(
            "{}: unsupported dataset extension `.{other}` (use .jsonl, .json, .csv or .parquet)",
            path.display()
        ),
    }
    .with_context(|| format!("in {}", path.display()))?;
    if examples.is_empty() {
        bail!("{} has no examples", path.display());
    }
    Ok(examples)
}

/// A row as read, before its fields are checked.
#[derive(Deserialize, Default)]
struct Row {
    prompt: Option<String>,
    completion: Option<String>,
    text: Option<String>,
    label: Option<serde_json::Value>,
    // Alpaca.
    instruction: Option<String>,
    input: Option<String>,
    output: Option<String>,
    system: Option<String>,
    history: Option<Vec<(String, String)>>,
    // ShareGPT and chat messages.
    conversations: Option<serde_json::Value>,
    messages: Option<serde_json::Value>,
}

impl Row {
    /// The fields this row has.
    fn present(&self) -> Vec<&'static str> {
        [
            ("prompt", self.prompt.is_some()),
            ("completion", self.completion.is_some()),
            ("text", self.text.is_some()),
            ("label", self.label.is_some()),
            ("instruction", self.instruction.is_some()),
            ("input", self.input.is_some()),
            ("output", self.output.is_some()),
            ("system", self.system.is_some()),
            ("history", self.history.is_some()),
            ("conversations", self.conversations.is_some()),
            ("messages", self.messages.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, here)| here.then_some(name))
        .collect()
    }

    /// Only the fields of `format`, after checking the row has the ones it needs.
    fn into_format(self, format: DatasetFormat) -> Result<Row> {
        let present = self.present();
        if let Some(missing) = format.required().iter().find(|f| !present.contains(f)) {
            bail!(
                "dataset_format = \"{}\" needs `{}`, and this row has {}",
                format.name(),
                missing,
                if present.is_empty() {
                    "no known field".to_string()
                } else {
                    present
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        Ok(match format {
            DatasetFormat::PromptCompletion => Row {
                prompt: self.prompt,
                completion: self.completion,
                ..Row::default()
            },
            DatasetFormat::Text => Row {
                text: self.text,
                ..Row::default()
            },
            DatasetFormat::TextLabel => Row {
                text: self.text,
                label: self.label,
                ..Row::default()
            },
            DatasetFormat::Alpaca => Row {
                instruction: self.instruction,
                input: self.input,
                output: self.output,
                system: self.system,
                history: self.history,
                ..Row::default()
            },
            DatasetFormat::Sharegpt => Row {
                conversations: self.conversations,
                system: self.system,
                ..Row::default()
            },
            DatasetFormat::Messages => Row {
                messages: self.messages,
                system: self.system,
                ..Row::default()
            },
        })
    }
}

fn row_to_example(row: Row, format: Option<DatasetFormat>) -> Result<Example> {
    let row = match format {
        Some(f) => row.into_format(f)?,
        None => row,
    };
    if let Some(list) = &row.messages {
        let turns = chat::from_list(list, "messages", "role", "content", row.system.as_deref())?;
        return Ok(Example::Chat { turns });
    }
    if let Some(list) = &row.conversations {
        let turns = chat::from_list(
            list,
            "conversations",
            "from",
            "value",
            row.system.as_deref(),
        )?;
        return Ok(Example::Chat { turns });
    }
    if let Some(instruction) = &row.instruction {
        let Some(output) = &row.output else {
            bail!("an Alpaca row needs `output` beside `instruction`");
        };
        let turns = chat::from_alpaca(
            instruction,
            row.input.as_deref(),
            output,
            row.system.as_deref(),
            row.history.as_deref().unwrap_or_default(),
        )?;
        return Ok(Example::Chat { turns });
    }
    match row {
        Row {
            prompt: Some(prompt),
            completion: Some(completion),
            ..
        } => Ok(Example::Completion { prompt, completion }),
        Row {
            text: Some(text),
            label: Some(label),
            ..
        } => {
            let label = match label {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => bail!("`label` must be a string or number, found {other}"),
            };
            Ok(Example::Labeled { text, label })
        }
        Row {
            text: Some(text), ..
        } => Ok(Example::Text { text }),
        _ => bail!(
            "needs `prompt` and `completion`, `text` (with an optional `label`), Alpaca's `instruction` and `output`, ShareGPT's `conversations` or chat `messages`"
        ),
    }
}

/// A file holding one JSON array of rows (as Alpaca and ShareGPT files usually are); errors
/// name the row, counted from 1.
pub fn parse_json_array(text: &str) -> Result<Vec<Example>> {
    parse_json_array_as(text, None)
}

pub fn parse_json_array_as(text: &str, format: Option<DatasetFormat>) -> Result<Vec<Example>> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(text)
        .context("invalid JSON (a file starting with `[` is read as one array of rows)")?;
    rows.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let row: Row = serde_json::from_value(v)
                .with_context(|| format!("row {}: a field has the wrong type", i + 1))?;
            row_to_example(row, format).with_context(|| format!("row {}", i + 1))
        })
        .collect()
}

pub fn parse_jsonl(text: &str) -> Result<Vec<Example>> {
    parse_jsonl_as(text, None)
}

pub fn parse_jsonl_as(text: &str, format: Option<DatasetFormat>) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Row =
            serde_json::from_str(line).with_context(|| format!("line {}: invalid JSON", i + 1))?;
        out.push(row_to_example(row, format).with_context(|| format!("line {}", i + 1))?);
    }
    Ok(out)
}

pub fn parse_csv(text: &str) -> Result<Vec<Example>> {
    parse_csv_as(text, None)
}

pub fn parse_csv_as(text: &str, format: Option<DatasetFormat>) -> Result<Vec<Example>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().context("cannot read the CSV header")?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (p, c, t, l) = (col("prompt"), col("completion"), col("text"), col("label"));
    let (ins, inp, outp, sys) = (
        col("instruction"),
        col("input"),
        col("output"),
        col("system"),
    );
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("line {line}: malformed CSV"))?;
        let get = |idx: Option<usize>| idx.and_then(|j| rec.get(j)).map(str::to_string);
        let row = Row {
            prompt: get(p),
            completion: get(c),
            text: get(t),
            label: get(l).map(serde_json::Value::String),
            instruction: get(ins),
            input: get(inp),
            output: get(outp),
            system: get(sys),
            ..Row::default()
        };
        out.push(row_to_example(row, format).with_context(|| format!("line {line}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_in_each_form_and_their_errors_by_row() {
        let alpaca = r#"[{"instruction":"hi","output":"hello"},
            {"instruction":"sum","input":"1 2","output":"3","history":[["a","b"]]}]"#;
        let ex = parse_json_array(alpaca).unwrap();
        let Example::Chat { turns } = &ex[1] else {
            panic!("{ex:?}")
        };
        assert_eq!(turns.len(), 4);
        assert_eq!(turns[2].content, "sum\n1 2");
        let e = parse_json_array(r#"[{"instruction":"hi","output":"ok"},{"instruction":"x"}]"#)
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("row 2: an Alpaca row needs `output`"),
            "{e:#}"
        );
        let e = parse_jsonl("{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}]}\n")
            .unwrap_err();
        assert!(
            format!("{e:#}")
                .contains("line 1: `conversations`: the conversation has no assistant turn"),
            "{e:#}"
        );
        let e = parse_jsonl("{\"messages\":\"hi\"}\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("`messages` must be a list of turns"),
            "{e:#}"
        );
        let d = finish(
            "mixed".into(),
            vec![ex[0].clone(), Example::Text { text: "t".into() }],
            vec![ex[1].clone()],
        );
        assert!(d.unwrap_err().to_string().contains("mixes conversations"));
    }

    /// The files pyarrow wrote (tests/reference/parquet_datasets.py) read as the JSONL
    /// files of the same rows do, each format; the broken ones are refused by place.
    #[test]
    fn parquet_files_read_as_their_jsonl_twins_and_errors_name_the_row_group() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet");
        for name in ["alpaca", "sharegpt", "messages", "text_label"] {
            let from_parquet = read_file(&dir.join(format!("{name}.parquet"))).unwrap();
            let from_jsonl = read_file(&dir.join(format!("{name}.jsonl"))).unwrap();
            assert_eq!(from_parquet, from_jsonl, "{name}");
        }
        let alpaca = read_file(&dir.join("alpaca.parquet")).unwrap();
        assert_eq!(alpaca.len(), 3, "two row groups read whole");
        let Example::Chat { turns } = &alpaca[1] else {
            panic!("{alpaca:?}")
        };
        assert_eq!(
            turns.len(),
            5,
            "system, the history's pair, the question and answer"
        );
        assert_eq!(
            read_file(&dir.join("text_label.parquet")).unwrap()[0],
            Example::Labeled {
                text: "服务很好".into(),
                label: "1".into()
            }
        );
        let e = read_file(&dir.join("no_known_columns.parquet")).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("no_known_columns.parquet"), "{e}");
        assert!(e.contains("this file has `question`, `answer`"), "{e}");
        let e = format!(
            "{:#}",
            read_file(&dir.join("bad_role.parquet")).unwrap_err()
        );
        assert!(e.contains("row group 2, row 1"), "{e}");
        assert!(e.contains("robot"), "{e}");
        let e =
            read_file_as(&dir.join("messages.parquet"), Some(DatasetFormat::Alpaca)).unwrap_err();
        assert!(
            format!("{e:#}")
                .contains("row group 1, row 1: dataset_format = \"alpaca\" needs `instruction`"),
            "{e:#}"
        );
    }

    #[test]
    fn a_named_format_reads_only_its_fields_and_names_what_is_missing() {
        let text = "{\"instruction\":\"q\",\"output\":\"a\",\"text\":\"t\"}\n";
        assert!(matches!(
            parse_jsonl_as(text, Some(DatasetFormat::Alpaca)).unwrap()[0],
            Example::Chat { .. }
        ));
        assert_eq!(
            parse_jsonl_as(text, Some(DatasetFormat::Text)).unwrap()[0],
            Example::Text { text: "t".into() }
        );
        let e = parse_jsonl_as(text, Some(DatasetFormat::Messages)).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "line 1: dataset_format = \"messages\" needs `messages`, and this row has `text`, `instruction`, `output`"
        );
        let csv = "instruction,input,output\n翻译,你好,Hello\n";
        let Example::Chat { turns } = &parse_csv_as(csv, Some(DatasetFormat::Alpaca)).unwrap()[0]
        else {
            panic!()
        };
        assert_eq!(turns[0].content, "翻译\n你好");
    }

    #[test]
    fn jsonl_rows_of_each_shape() {
        let ex = parse_jsonl(
            "{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n\n{\"text\":\"hello\"}\n{\"text\":\"good\",\"label\":\"pos\"}\n",
        )
        .unwrap();
        assert_eq!(ex.len(), 3);
        assert_eq!(
            ex[0],
            Example::Completion {
                prompt: "2+2=".into(),
                completion: "4".into()
            }
        );
        assert_eq!(
            ex[1],
            Example::Text {
                text: "hello".into()
            }
        );
        assert_eq!(
            ex[2],
            Example::Labeled {
                text: "good".into(),
                label: "pos".into()
            }
        );
        assert_eq!(
            *ex[2].for_decoder(),
            Example::Completion {
                prompt: "good\nLabel:".into(),
                completion: " pos".into()
            }
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_jsonl("{\"text\":\"a\"}\n{oops\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e = parse_jsonl("{\"text\":\"a\"}\n{\"foo\":1}\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e = parse_jsonl("{\"text\":\"a\",\"label\":[1]}\n").unwrap_err();
        assert!(format!("{e:#}").contains("label"), "{e:#}");
    }

    #[test]
    fn labels_are_numbered_in_order_and_unseen_ones_refused() {
        let rows = |labels: &[&str]| -> Vec<Example> {
            labels
                .iter()
                .map(|l| Example::Labeled {
                    text: format!("t{l}"),
                    label: l.to_string(),
                })
                .collect()
        };
        let d = finish("d".into(), rows(&["10", "2", "2", "1"]), rows(&["1"])).unwrap();
        assert!(d.is_labeled());
        assert_eq!(d.labels().unwrap(), ["1", "2", "10"]);
        let d = finish("d".into(), rows(&["pos", "neg"]), rows(&["neutral"])).unwrap();
        let e = d.labels().unwrap_err().to_string();
        assert!(e.contains("neutral") && e.contains("neg, pos"), "{e}");
        let d = finish("d".into(), rows(&["pos", "pos"]), rows(&["pos"])).unwrap();
        assert!(d.labels().unwrap_err().to_string().contains("two labels"));
    }

    #[test]
    fn csv_with_quotes() {
        let ex = parse_csv("prompt,completion\n\"a, b\",c\nd,\"e\"\"f\"\n").unwrap();
        assert_eq!(
            ex[0],
            Example::Completion {
                prompt: "a, b".into(),
                completion: "c".into()
            }
        );
        assert_eq!(
            ex[1],
            Example::Completion {
                prompt: "d".into(),
                completion: "e\"f".into()
            }
        );
        let e = parse_csv("prompt,completion\nonly\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }

    #[test]
    fn builtin_datasets_load_with_their_metric() {
        for task in BUILTIN_TASKS {
            let d = load(&format!("builtin:{task}"), None, 0).unwrap();
            assert!(d.train.len() >= 1000, "{task}");
            assert!(d.eval.len() >= 100, "{task}");
            let expected = if d.is_labeled() {
                Metric::Accuracy
            } else {
                Metric::ExactMatch
            };
            assert_eq!(d.metric, expected, "{task}");
        }
        for (task, labels) in [
            ("sentiment-labels", ["negative", "positive"]),
            ("reviews-zh", ["好评", "差评"]),
        ] {
            let d = load(&format!("builtin:{task}"), None, 0).unwrap();
            assert!(d.is_labeled(), "{task}");
            assert_eq!(d.labels().unwrap(), labels, "{task}");
        }
        assert!(load("builtin:nope", None, 0).is_err());
    }
}
