//! A decoder block drawn with the parts a method trains filled in — or, for a chosen run,
//! each part's colour the size of its measured change (its update map, averaged over the
//! layers).

use eframe::egui::{self, Color32, Pos2, Rect, Stroke, Vec2, pos2, vec2};
use std::cell::RefCell;

use super::super::i18n::{tr, trf};
use super::pages::Trained;
use crate::peft::update_map::UpdateMap;

const TRAINED: Color32 = Color32::from_rgb(230, 126, 34);

/// A part of the drawn block that update-map cells are measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Embedding,
    Prompt,
    Prefix,
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    AttentionAdapter,
    MlpAdapter,
    Norm,
    Head,
}

impl Part {
    pub(super) fn name(self) -> &'static str {
        match self {
            Part::Embedding => "embedding",
            Part::Prompt => "soft prompt",
            Part::Prefix => "K/V prefix",
            Part::Q => "q",
            Part::K => "k",
            Part::V => "v",
            Part::O => "o",
            Part::Gate => "gate",
            Part::Up => "up",
            Part::Down => "down",
            Part::AttentionAdapter => "adapter after attention",
            Part::MlpAdapter => "adapter after the MLP",
            Part::Norm => "norms",
            Part::Head => "LM head",
        }
    }
}

/// The drawn parts an update-map cell belongs to, in the names of the LLaMA, GPT-2 and BERT
/// checkpoints (GPT-2's fused `c_attn` is q, k and v at once); none for what the diagram
/// does not draw.
pub(super) fn parts_of(module: &str) -> &'static [Part] {
    use Part::*;
    let m = module
        .strip_suffix(".weight")
        .or_else(|| module.strip_suffix(".bias"))
        .unwrap_or(module);
    let ends = |suffixes: &[&str]| {
        suffixes
            .iter()
            .any(|s| m == *s || m.ends_with(&format!(".{s}")))
    };
    if m.starts_with("virtual token") {
        &[Prompt]
    } else if m.starts_with("prefix ") {
        &[Prefix]
    } else if m == "attention_adapter" {
        &[AttentionAdapter]
    } else if m == "output_adapter" {
        &[MlpAdapter]
    } else if ends(&["c_attn"]) {
        &[Q, K, V]
    } else if ends(&["q_proj", "query"]) {
        &[Q]
    } else if ends(&["k_proj", "key"]) {
        &[K]
    } else if ends(&["v_proj", "value"]) {
        &[V]
    } else if ends(&["o_proj", "attn.c_proj", "attention.output.dense"]) {
        &[O]
    } else if ends(&["gate_proj"]) {
        &[Gate]
    } else if ends(&["up_proj", "c_fc", "intermediate.dense"]) {
        &[Up]
    } else if ends(&["down_proj", "mlp.c_proj", "output.dense"]) {
        &[Down]
    } else if m.contains("norm") || m.contains("LayerNorm") || ends(&["ln_1", "ln_2", "ln_f"]) {
        &[Norm]
    } else if ends(&[
        "embed_tokens",
        "wte",
        "wpe",
        "word_embeddings",
        "position_embeddings",
        "token_type_embeddings",
    ]) {
        &[Embedding]
    } else if ends(&["lm_head", "classifier", "score", "pooler.dense"]) {
        &[Head]
    } else {
        &[]
    }
}

/// A run's update map gathered onto the drawn parts: each part's mean over the cells that
/// belong to it (over the layers, and the virtual tokens).
pub(super) struct Measured {
    pub(super) measure: String,
    /// (part, mean, cells averaged), in the order first met.
    pub(super) parts: Vec<(Part, f64, usize)>,
}

impl Measured {
    pub(super) fn new(map: &UpdateMap) -> Self {
        let mut sums: Vec<(Part, f64, usize)> = Vec::new();
        for c in &map.cells {
            for &part in parts_of(&c.module) {
                match sums.iter_mut().find(|(p, ..)| *p == part) {
                    Some((_, sum, n)) => {
                        *sum += c.value;
                        *n += 1;
                    }
                    None => sums.push((part, c.value, 1)),
                }
            }
        }
        for (_, sum, n) in &mut sums {
            *sum /= *n as f64;
        }
        Self {
            measure: map.measure.clone(),
            parts: sums,
        }
    }

    pub(super) fn value(&self, part: Part) -> Option<f64> {
        self.parts
            .iter()
            .find(|(p, ..)| *p == part)
            .map(|(_, v, _)| *v)
    }

