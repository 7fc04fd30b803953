//! The seam's layout convention, held here once. An operation takes and returns tensors of
//! burn's logical shape `[batch, channels, height, width]`, whatever their strides. The CPU's
//! fast kernels work channels-last (a pixel's channels contiguous): they return their outputs
//! *stored* channels-last — strides `[h·w·c, 1, w·c, c]`, a permuted view and not a copy — and
//! read an input stored that way in place, so a chain of fast operations never transposes.
//! burn's own operations read any strides, so a network written against burn never sees the
//! difference; only where a fast operation meets a planar (NCHW) input is it transposed once.

use std::borrow::Cow;

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::flex::{FlexPrimitive, dims4, values};
use super::winograd::Nhwc;

/// The values of a 4-D tensor of logical shape `[b, c, h, w]` in channels-last order, borrowed
/// where it is stored channels-last; `None` for any other storage.
pub fn stored_channels_last(x: &FlexPrimitive) -> Option<&[f32]> {
    if x.dtype() != DType::F32 || x.layout().num_dims() != 4 {
        return None;
    }
    let (start, end) = x.permute(&[0, 2, 3, 1]).layout().contiguous_offsets()?;
    Some(&x.storage::<f32>()[start..end])
}

/// A 4-D tensor of logical shape `[b, c, h, w]` as channels-last maps: borrowed where it is
/// stored channels-last, else transposed (in parallel tiles for planar storage).
pub fn channels_last(x: &FlexPrimitive) -> Nhwc<'_> {
    let [batch, channels, height, width] = dims4(x);
    let shape = [batch, height, width, channels];
    if let Some(stored) = stored_channels_last(x) {
        return Nhwc::borrowed(stored, shape);
    }
    let data = match x.as_slice::<f32>() {
        Some(planes) => transposed(planes, [batch, channels, height, width]),
        None => values(&x.permute(&[0, 2, 3, 1])).into_owned(),
    };
    Nhwc::owned(data, shape)
}

/// Whether a tensor on flex is stored channels-last and not also planar (a map of one channel
/// or one pixel is both).
pub fn is_channels_last(x: &FlexPrimitive) -> bool {
    stored_channels_last(x).is_some() && x.as_slice::<f32>().is_none()
}

/// `torch.cat(tensors, dim=1)` of maps on flex where one of them is stored channels-last: the
/// result is too, so that the convolution after it (an hourglass's next up block) reads it in
/// place. `None` otherwise: burn's concatenation serves.
pub fn cat_channels_last(tensors: &[Tensor<4>]) -> Option<Tensor<4>> {
    let primitives = tensors
        .iter()
        .map(|t| t.clone().try_into_primitive::<burn::backend::Flex>().ok())
        .collect::<Option<Vec<FlexPrimitive>>>()?;
    if !primitives.iter().any(is_channels_last) {
        return None;
    }
    let maps: Vec<Nhwc<'_>> = primitives.iter().map(channels_last).collect();
    let (first, rest) = maps.split_first()?;
    let joined = rest.iter().fold(first.clone().into_owned(), |all, next| all.cat(next));
    Some(joined.into_tensor(&Device::flex()))
}

/// NCHW values → channels-last, a row of pixels per task (flex's permuted copy runs on one core, and
/// on 256² maps took as long as the convolution's arithmetic).
pub fn transposed(planes: &[f32], [batch, channels, height, width]: [usize; 4]) -> Vec<f32> {
    debug_assert_eq!(planes.len(), batch * channels * height * width, "values for the shape");
    transposed_images(planes, [channels, height * width])
}

/// Channels-last → a contiguous NCHW tensor, so that the ops after it (batch norms, ReLUs,
/// pooling) read contiguous planes.
pub fn to_nchw(x: &Nhwc<'_>, device: &Device) -> Tensor<4> {
    let data = transposed_images(&x.data, [x.height * x.width, x.channels]);
    Tensor::from_data(TensorData::new(data, [x.batch, x.channels, x.height, x.width]), device)
}

