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

/// `destination = sourceᵀ` for a row-major `source` [rows, columns]. By 16×16 tiles, a band of 16 destination rows per task,
/// each destination line written whole: the maps' planes lie a power of two apart, and
/// writing them a value at a time (or gathering a plane from every pixel) thrashed the caches'
/// sets (1.5 GB/s on 256² maps).
fn transpose(source: &[f32], [rows, columns]: [usize; 2], destination: &mut [f32]) {
    destination
        .par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let first_column = band * TILE;
            let count = out.len() / rows;
            let mut tile = [[0.0f32; TILE]; TILE];
            for first_row in (0..rows).step_by(TILE) {
                let height = TILE.min(rows - first_row);
                for (r, at) in (first_row..first_row + height)
                    .map(|row| row * columns + first_column)
                    .enumerate()
                {
                    for (line, &v) in tile.iter_mut().zip(&source[at..][..count]) {
                        line[r] = v;
                    }
                }
                for (c, line) in tile.iter().enumerate().take(count) {
                    out[c * rows + first_row..][..height].copy_from_slice(&line[..height]);
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