    fn largest(&self) -> f64 {
        self.parts.iter().map(|(_, v, _)| *v).fold(0.0, f64::max)
    }
}

/// A decoder block drawn top to bottom, trained parts filled in orange; with `measured`,
/// each measured part's orange as deep as its share of the largest change (frozen grey for
/// none), and its value on hover.
pub(super) fn diagram(ui: &mut egui::Ui, t: &Trained, measured: Option<&Measured>) {
    let (response, painter) = ui.allocate_painter(vec2(360.0, 470.0), egui::Sense::hover());
    let r = response.rect;
    let dark = ui.visuals().dark_mode;
    let frozen_fill = if dark {
        Color32::from_gray(60)
    } else {
        Color32::from_gray(215)
    };
    let text_color = ui.visuals().text_color();
    let font = egui::FontId::proportional(12.0);
    let small = egui::FontId::proportional(10.5);
    let frozen_label = tr(ui, "frozen");
    let trained_label = tr(ui, "trained");
    // With a measured run: the parts drawn for it, for the hover.
    let drawn: RefCell<Vec<(Rect, Part)>> = RefCell::new(Vec::new());
    let largest = measured.map_or(0.0, Measured::largest);
    // A part's fill: orange when trained; with a measured run, orange as deep as the part's
    // share of the largest change, and grey where it changed nothing measured.
    let fill_of = |rect: Rect, trained: bool, part: Option<Part>| -> (Color32, bool) {
        let (Some(m), Some(part)) = (measured, part) else {
            return (if trained { TRAINED } else { frozen_fill }, trained);
        };
        let Some(v) = m.value(part) else {
            return (if trained { TRAINED } else { frozen_fill }, trained);
        };
        drawn.borrow_mut().push((rect, part));
        let share = if largest > 0.0 {
            (v / largest) as f32
        } else {
            0.0
        };
        (lerp_color(frozen_fill, TRAINED, share), share > 0.5)
    };
    let boxed = |rect: Rect, label: &str, trained: bool, part: Option<Part>| {
        let (fill, dark_text) = fill_of(rect, trained, part);
        painter.rect_filled(rect, 4.0, fill);
        let color = if dark_text {
            Color32::BLACK
        } else {
            text_color
        };
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            label,
            font.clone(),
            color,
        );
    };
    let arrow = |from: Pos2, to: Pos2| {
        painter.arrow(from, to - from, Stroke::new(1.2, text_color));
    };
    // A sublayer's outline with its name in the corner.
    let group = |rect: Rect, label: &str| {
        painter.rect_stroke(
            rect,
            4.0,
            Stroke::new(1.0, text_color),
            egui::StrokeKind::Inside,
        );
        painter.text(
            pos2(rect.left() + 4.0, rect.top() + 2.0),
            egui::Align2::LEFT_TOP,
            label,
            small.clone(),
            text_color,
        );
    };
    // IA3's learned vector "l" beside the projection it rescales.
    let scaling_vector = |at: Pos2, part: Part| {
        let s = Rect::from_min_size(at, vec2(20.0, 12.0));
        painter.rect_filled(s, 2.0, fill_of(s, true, Some(part)).0);
        painter.text(
            s.center(),
            egui::Align2::CENTER_CENTER,
            "l",
            small.clone(),
            Color32::BLACK,
        );
    };
    let cx = r.left() + 190.0;
    let w = 180.0;
    let row = |y: f32, h: f32| Rect::from_center_size(pos2(cx, r.top() + y), vec2(w, h));

    // Input: tokens, embedding, and the soft prompt beside it.
    let tokens = row(14.0, 20.0);
    painter.text(
        tokens.center(),
        egui::Align2::CENTER_CENTER,
        tr(ui, "input tokens"),
        font.clone(),
        text_color,
    );
    let embed = row(44.0, 24.0);
    boxed(
        embed,
        tr(ui, "embedding"),
        t.embedding,
        Some(Part::Embedding),
    );
    if let Some(encoder) = t.prompt {
        let p = Rect::from_min_size(pos2(r.left() + 4.0, embed.top()), vec2(92.0, 24.0));
        boxed(p, tr(ui, "soft prompt"), true, Some(Part::Prompt));
        if !encoder.is_empty() {
            let e = Rect::from_min_size(pos2(r.left() + 4.0, embed.top() - 30.0), vec2(92.0, 22.0));
            boxed(e, encoder, true, None);
            arrow(pos2(e.center().x, e.bottom()), pos2(p.center().x, p.top()));
        }
    }
    arrow(pos2(cx, tokens.bottom()), pos2(cx, embed.top()));

    // The block, repeated L times; its frame is drawn once its contents are placed.
    let block_top = r.top() + 72.0;
    arrow(pos2(cx, embed.bottom()), pos2(cx, r.top() + 88.0));
    let norm1 = row(100.0, 20.0);
    boxed(norm1, "RMSNorm", t.norms, Some(Part::Norm));
    // Attention: q k v o, each a small box; side branches beside q and v.
    let attn = row(150.0, 64.0);
    group(attn, tr(ui, "attention"));
    let proj_w = 36.0;
    let proj = |i: usize, y: f32| {
        Rect::from_min_size(
            pos2(attn.left() + 8.0 + i as f32 * (proj_w + 6.0), y),
            vec2(proj_w, 20.0),
        )
    };
    // A projection's own box shows its measured change unless a side branch or a vector
    // drawn beside it carries the change (LoRA on q and v, IA3 on k and v).
    for (i, (name, part)) in [
        ("q", Part::Q),
        ("k", Part::K),
        ("v", Part::V),
        ("o", Part::O),
    ]
    .into_iter()
    .enumerate()
    {
        let b = proj(i, attn.top() + 18.0);
        let vector = t.rescale && (name == "k" || name == "v");
        let branch = t.low_rank.is_some() && (name == "q" || name == "v");
        let own = (!vector && !branch).then_some(part);
        boxed(b, name, t.weights || (t.biases && i < 3), own);
        if vector {
            scaling_vector(pos2(b.left() + 8.0, b.bottom() + 2.0), part);
        }
    }
    if let Some(label) = t.low_rank {
        // Beside the block, one branch each for q (straight in) and v (along a lane under
        // q and k, then up into v).
        let branch = Stroke::new(1.4, TRAINED);
        let q = proj(0, attn.top() + 18.0);
        let bq = Rect::from_min_size(pos2(r.left() + 2.0, q.center().y - 12.0), vec2(54.0, 24.0));
        boxed(bq, label, true, Some(Part::Q));
        painter.line_segment(
            [pos2(bq.right(), q.center().y), pos2(q.left(), q.center().y)],
            branch,
        );
        let v = proj(2, attn.top() + 18.0);
        let bv = Rect::from_min_size(pos2(r.left() + 2.0, v.bottom() + 2.0), vec2(54.0, 24.0));
        boxed(bv, label, true, Some(Part::V));
        let from = pos2(bv.right(), bv.center().y);
        painter.line_segment([from, pos2(v.center().x, from.y)], branch);
        painter.line_segment(
            [pos2(v.center().x, from.y), pos2(v.center().x, v.bottom())],
            branch,
        );
    }
    if t.budget {
        // Λ's diagonal: the singular values kept (trained) and those the budget masked.
        for i in 0..6 {
            let cell = Rect::from_min_size(
                pos2(r.left() + 4.0 + i as f32 * 9.0, attn.top() - 2.0),
                Vec2::splat(7.0),
            );
            painter.rect_filled(cell, 1.0, if i < 4 { TRAINED } else { frozen_fill });
        }
    }
    if let Some(reparam) = t.kv_prefix {
        // The prefix joins the keys and the values (after their projections), never the
        // queries: one lane under q, k and v, rising into the outputs of k and v.
        let b = Rect::from_min_size(pos2(r.left() + 2.0, attn.top() + 4.0), vec2(54.0, 30.0));
        boxed(
            b,
            &tr(ui, "K/V prefix").replacen(' ', "\n", 1),
            true,
            Some(Part::Prefix),
        );
        let lane = attn.bottom() - 10.0;
        let stroke = Stroke::new(1.4, TRAINED);
        painter.line_segment(
            [pos2(b.center().x, b.bottom()), pos2(b.center().x, lane)],
            stroke,
        );
        let v = proj(2, attn.top() + 18.0);
        painter.line_segment([pos2(b.center().x, lane), pos2(v.center().x, lane)], stroke);
        for target in [proj(1, attn.top() + 18.0), v] {
            painter.arrow(
                pos2(target.center().x, lane),
                vec2(0.0, target.bottom() - lane),
                stroke,
            );
        }
        if !reparam.is_empty() {
            // Named as the reparameterisation, so it does not read as the block's MLP.
            let m = Rect::from_min_size(pos2(r.left() + 2.0, b.top() - 36.0), vec2(54.0, 30.0));
            boxed(m, tr(ui, "reparam.\nMLP"), true, None);
            arrow(pos2(m.center().x, m.bottom()), pos2(b.center().x, b.top()));
        }
    }
    arrow(pos2(cx, norm1.bottom()), pos2(cx, attn.top()));
    // After a sublayer: its adapter (if the method has one) and the residual sum.
    let adapter_label = tr(ui, "adapter: down, f, up (+ skip)");
    let adapter_and_add = |below: f32, part: Part| -> Rect {
        let mut y = below + 8.0;
        if t.adapters {
            let a = Rect::from_min_size(pos2(cx - w / 2.0, y), vec2(w, 20.0));
            boxed(a, adapter_label, true, Some(part));
            y = a.bottom() + 6.0;
        }
        let add = Rect::from_center_size(pos2(cx, y + 9.0), vec2(18.0, 18.0));
        painter.circle_stroke(add.center(), 9.0, Stroke::new(1.0, text_color));
        painter.text(
            add.center(),
            egui::Align2::CENTER_CENTER,
            "+",
            font.clone(),
            text_color,
        );
        add
    };
    let add1 = adapter_and_add(attn.bottom(), Part::AttentionAdapter);
    // The residual stream: what enters a sub-layer's norm is added back after it.
    let lane_x = cx + w / 2.0 + 14.0;
    let residual = |from_y: f32, add: Rect| {
        let s = Stroke::new(1.0, text_color);
        painter.line_segment([pos2(cx, from_y), pos2(lane_x, from_y)], s);
        painter.line_segment([pos2(lane_x, from_y), pos2(lane_x, add.center().y)], s);
        painter.arrow(
            pos2(lane_x, add.center().y),
            vec2(add.right() - lane_x, 0.0),
            s,
        );
    };
    residual(norm1.top() - 6.0, add1);
    let norm2 = Rect::from_min_size(pos2(cx - w / 2.0, add1.bottom() + 10.0), vec2(w, 20.0));
    boxed(norm2, "RMSNorm", t.norms, Some(Part::Norm));
    arrow(pos2(cx, add1.bottom()), pos2(cx, norm2.top()));
    let mlp = Rect::from_min_size(pos2(cx - w / 2.0, norm2.bottom() + 12.0), vec2(w, 50.0));
    group(mlp, "MLP");
    for (i, (name, part)) in [("gate", Part::Gate), ("up", Part::Up), ("down", Part::Down)]
        .into_iter()
        .enumerate()
    {
        let b = Rect::from_min_size(
            pos2(mlp.left() + 8.0 + i as f32 * 56.0, mlp.top() + 18.0),
            vec2(50.0, 20.0),
        );
        let vector = t.rescale && name == "down";
        boxed(b, name, t.weights, (!vector).then_some(part));
        if vector {
            scaling_vector(pos2(b.left() - 4.0, b.top() - 14.0), part);
        }
    }
    arrow(pos2(cx, norm2.bottom()), pos2(cx, mlp.top()));
    let add2 = adapter_and_add(mlp.bottom(), Part::MlpAdapter);
    residual(add1.bottom() + 4.0, add2);
    let block = Rect::from_min_max(
        pos2(r.left() + 60.0, block_top),
        pos2(r.right() - 4.0, add2.bottom() + 10.0),
    );
    painter.rect_stroke(
        block,
        6.0,
        Stroke::new(1.0, text_color),
        egui::StrokeKind::Inside,
    );
    painter.text(
        pos2(block.right() - 6.0, block.bottom() - 4.0),
        egui::Align2::RIGHT_BOTTOM,
        tr(ui, "× L blocks"),
        small.clone(),
        text_color,
    );

    // Output.
    let final_norm = Rect::from_min_size(pos2(cx - w / 2.0, block.bottom() + 14.0), vec2(w, 20.0));
    boxed(final_norm, "RMSNorm", t.norms, Some(Part::Norm));
    arrow(pos2(cx, block.bottom()), pos2(cx, final_norm.top()));
    let head = Rect::from_min_size(
        pos2(cx - w / 2.0, final_norm.bottom() + 12.0),
        vec2(w, 22.0),
    );
    boxed(head, tr(ui, "LM head"), t.head, Some(Part::Head));
    arrow(pos2(cx, final_norm.bottom()), pos2(cx, head.top()));

    // Legend.
    let legend = |i: usize, fill: Color32, label: &str| {
        let b = Rect::from_min_size(
            pos2(r.left() + 4.0, r.bottom() - 52.0 + i as f32 * 17.0),
            Vec2::splat(12.0),
        );
        painter.rect_filled(b, 2.0, fill);
        painter.text(
            pos2(b.right() + 4.0, b.center().y),
            egui::Align2::LEFT_CENTER,
            label,
            small.clone(),
            text_color,
        );
    };
    match measured {
        None => {
            legend(0, TRAINED, trained_label);
            legend(1, frozen_fill, frozen_label);
        }
        Some(_) => {
            // Short: the legend sits beside the lowest boxes.
            legend(
                0,
                TRAINED,
                &trf(ui, "largest: {}", &[&format!("{largest:.4}")]),
            );
            legend(1, frozen_fill, tr(ui, "not measured"));
        }
    }
    if t.budget {
        legend(
            2,
            frozen_fill,
            tr(
                ui,
                "Λ (top left): singular values masked by the rank budget",
            ),
        );
    }
    // The value under the pointer, with how many cells it averages.
    if let (Some(m), Some(pos)) = (measured, response.hover_pos()) {
        let hovered = drawn
            .borrow()
            .iter()
            .find(|(r, _)| r.contains(pos))
            .map(|(_, p)| *p);
        if let Some(part) = hovered
            && let Some((_, v, n)) = m.parts.iter().find(|(p, ..)| *p == part)
        {
            let text = trf(
                ui,
                "{}: {} (mean of {} measured cells)",
                &[&tr(ui, part.name()), &format!("{v:.5}"), n],
            );
            response.on_hover_text_at_pointer(text);
        }
    }
}