/// A 4-D tensor's values in NCHW order: borrowed where it is stored so, transposed in parallel
/// tiles where it is stored channels-last (flex's copy of the view runs on one core), copied by
/// flex otherwise.
pub fn planar_values(x: &FlexPrimitive) -> Cow<'_, [f32]> {
    if let Some(planes) = x.as_slice::<f32>() {
        return Cow::Borrowed(planes);
    }
    match stored_channels_last(x) {
        Some(pixels) => {
            let [_, channels, height, width] = dims4(x);
            Cow::Owned(transposed_images(pixels, [height * width, channels]))
        }
        None => values(x),
    }
}

/// Each image of `values`, a row-major [rows, columns] matrix, transposed by the parallel tiles
/// (images one after another): NCHW ↔ channels-last.
fn transposed_images(values: &[f32], [rows, columns]: [usize; 2]) -> Vec<f32> {
    let mut data = zeroed(values.len());
    if rows > 0 && columns > 0 {
        for (out, image) in data.chunks_mut(rows * columns).zip(values.chunks_exact(rows * columns)) {
            transpose(image, [rows, columns], out);
        }
    }
    data
}

/// The side of [`transpose`]'s tiles: a cache line of f32.
const TILE: usize = 16;

/// The side of [`transpose`]'s blocks, one task each: runs of up to 1 KiB read from the source
/// and written to the destination, 256 KiB at most in flight per task.
const BLOCK: usize = 256;

