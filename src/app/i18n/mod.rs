//! English and 简体中文. English strings are the keys; a string without a translation shows
//! in English. The language lives in egui's context (each window, or test harness, has its
//! own) and is saved with the app's other settings.
//!
//! Chinese glyphs come from a subset of Droid Sans Fallback (Apache-2.0) bundled under
//! `assets/fonts/`: every character of this table and of the Learn pages, plus the 3 755
//! most common hanzi (GB 2312 level 1) so Chinese prompts and answers render too.
//! `scripts/subset-cjk-font.sh` rebuilds it.

use eframe::egui;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

mod zh_table;
pub use zh_table::ZH;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    /// The language's own name, as the switch shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "简体中文",
        }
    }
}

fn lang_id() -> egui::Id {
    egui::Id::unique("peft-workbench-lang")
}

pub fn lang(ctx: &egui::Context) -> Lang {
    ctx.data(|d| d.get_temp(lang_id())).unwrap_or_default()
}

pub fn set_lang(ctx: &egui::Context, l: Lang) {
    ctx.data_mut(|d| d.insert_temp(lang_id(), l));
}

/// `en` in the window's language.
pub fn tr<'a>(ui: &egui::Ui, en: &'a str) -> &'a str {
    tr_ctx(ui.ctx(), en)
}

pub fn tr_ctx<'a>(ctx: &egui::Context, en: &'a str) -> &'a str {
    match lang(ctx) {
        Lang::En => en,
        Lang::Zh => zh(en).unwrap_or(en),
    }
}

/// `template` (an English key with `{}` holes) in `lang`, the holes filled in order.
pub fn fill(lang: Lang, template: &str, args: &[&dyn std::fmt::Display]) -> String {
    let t = match lang {
        Lang::En => template,
        Lang::Zh => zh(template).unwrap_or(template),
    };
    let mut out = String::with_capacity(t.len() + 16);
    let mut args = args.iter();
    let mut rest = t;
    while let Some(i) = rest.find("{}") {
        out.push_str(&rest[..i]);
        if let Some(a) = args.next() {
            out.push_str(&a.to_string());
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

/// `fill` in the window's language.
pub fn trf(ui: &egui::Ui, template: &str, args: &[&dyn std::fmt::Display]) -> String {
    fill(lang(ui.ctx()), template, args)
}

/// The Chinese of an English UI string, if the table has it.
pub fn zh(en: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE
        .get_or_init(|| ZH.iter().copied().collect())
        .get(en)
        .copied()
}

/// Adds the bundled CJK font after egui's own, so Latin text keeps its look and Chinese
/// falls back to it.
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "cjk".into(),
        std::sync::Arc::new(egui::FontData::from_static(include_bytes!(
            "../../../assets/fonts/DroidSansFallback-subset.ttf"
        ))),
    );
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        fonts.families.entry(family).or_default().push("cjk".into());
    }
    ctx.set_fonts(fonts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_their_holes_in_either_language() {
        let en = fill(Lang::En, "exported {} files to {}", &[&3, &"out"]);
        assert_eq!(en, "exported 3 files to out");
        let zh = fill(Lang::Zh, "exported {} files to {}", &[&3, &"out"]);
        assert_eq!(zh, "已导出 3 个文件到 out");
        // A template with no translation stays English; missing arguments leave the hole empty.
        assert_eq!(fill(Lang::Zh, "no such {}", &[]), "no such ");
    }

    #[test]
    fn every_key_is_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for (en, zh) in ZH {
            assert!(seen.insert(*en), "`{en}` is listed twice");
            assert!(!zh.is_empty(), "`{en}` has an empty translation");
        }
        assert_eq!(super::zh("Start"), Some("开始"));
        assert_eq!(super::zh("not a UI string"), None);
    }

    /// Every CJK character the Chinese UI can show is in the bundled font subset (Latin and
    /// math symbols come from egui's own fonts; the GUI test renders every page, and egui
    /// refuses a glyph no font has).
    #[test]
    fn the_bundled_font_covers_every_chinese_string() {
        let font = ab_glyph_free_cmap(include_bytes!(
            "../../../assets/fonts/DroidSansFallback-subset.ttf"
        ));
        let mut texts: Vec<&str> = ZH.iter().map(|(_, zh)| *zh).collect();
        for (_, p) in super::super::learn::pages() {
            texts.extend([
                p.mechanism.zh,
                p.pros.zh,
                p.cons.zh,
                p.choose.zh,
                p.forward.zh,
                p.relations.zh,
                p.hyperparameters.zh,
            ]);
        }
        texts.push(Lang::Zh.name());
        let missing: std::collections::BTreeSet<char> = texts
            .iter()
            .flat_map(|t| t.chars())
            .filter(|c| *c >= '\u{2E80}' && !font.contains(c))
            .collect();
        assert!(missing.is_empty(), "not in the font subset: {missing:?}");
    }

    /// The characters a TrueType font maps, read from its `cmap` (formats 4 and 12).
    fn ab_glyph_free_cmap(data: &[u8]) -> std::collections::HashSet<char> {
        let u16_at = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]) as usize;
        let u32_at = |o: usize| {
            u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) as usize
        };
        let tables = u16_at(4);
        let cmap = (0..tables)
            .map(|i| 12 + 16 * i)
            .find(|&r| &data[r..r + 4] == b"cmap")
            .map(|r| u32_at(r + 8))
            .expect("a cmap table");
        let mut chars = std::collections::HashSet::new();
        for i in 0..u16_at(cmap + 2) {
            let sub = cmap + u32_at(cmap + 4 + 8 * i + 4);
            match u16_at(sub) {
                4 => {
                    let segs = u16_at(sub + 6) / 2;
                    let ends = sub + 14;
                    let starts = ends + 2 * segs + 2;
                    for s in 0..segs {
                        let (start, end) = (u16_at(starts + 2 * s), u16_at(ends + 2 * s));
                        for c in start..=end.min(0xFFFE) {
                            chars.extend(char::from_u32(c as u32));
                        }
                    }
                }
                12 => {
                    for g in 0..u32_at(sub + 12) {
                        let o = sub + 16 + 12 * g;
                        for c in u32_at(o)..=u32_at(o + 4) {
                            chars.extend(char::from_u32(c as u32));
                        }
                    }
                }
                _ => {}
            }
        }
        chars
    }
}