/// `a` to `b` by `t` in 0..=1, channel by channel.
fn lerp_color(a: Color32, b: Color32, t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let mix = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    Color32::from_rgb(mix(a.r(), b.r()), mix(a.g(), b.g()), mix(a.b(), b.b()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cells of each model family land on the drawn parts; GPT-2's fused projection on
    /// q, k and v at once; what the diagram does not draw on none.
    #[test]
    fn cells_of_each_family_find_their_part() {
        use Part::*;
        for (module, parts) in [
            ("self_attn.q_proj", &[Q][..]),
            ("self_attn.o_proj.weight", &[O]),
            ("mlp.down_proj", &[Down]),
            ("input_layernorm.weight", &[Norm]),
            ("model.embed_tokens.weight", &[Embedding]),
            ("lm_head.weight", &[Head]),
            ("attn.c_attn", &[Q, K, V]),
            ("attn.c_proj.bias", &[O]),
            ("mlp.c_fc", &[Up]),
            ("mlp.c_proj", &[Down]),
            ("ln_2.weight", &[Norm]),
            ("attention.self.query", &[Q]),
            ("attention.output.dense", &[O]),
            ("attention.output.LayerNorm.weight", &[Norm]),
            ("intermediate.dense", &[Up]),
            ("output.dense", &[Down]),
            ("attention_adapter", &[AttentionAdapter]),
            ("output_adapter", &[MlpAdapter]),
            ("virtual token 3", &[Prompt]),
            ("prefix value", &[Prefix]),
            ("rotary_inv_freq", &[]),
        ] {
            assert_eq!(parts_of(module), parts, "{module}");
        }
    }

    /// A part's value is the mean of its cells over the layers.
    #[test]
    fn a_part_is_the_mean_of_its_cells() {
        use crate::peft::update_map::UpdateCell;
        let cell = |layer, module: &str, value| UpdateCell {
            layer: Some(layer),
            module: module.into(),
            value,
            singular_values: Vec::new(),
        };
        let map = UpdateMap {
            measure: "m".into(),
            cells: vec![
                cell(0, "self_attn.q_proj", 1.0),
                cell(1, "self_attn.q_proj", 3.0),
                cell(0, "attn.c_attn", 4.0),
            ],
            unmeasured: None,
            nearest: Vec::new(),
        };
        let m = Measured::new(&map);
        assert_eq!(m.value(Part::Q), Some((1.0 + 3.0 + 4.0) / 3.0));
        assert_eq!(m.value(Part::K), Some(4.0));
        assert_eq!(m.value(Part::O), None);
        assert_eq!(m.largest(), 4.0);
    }
}