/// `destination = sourceᵀ` for a row-major `source` [rows, columns], by blocks of up to
/// BLOCK × BLOCK, each read as runs along the source's rows and written as runs along the
/// destination's, through 16×16 tiles. A task per block, whichever side is long: with a task
/// per band of 16 destination rows, a planar map of 128 channels at 256² was read as 64-byte
/// pieces 512 bytes apart, eight passes over it (3 GB/s: 25 ms each way, a sixth of the
/// training-form convolution's time at that size).
fn transpose(source: &[f32], [rows, columns]: [usize; 2], destination: &mut [f32]) {
    debug_assert_eq!(source.len(), rows * columns, "values for the shape");
    debug_assert_eq!(destination.len(), rows * columns, "room for the transpose");
    if rows == 0 || columns == 0 {
        return;
    }
    let (row_blocks, column_blocks) = (rows.div_ceil(BLOCK), columns.div_ceil(BLOCK));
    // Each block's part of each destination row it writes, handed to its task.
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..row_blocks * column_blocks)
        .map(|block| Vec::with_capacity(BLOCK.min(columns - (block % column_blocks) * BLOCK)))
        .collect();
    for (column, line) in destination.chunks_mut(rows).enumerate() {
        for (row_block, part) in line.chunks_mut(BLOCK).enumerate() {
            blocks[row_block * column_blocks + column / BLOCK].push(part);
        }
    }
    blocks.into_par_iter().enumerate().for_each(|(block, mut lines)| {
        let (first_row, first_column) = ((block / column_blocks) * BLOCK, (block % column_blocks) * BLOCK);
        let mut tile = [[0.0f32; TILE]; TILE];
        for (tile_row, rows_at) in (first_row..(first_row + BLOCK).min(rows)).step_by(TILE).enumerate() {
            let height = TILE.min(rows - rows_at);
            for (tile_column, lines) in lines.chunks_mut(TILE).enumerate() {
                let width = lines.len();
                let columns_at = first_column + tile_column * TILE;
                if (height, width) == (TILE, TILE) {
                    // Whole tiles in fixed-size copies, no calls to memcpy.
                    for (r, line) in tile.iter_mut().enumerate() {
                        *line = source[(rows_at + r) * columns + columns_at..][..TILE]
                            .try_into()
                            .unwrap_or_else(|_| unreachable!("a whole tile's row"));
                    }
                    for (c, destination) in lines.iter_mut().enumerate() {
                        let destination: &mut [f32; TILE] = (&mut destination[tile_row * TILE..][..TILE])
                            .try_into()
                            .unwrap_or_else(|_| unreachable!("a whole tile's column"));
                        *destination = std::array::from_fn(|r| tile[r][c]);
                    }
                    continue;
                }
                for (r, line) in tile.iter_mut().enumerate().take(height) {
                    line[..width].copy_from_slice(&source[(rows_at + r) * columns + columns_at..][..width]);
                }
                for (c, destination) in lines.iter_mut().enumerate() {
                    for (r, value) in destination[tile_row * TILE..][..height].iter_mut().enumerate() {
                        *value = tile[r][c];
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::flex::primitive;
    use crate::test_support::uniform;

    /// A permuted view is read in place; planar and other strides are transposed; all three
    /// give the same channels-last values, and the same planar ones.
    #[test]
    fn every_storage_reads_as_the_same_channels_last_values() {
        let planar = uniform([2, 5, 3, 4], 1.0);
        let planar_expected: Vec<f32> = planar.clone().into_data().convert::<f32>().try_into_vec().expect("f32");
        let expected: Vec<f32> = planar
            .clone()
            .permute([0, 2, 3, 1])
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("f32");
        let stored = Nhwc::owned(expected.clone(), [2, 3, 4, 5]).into_tensor(&Device::flex());
        // Neither planar nor channels-last: height and width swapped in storage.
        let other = planar.clone().swap_dims(2, 3).into_data();
        let other = Tensor::<4>::from_data(other, &Device::flex()).swap_dims(2, 3);
        for (name, tensor, in_place) in [
            ("planar", planar, false),
            ("channels-last", stored, true),
            ("other", other, false),
        ] {
            let x = primitive(tensor);
            assert_eq!(is_channels_last(&x), in_place, "{name}");
            let maps = channels_last(&x);
            assert_eq!(matches!(maps.data, Cow::Borrowed(_)), in_place, "{name}");
            assert_eq!(maps.data.as_ref(), expected.as_slice(), "{name}");
            assert_eq!(planar_values(&x).as_ref(), planar_expected.as_slice(), "{name}, planar");
        }
    }

    /// Transposes by definition, for shapes of whole and partial tiles and blocks, long either way.
    #[test]
    fn transposes_are_exact_across_tiles_and_blocks() {
        for [rows, columns] in [
            [1, 1],
            [1, 5],
            [5, 1],
            [16, 16],
            [256, 256],
            [300, 530],
            [17, 1000],
            [1000, 17],
        ] {
            let source: Vec<f32> = (0..rows * columns).map(|i| i as f32).collect();
            let mut destination = vec![-1.0; rows * columns];
            transpose(&source, [rows, columns], &mut destination);
            for (row, values) in source.chunks_exact(columns).enumerate() {
                for (column, &value) in values.iter().enumerate() {
                    assert_eq!(
                        destination[column * rows + row],
                        value,
                        "{rows}×{columns} at ({row}, {column})"
                    );
                }
            }
        }
    }

    /// Concatenating a channels-last map with a planar one gives burn's result, stored
    /// channels-last; two planar maps are left to burn.
    #[test]
    fn channel_concatenation_keeps_channels_last_storage() {
        let a = uniform([2, 3, 4, 5], 1.0);
        let b = uniform([2, 2, 4, 5], 1.0);
        let a_stored = channels_last(&primitive(a.clone()))
            .into_owned()
            .into_tensor(&Device::flex());
        let joined = cat_channels_last(&[a_stored, b.clone()]).expect("one is channels-last");
        assert!(is_channels_last(&primitive(joined.clone())));
        let expected = Tensor::cat(vec![a.clone(), b.clone()], 1);
        assert_eq!(joined.into_data(), expected.into_data());
        assert!(cat_channels_last(&[a, b]).is_none(), "planar maps take burn's");
    }
}
