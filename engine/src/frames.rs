//! Images ↔ tensors: the one place where 8-bit RGB frames become the networks' planar
//! `[n, 3, h, w]` floats in [0, 1], and back (rounded, clamped), and where they are resized to a
//! network's input.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use image::imageops::FilterType;

/// Resizes to exactly `width × height` (FOMM resizes frames to `frame_shape`, aspect ignored).
pub fn resize_to(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    image::imageops::resize(image, width, height, FilterType::Triangle)
}

/// RGB images of one size → planar `[n, 3, h, w]` floats in [0, 1].
pub fn planar_rgb<'a>(images: impl IntoIterator<Item = &'a RgbImage>) -> Vec<f32> {
    let mut out = Vec::new();
    for image in images {
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let start = out.len();
        out.resize(start + 3 * plane, 0.0);
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                out[start + c * plane + i] = pixel[c] as f32 / 255.0;
            }
        }
    }
    out
}

/// An RGB frame as a [1, 3, h, w] tensor in [0, 1].
pub fn image_to_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    images_to_tensor(std::slice::from_ref(image), device)
}

/// Frames of one size as a [n, 3, h, w] batch in [0, 1].
pub fn images_to_tensor(images: &[RgbImage], device: &Device) -> Tensor<4> {
    let (w, h) = images.first().map(RgbImage::dimensions).unwrap_or((0, 0));
    let shape = [images.len(), 3, h as usize, w as usize];
    Tensor::from_data(TensorData::new(planar_rgb(images), shape), device)
}

/// `image` resized to a network's input (`size` = (width, height)) as a [1, 3, h, w] tensor.
pub fn frame_tensor(image: &RgbImage, size: (u32, u32), device: &Device) -> Tensor<4> {
    image_to_tensor(&resize_to(image, size.0, size.1), device)
}

/// A tensor's values in logical (row-major) order, as f32; empty if they cannot be read.
pub fn tensor_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// Batch element 0 of a [b, 3, h, w] tensor in [0, 1] as an RGB image.
pub fn tensor_to_image(tensor: Tensor<4>) -> RgbImage {
    tensor_to_images(tensor.narrow(0, 0, 1)).pop().unwrap_or_default()
}

/// Every element of a [b, 3, h, w] tensor in [0, 1] as an RGB image.
pub fn tensor_to_images(tensor: Tensor<4>) -> Vec<RgbImage> {
    let [b, _, h, w] = tensor.dims();
    let values = tensor_values(tensor);
    let plane = h * w;
    (0..b)
        .map(|n| {
            let base = n * 3 * plane;
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let i = y as usize * w + x as usize;
                image::Rgb(std::array::from_fn(|c| {
                    let v = values.get(base + c * plane + i).copied().unwrap_or(0.0);
                    (v.clamp(0.0, 1.0) * 255.0).round() as u8
                }))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tensor_round_trip() {
        let device = Device::flex();
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 200, 7]));
        let back = tensor_to_image(image_to_tensor(&image, &device));
        assert_eq!(image, back);
    }

    #[test]
    fn batches_keep_their_order() {
        let device = Device::flex();
        let frames: Vec<RgbImage> = (0..3u8)
            .map(|n| RgbImage::from_fn(4, 2, |x, y| image::Rgb([n * 60, x as u8 * 50, y as u8 * 90])))
            .collect();
        let batch = images_to_tensor(&frames, &device);
        assert_eq!(batch.dims(), [3, 3, 2, 4]);
        assert_eq!(tensor_to_images(batch.clone()), frames);
        assert_eq!(tensor_to_image(batch.narrow(0, 2, 1)), frames[2]);
    }
}
