//! The results plot (PNG): left, publish→receive latency by percentile for each system and
//! rate (log scales); right, resident memory per idle connection. plotters is the canvas and
//! the PNG encoder; text is drawn from font8x8's built-in bitmap glyphs, so the plot renders
//! the same on a machine without any system font.

use std::path::Path;

use anyhow::anyhow;
use font8x8::{BASIC_FONTS, UnicodeFonts};
use plotters::prelude::*;

use crate::results::{Latency, Results};
use crate::wire::System;

const W: i32 = 1280;
const H: i32 = 640;
/// The latency panel's plot box, in pixels.
const L: (i32, i32, i32, i32) = (90, 60, 840, 560);
/// The memory panel's plot box.
const M: (i32, i32, i32, i32) = (960, 60, 1240, 560);

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// Text at (x, y) (top left), `scale` pixels per glyph pixel.
fn text(area: &Area, x: i32, y: i32, s: &str, scale: i32, color: &RGBColor) {
    for (i, c) in s.chars().enumerate() {
        let Some(glyph) = BASIC_FONTS.get(c) else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + (i as i32 * 8 + col) * scale, y + row as i32 * scale);
                    for (dx, dy) in (0..scale).flat_map(|dx| (0..scale).map(move |dy| (dx, dy))) {
                        let _ = area.draw_pixel((px + dx, py + dy), color);
                    }
                }
            }
        }
    }
}

fn line(area: &Area, pts: Vec<(i32, i32)>, color: RGBColor, width: u32) -> anyhow::Result<()> {
    area.draw(&PathElement::new(pts, color.stroke_width(width))).map_err(err)
}

/// Percentile p (0..99.99) on the "nines" axis: x = -log10(1 - p/100), 0..4.
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-4).log10()
}

fn palette(system: System, i: usize) -> RGBColor {
    let herald = [RGBColor(31, 119, 180), RGBColor(23, 190, 207), RGBColor(44, 160, 44), RGBColor(9, 60, 120)];
    let sio = [RGBColor(214, 39, 40), RGBColor(255, 127, 14), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];
    match system {
        System::Herald => herald[i % herald.len()],
        System::SocketIo => sio[i % sio.len()],
    }
}

pub fn draw(results: &Results, png: &Path) -> anyhow::Result<()> {
    let area = BitMapBackend::new(png, (W as u32, H as u32)).into_drawing_area();
    area.fill(&WHITE).map_err(err)?;
    let title = format!(
        "Herald vs Socket.IO+Redis - {} cores, {}{}",
        results.machine.cores,
        results.machine.cpu.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
        if results.smoke { " (smoke sizes)" } else { "" }
    );
    text(&area, 20, 16, &title, 2, &BLACK);

    // Latency curves: every latency rate, the fan-out and the storm, per system.
    let mut curves: Vec<(String, RGBColor, &Latency)> = Vec::new();
    for s in &results.systems {
        let mut i = 0;
        for r in &s.latency {
            curves.push((format!("{} {}/s", s.system.label(), r.rate), palette(s.system, i), &r.latency));
            i += 1;
        }
        if let Some(st) = s.storm.as_ref().filter(|st| st.latency.count > 0) {
            curves.push((format!("{} storm", s.system.label()), palette(s.system, i), &st.latency));
        }
    }
    let max_ms = curves.iter().flat_map(|c| c.2.curve.iter().map(|p| p.1)).fold(1.0f64, f64::max);
    let (lo, hi) = (-1.0f64, max_ms.log10().ceil().max(1.0)); // 0.1 ms .. the next power of ten
    let (x0, y0, x1, y1) = L;
    let px = |p: f64| x0 + ((nines(p) / 4.0) * (x1 - x0) as f64) as i32;
    let py = |ms: f64| y1 - (((ms.max(0.1).log10() - lo) / (hi - lo)) * (y1 - y0) as f64) as i32;
    let grey = RGBColor(220, 220, 220);
    for d in (lo as i32)..=(hi as i32) {
        let y = py(10f64.powi(d));
        line(&area, vec![(x0, y), (x1, y)], grey, 1)?;
        let label = if d < 0 { "0.1".to_owned() } else { format!("{}", 10u64.pow(d as u32)) };
        text(&area, x0 - 10 - 8 * label.len() as i32, y - 4, &label, 1, &BLACK);
    }
    for (p, label) in [(0.0, "p0"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"), (99.99, "p99.99")] {
        let x = px(p);
        line(&area, vec![(x, y0), (x, y1)], grey, 1)?;
        text(&area, x - 12, y1 + 8, label, 1, &BLACK);
    }
    line(&area, vec![(x0, y0), (x0, y1), (x1, y1)], BLACK, 1)?;
    text(&area, x0, y0 - 20, "publish -> receive latency, ms (log) by percentile", 1, &BLACK);
    for (i, (label, color, lat)) in curves.iter().enumerate() {
        let pts: Vec<(i32, i32)> = lat.curve.iter().map(|(p, ms)| (px(*p), py(*ms))).collect();
        line(&area, pts, *color, 2)?;
        let ly = y0 + 10 + i as i32 * 14;
        line(&area, vec![(x0 + 12, ly + 4), (x0 + 36, ly + 4)], *color, 3)?;
        text(&area, x0 + 42, ly, label, 1, &BLACK);
    }

    // Memory per idle connection, one bar per system.
    let (x0, y0, x1, y1) = M;
    let bars: Vec<(System, f64)> =
        results.systems.iter().filter_map(|s| Some((s.system, s.idle.as_ref()?.rss_per_conn_mean / 1024.0))).collect();
    let top = bars.iter().map(|b| b.1).fold(4.0f64, f64::max) * 1.15;
    let by = |kib: f64| y1 - ((kib / top) * (y1 - y0) as f64) as i32;
    text(&area, x0 - 20, y0 - 20, "RSS per idle connection, KiB", 1, &BLACK);
    line(&area, vec![(x0, y0), (x0, y1), (x1, y1)], BLACK, 1)?;
    let goal = by(4.0);
    line(&area, vec![(x0, goal), (x1, goal)], RGBColor(120, 120, 120), 1)?;
    text(&area, x0 + 4, goal - 12, "goal 4 KiB", 1, &BLACK);
    let width = (x1 - x0) / (bars.len().max(1) as i32 * 2 + 1);
    for (i, (system, kib)) in bars.iter().enumerate() {
        let bx = x0 + width * (2 * i as i32 + 1);
        area.draw(&Rectangle::new([(bx, by(*kib)), (bx + width, y1)], palette(*system, 0).filled())).map_err(err)?;
        text(&area, bx, by(*kib) - 14, &format!("{kib:.1}"), 1, &BLACK);
        text(&area, bx, y1 + 8, system.label(), 1, &BLACK);
    }
    area.present().map_err(err)?;
    Ok(())
}
