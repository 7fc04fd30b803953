//! A training snapshot as one labelled PNG contact sheet: the batch's images (keypoints drawn
//! on source and driving) on the first row, the maps (colour-mapped) below. The CLI writes one
//! every few seconds of training so a run can be looked at without the desktop window.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use prioritycut_engine::train::{Map, Snapshot};

use crate::colormap::Colormap;

const LABEL_HEIGHT: u32 = 12;
const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 28]);

/// Maps drawn and their order; absent ones are left out.
const MAP_ROWS: [&[&str]; 2] = [
    &[
        "occlusion",
        "background",
        "background_binary",
        "foreground_occlusion",
        "prioritycut_mask",
        "cutmix_mask",
    ],
    &["decoder_real", "decoder_fake", "decoder_mixed"],
];

/// A map, colour-mapped over its range (decoder scores: fake ↔ real, the rest viridis).
pub fn map_image(map: &Map, colormap: Colormap) -> RgbImage {
    let (low, high) = map.range;
    let span = (high - low).max(f32::EPSILON);
    RgbImage::from_fn(map.width as u32, map.height as u32, |x, y| {
        let v = map
            .values
            .get(y as usize * map.width + x as usize)
            .copied()
            .unwrap_or(0.0);
        colormap.colour((v - low) / span)
    })
}

/// Keypoint colours, spread around the hue circle as FOMM's visualizer does.
fn keypoint_colour(i: usize, n: usize) -> Rgb<u8> {
    let h = i as f32 / n.max(1) as f32 * 300.0;
    let c = 1.0;
    let x = 1.0 - ((h / 60.0) % 2.0 - 1.0).abs();
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        _ => (x, 0.0, c),
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

/// Draws keypoints ((x, y) in [-1, 1]) as small discs.
pub fn draw_keypoints(image: &mut RgbImage, points: &[[f32; 2]]) {
    let (w, h) = image.dimensions();
    let radius = (w.min(h) / 40).max(1) as i64;
    for (i, p) in points.iter().enumerate() {
        let cx = ((p[0] + 1.0) / 2.0 * (w as f32 - 1.0)).round() as i64;
        let cy = ((p[1] + 1.0) / 2.0 * (h as f32 - 1.0)).round() as i64;
        let colour = keypoint_colour(i, points.len());
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                let (x, y) = (cx + dx, cy + dy);
                if dx * dx + dy * dy <= radius * radius && x >= 0 && y >= 0 && x < w as i64 && y < h as i64 {
                    image.put_pixel(x as u32, y as u32, colour);
                }
            }
        }
    }
}

fn draw_text(canvas: &mut RgbImage, x: u32, y: u32, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + i as u32 * 7 + col, y + row as u32);
                    if px < canvas.width() && py < canvas.height() {
                        canvas.put_pixel(px, py, Rgb([230, 230, 230]));
                    }
                }
            }
        }
    }
}

/// The colour map a map is shown with by default.
pub fn default_colormap(name: &str) -> Colormap {
    if name.starts_with("decoder") {
        Colormap::FakeReal
    } else {
        Colormap::Viridis
    }
}

/// The whole sheet.
pub fn snapshot_sheet(snapshot: &Snapshot) -> RgbImage {
    let mut rows: Vec<Vec<(String, RgbImage)>> = Vec::new();
    let keypoints = |name: &str| {
        snapshot
            .keypoints
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k.as_slice())
    };
    let images = snapshot
        .images
        .iter()
        .map(|(name, image)| {
            let mut image = image.clone();
            if let Some(points) = keypoints(name) {
                draw_keypoints(&mut image, points);
            }
            (name.to_string(), image)
        })
        .collect();
    rows.push(images);
    for names in MAP_ROWS {
        let row: Vec<(String, RgbImage)> = names
            .iter()
            .filter_map(|name| {
                snapshot
                    .map(name)
                    .map(|m| (name.to_string(), map_image(m, default_colormap(name))))
            })
            .collect();
        if !row.is_empty() {
            rows.push(row);
        }
    }
    let (tile_w, tile_h) = rows
        .iter()
        .flatten()
        .map(|(_, i)| i.dimensions())
        .fold((1, 1), |(w, h), (a, b)| (w.max(a), h.max(b)));
    // Small frames are enlarged so that they can be seen and their labels fit.
    let scale = 160u32.div_ceil(tile_w).max(1);
    let (tile_w, tile_h) = (tile_w * scale, tile_h * scale);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let width = columns * (tile_w + GAP) + GAP;
    let height = rows.len() as u32 * (tile_h + LABEL_HEIGHT + GAP) + GAP + LABEL_HEIGHT;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    draw_text(
        &mut canvas,
        GAP,
        2,
        &format!("{} step {}", snapshot.variant, snapshot.step),
    );
    for (r, row) in rows.iter().enumerate() {
        let y = LABEL_HEIGHT + GAP + r as u32 * (tile_h + LABEL_HEIGHT + GAP);
        for (c, (name, image)) in row.iter().enumerate() {
            let x = GAP + c as u32 * (tile_w + GAP);
            draw_text(&mut canvas, x, y, name);
            let tile = image::imageops::resize(image, tile_w, tile_h, image::imageops::FilterType::Nearest);
            image::imageops::replace(&mut canvas, &tile, x as i64, (y + LABEL_HEIGHT) as i64);
        }
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colormap::viridis;
    use prioritycut_engine::train::Variant;

    #[test]
    fn sheet_holds_every_image_and_map() {
        let image = RgbImage::from_pixel(32, 32, Rgb([200, 0, 0]));
        let map = Map {
            width: 32,
            height: 32,
            values: (0..1024).map(|i| i as f32 / 1023.0).collect(),
            range: (0.0, 1.0),
        };
        let snapshot = Snapshot {
            step: 7,
            variant: Variant::UnetPrioritycut,
            images: vec![("source", image.clone()), ("driving", image)],
            maps: vec![("occlusion", map.clone()), ("decoder_real", map)],
            keypoints: vec![("source", vec![[0.0, 0.0]])],
        };
        let sheet = snapshot_sheet(&snapshot);
        // Two columns of 160-px tiles, three rows (images, maps, decoder maps).
        assert_eq!(sheet.width(), 2 * (160 + GAP) + GAP);
        assert_eq!(sheet.height(), 3 * (160 + LABEL_HEIGHT + GAP) + GAP + LABEL_HEIGHT);
        // The first map tile starts with the map's lowest value.
        let map_top = LABEL_HEIGHT + GAP + (160 + LABEL_HEIGHT + GAP) + LABEL_HEIGHT;
        assert_eq!(sheet.get_pixel(GAP, map_top), &viridis(0.0));
    }
}
