//! A decoder block drawn with the parts a method trains filled in.

use eframe::egui::{self, Color32, Pos2, Rect, Stroke, Vec2, pos2, vec2};

use super::super::i18n::tr;
use super::pages::Trained;

const TRAINED: Color32 = Color32::from_rgb(230, 126, 34);

/// A decoder block drawn top to bottom, trained parts filled in orange.
pub(super) fn diagram(ui: &mut egui::Ui, t: &Trained) {
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
    let boxed = |rect: Rect, label: &str, trained: bool| {
        let fill = if trained { TRAINED } else { frozen_fill };
        painter.rect_filled(rect, 4.0, fill);
        let color = if trained { Color32::BLACK } else { text_color };
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
    let scaling_vector = |at: Pos2| {
        let s = Rect::from_min_size(at, vec2(20.0, 12.0));
        painter.rect_filled(s, 2.0, TRAINED);
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
    boxed(embed, tr(ui, "embedding"), t.embedding);
    if let Some(encoder) = t.prompt {
        let p = Rect::from_min_size(pos2(r.left() + 4.0, embed.top()), vec2(92.0, 24.0));
        boxed(p, tr(ui, "soft prompt"), true);
        if !encoder.is_empty() {
            let e = Rect::from_min_size(pos2(r.left() + 4.0, embed.top() - 30.0), vec2(92.0, 22.0));
            boxed(e, encoder, true);
            arrow(pos2(e.center().x, e.bottom()), pos2(p.center().x, p.top()));
        }
    }
    arrow(pos2(cx, tokens.bottom()), pos2(cx, embed.top()));

    // The block, repeated L times; its frame is drawn once its contents are placed.
    let block_top = r.top() + 72.0;
    arrow(pos2(cx, embed.bottom()), pos2(cx, r.top() + 88.0));
    let norm1 = row(100.0, 20.0);
    boxed(norm1, "RMSNorm", t.norms);
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
    for (i, name) in ["q", "k", "v", "o"].iter().enumerate() {
        let b = proj(i, attn.top() + 18.0);
        boxed(b, name, t.weights || (t.biases && i < 3));
        if t.rescale && (*name == "k" || *name == "v") {
            scaling_vector(pos2(b.left() + 8.0, b.bottom() + 2.0));
        }
    }
    if let Some(label) = t.low_rank {
        // Beside the block, one branch each for q (straight in) and v (along a lane under
        // q and k, then up into v).
        let branch = Stroke::new(1.4, TRAINED);
        let q = proj(0, attn.top() + 18.0);
        let bq = Rect::from_min_size(pos2(r.left() + 2.0, q.center().y - 12.0), vec2(54.0, 24.0));
        boxed(bq, label, true);
        painter.line_segment(
            [pos2(bq.right(), q.center().y), pos2(q.left(), q.center().y)],
            branch,
        );
        let v = proj(2, attn.top() + 18.0);
        let bv = Rect::from_min_size(pos2(r.left() + 2.0, v.bottom() + 2.0), vec2(54.0, 24.0));
        boxed(bv, label, true);
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
        boxed(b, &tr(ui, "K/V prefix").replacen(' ', "\n", 1), true);
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
            boxed(m, tr(ui, "reparam.\nMLP"), true);
            arrow(pos2(m.center().x, m.bottom()), pos2(b.center().x, b.top()));
        }
    }
    arrow(pos2(cx, norm1.bottom()), pos2(cx, attn.top()));
    // After a sublayer: its adapter (if the method has one) and the residual sum.
    let adapter_label = tr(ui, "adapter: down, f, up (+ skip)");
    let adapter_and_add = |below: f32| -> Rect {
        let mut y = below + 8.0;
        if t.adapters {
            let a = Rect::from_min_size(pos2(cx - w / 2.0, y), vec2(w, 20.0));
            boxed(a, adapter_label, true);
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
    let add1 = adapter_and_add(attn.bottom());
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
    boxed(norm2, "RMSNorm", t.norms);
    arrow(pos2(cx, add1.bottom()), pos2(cx, norm2.top()));
    let mlp = Rect::from_min_size(pos2(cx - w / 2.0, norm2.bottom() + 12.0), vec2(w, 50.0));
    group(mlp, "MLP");
    for (i, name) in ["gate", "up", "down"].iter().enumerate() {
        let b = Rect::from_min_size(
            pos2(mlp.left() + 8.0 + i as f32 * 56.0, mlp.top() + 18.0),
            vec2(50.0, 20.0),
        );
        boxed(b, name, t.weights);
        if t.rescale && *name == "down" {
            scaling_vector(pos2(b.left() - 4.0, b.top() - 14.0));
        }
    }
    arrow(pos2(cx, norm2.bottom()), pos2(cx, mlp.top()));
    let add2 = adapter_and_add(mlp.bottom());
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
    boxed(final_norm, "RMSNorm", t.norms);
    arrow(pos2(cx, block.bottom()), pos2(cx, final_norm.top()));
    let head = Rect::from_min_size(
        pos2(cx - w / 2.0, final_norm.bottom() + 12.0),
        vec2(w, 22.0),
    );
    boxed(head, tr(ui, "LM head"), t.head);
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
    legend(0, TRAINED, trained_label);
    legend(1, frozen_fill, frozen_label);
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
}
