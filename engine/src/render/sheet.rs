//! Labelled PNG sheets. A training snapshot as one contact sheet: the batch's images (keypoints
//! drawn on source and driving) on the first row, the maps (colour-mapped) below; training writes
//! one every few seconds into the run folder, so a run can be looked at without the window. Also
//! the difference heatmaps and the comparison figure of evaluation and ablation.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

use super::colormap::Colormap;
use super::snapshot::{Map, Snapshot, SnapshotMap};

const LABEL_HEIGHT: u32 = 12;
const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 28]);

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

/// The whole sheet.
pub fn snapshot_sheet(snapshot: &Snapshot) -> RgbImage {
    let images = snapshot
        .images
        .iter()
        .map(|(which, image)| {
            let mut image = image.clone();
            if let Some(points) = snapshot.keypoints(*which) {
                draw_keypoints(&mut image, points);
            }
            (which.name().to_string(), image)
        })
        .collect();
    // TPSMM's coarser occlusion masks on one row, the masks on the next, the U-Net decoder's
    // maps (when the variant has them) on the last.
    let map_row = |in_row: fn(SnapshotMap) -> bool| -> Vec<(String, RgbImage)> {
        SnapshotMap::ALL
            .into_iter()
            .filter(|&which| in_row(which))
            .filter_map(|which| {
                let map = snapshot.map(which)?;
                Some((which.name().to_string(), map_image(map, which.default_colormap())))
            })
            .collect()
    };
    let rows: Vec<Vec<(String, RgbImage)>> = [
        images,
        map_row(SnapshotMap::is_coarser_occlusion),
        map_row(|which| !which.is_coarser_occlusion() && !which.is_decoder()),
        map_row(SnapshotMap::is_decoder),
    ]
    .into_iter()
    .filter(|row| !row.is_empty())
    .collect();
    labelled_grid(&format!("{} step {}", snapshot.variant, snapshot.step), &rows)
}

/// Labelled tiles in rows under a title; tiles are enlarged to at least 160 px wide so small
/// frames can be seen and their labels fit. A tile with an empty label and image is left blank.
pub fn labelled_grid(title: &str, rows: &[Vec<(String, RgbImage)>]) -> RgbImage {
    let (tile_w, tile_h) = rows
        .iter()
        .flatten()
        .map(|(_, i)| i.dimensions())
        .fold((1, 1), |(w, h), (a, b)| (w.max(a), h.max(b)));
    let scale = 160u32.div_ceil(tile_w).max(1);
    let (tile_w, tile_h) = (tile_w * scale, tile_h * scale);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let width = columns * (tile_w + GAP) + GAP;
    let height = rows.len() as u32 * (tile_h + LABEL_HEIGHT + GAP) + GAP + LABEL_HEIGHT;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    draw_text(&mut canvas, GAP, 2, title);
    for (r, row) in rows.iter().enumerate() {
        let y = LABEL_HEIGHT + GAP + r as u32 * (tile_h + LABEL_HEIGHT + GAP);
        for (c, (name, image)) in row.iter().enumerate() {
            if image.width() == 0 {
                continue;
            }
            let x = GAP + c as u32 * (tile_w + GAP);
            draw_text(&mut canvas, x, y, name);
            let tile = image::imageops::resize(image, tile_w, tile_h, image::imageops::FilterType::Nearest);
            image::imageops::replace(&mut canvas, &tile, x as i64, (y + LABEL_HEIGHT) as i64);
        }
    }
    canvas
}

/// The mean absolute difference over RGB at which the difference heatmaps saturate: 0.25 is a
/// quarter of the whole range, far past what a fair reconstruction leaves.
pub const DIFFERENCE_RANGE: f32 = 0.25;

/// |real − reconstruction| per pixel (mean over RGB), magma from 0 to [`DIFFERENCE_RANGE`].
pub fn difference_image(real: &RgbImage, reconstruction: &RgbImage) -> RgbImage {
    RgbImage::from_fn(real.width(), real.height(), |x, y| {
        let (a, b) = (real.get_pixel(x, y), reconstruction.get_pixel(x, y));
        let d = (0..3)
            .map(|c| (f32::from(a[c]) - f32::from(b[c])).abs() / 255.0)
            .sum::<f32>()
            / 3.0;
        Colormap::Magma.colour(d / DIFFERENCE_RANGE)
    })
}

/// One example of a comparison: the source, the real frame and a model's reconstruction of it.
#[derive(Debug, Clone)]
pub struct Example {
    pub source: RgbImage,
    pub real: RgbImage,
    pub reconstruction: RgbImage,
}

/// The ablation's picture, the paper's Figure 5: per example a row of the source, the real
/// driving frame and each model's reconstruction, and beneath it each model's difference heatmap.
/// `models` holds each model's name and its examples, the same examples in the same order.
pub fn comparison_figure(title: &str, models: &[(String, Vec<Example>)]) -> RgbImage {
    let examples = models.iter().map(|(_, e)| e.len()).min().unwrap_or(0);
    let blank = || (String::new(), RgbImage::new(0, 0));
    let mut rows = Vec::with_capacity(2 * examples);
    for e in 0..examples {
        let Some((_, first)) = models.first() else { break };
        let mut pictures = vec![
            ("source".to_string(), first[e].source.clone()),
            ("driving".to_string(), first[e].real.clone()),
        ];
        let mut differences = vec![blank(), blank()];
        for (name, per_example) in models {
            let example = &per_example[e];
            pictures.push((name.clone(), example.reconstruction.clone()));
            differences.push((
                format!("|diff| {name}"),
                difference_image(&example.real, &example.reconstruction),
            ));
        }
        rows.push(pictures);
        rows.push(differences);
    }
    labelled_grid(title, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;
    use crate::render::SnapshotImage;
    use crate::render::colormap::viridis;

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
            images: vec![(SnapshotImage::Source, image.clone()), (SnapshotImage::Driving, image)],
            maps: vec![(SnapshotMap::Occlusion, map.clone()), (SnapshotMap::DecoderReal, map)],
            keypoints: vec![(SnapshotImage::Source, vec![[0.0, 0.0]])],
        };
        let sheet = snapshot_sheet(&snapshot);
        // Two columns of 160-px tiles, three rows (images, maps, decoder maps).
        assert_eq!(sheet.width(), 2 * (160 + GAP) + GAP);
        assert_eq!(sheet.height(), 3 * (160 + LABEL_HEIGHT + GAP) + GAP + LABEL_HEIGHT);
        // The first map tile starts with the map's lowest value.
        let map_top = LABEL_HEIGHT + GAP + (160 + LABEL_HEIGHT + GAP) + LABEL_HEIGHT;
        assert_eq!(sheet.get_pixel(GAP, map_top), &viridis(0.0));
    }

    #[test]
    fn comparison_figure_puts_differences_under_reconstructions() {
        let real = RgbImage::from_pixel(16, 16, Rgb([100, 100, 100]));
        let exact = real.clone();
        let off = RgbImage::from_pixel(16, 16, Rgb([255, 255, 255]));
        let example = |reconstruction: RgbImage| Example {
            source: real.clone(),
            real: real.clone(),
            reconstruction,
        };
        let models = vec![
            ("A".to_string(), vec![example(exact)]),
            ("B".to_string(), vec![example(off)]),
        ];
        let figure = comparison_figure("test", &models);
        // Four columns (source, driving, A, B), two rows (pictures, differences).
        assert_eq!(figure.width(), 4 * (160 + GAP) + GAP);
        assert_eq!(figure.height(), 2 * (160 + LABEL_HEIGHT + GAP) + GAP + LABEL_HEIGHT);
        let difference_top = LABEL_HEIGHT + GAP + (160 + LABEL_HEIGHT + GAP) + LABEL_HEIGHT + 80;
        let column = |c: u32| GAP + c * (160 + GAP) + 80;
        // A is exact (darkest), B saturates the map; under source and driving nothing is drawn.
        assert_eq!(
            figure.get_pixel(column(2), difference_top),
            &Colormap::Magma.colour(0.0)
        );
        assert_eq!(
            figure.get_pixel(column(3), difference_top),
            &Colormap::Magma.colour(1.0)
        );
        assert_eq!(figure.get_pixel(column(0), difference_top), &BACKGROUND);
    }
}
