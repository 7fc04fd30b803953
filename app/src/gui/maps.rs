//! Single-channel maps on screen: uploaded as float textures and colour-mapped by
//! `shaders/colormap.wgsl` in an egui-wgpu paint callback, over the image they belong to with an
//! adjustable opacity. Without a wgpu renderer (glow, some tests) the same lookup table is
//! applied on the CPU.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu::{self, wgpu};
use image::RgbImage;
use prioritycut_engine::render::Map;

use prioritycut_engine::render::Colormap;

/// A map to draw, what is under it and how.
#[derive(Clone, Debug)]
pub struct MapLayer {
    /// Stable per widget; `version` changes when the data does.
    pub id: egui::Id,
    pub version: u64,
    pub map: Arc<Map>,
    pub image: Option<Arc<RgbImage>>,
    pub colormap: Colormap,
    pub opacity: f32,
}

/// The pipeline and per-widget textures, kept in egui-wgpu's callback resources.
pub struct MapResources {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    luts: HashMap<Colormap, wgpu::TextureView>,
    blank: wgpu::TextureView,
    views: HashMap<egui::Id, GpuView>,
}

struct GpuView {
    version: u64,
    colormap: Colormap,
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

fn texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    label: &str,
    (width, height): (u32, u32),
    format: wgpu::TextureFormat,
    bytes: &[u8],
) -> wgpu::TextureView {
    let size = wgpu::Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    };
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let bytes_per_texel = format.block_copy_size(None).unwrap_or(4);
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture: &texture,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        bytes,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * bytes_per_texel),
            rows_per_image: Some(height),
        },
        size,
    );
    texture.create_view(&wgpu::TextureViewDescriptor::default())
}

fn rgba(image: &RgbImage) -> Vec<u8> {
    image.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

impl MapResources {
    /// Registers the pipeline with the renderer; false where wgpu is not the renderer.
    pub fn install(render_state: Option<&egui_wgpu::RenderState>) -> bool {
        let Some(state) = render_state else {
            return false;
        };
        let device = &state.device;
        let queue = &state.queue;
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("colormap"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../../shaders/colormap.wgsl").into()),
        });
        let texture_entry = |binding, filterable| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("colormap"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: NonZeroU64::new(16),
                    },
                    count: None,
                },
                texture_entry(1, false),
                texture_entry(2, true),
                texture_entry(3, true),
                wgpu::BindGroupLayoutEntry {
                    binding: 4,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("colormap"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("colormap"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            },
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                targets: &[Some(state.target_format.into())],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("colormap"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let luts = Colormap::ALL
            .into_iter()
            .map(|map| {
                let view = texture(
                    device,
                    queue,
                    "lut",
                    (256, 1),
                    wgpu::TextureFormat::Rgba8Unorm,
                    &map.lut(),
                );
                (map, view)
            })
            .collect();
        let blank = texture(
            device,
            queue,
            "blank",
            (1, 1),
            wgpu::TextureFormat::Rgba8Unorm,
            &[0, 0, 0, 255],
        );
        state.renderer.write().callback_resources.insert(MapResources {
            pipeline,
            layout,
            sampler,
            luts,
            blank,
            views: HashMap::new(),
        });
        true
    }

    fn prepare(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, layer: &MapLayer) {
        let stale = self
            .views
            .get(&layer.id)
            .is_none_or(|v| v.version != layer.version || v.colormap != layer.colormap);
        if stale {
            let map = &layer.map;
            let bytes: Vec<u8> = map.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let values = texture(
                device,
                queue,
                "map",
                (map.width as u32, map.height as u32),
                wgpu::TextureFormat::R32Float,
                &bytes,
            );
            let image = layer.image.as_ref().map(|img| {
                texture(
                    device,
                    queue,
                    "image",
                    img.dimensions(),
                    wgpu::TextureFormat::Rgba8Unorm,
                    &rgba(img),
                )
            });
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("colormap params"),
                size: 16,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let lut = self.luts.get(&layer.colormap).unwrap_or(&self.blank);
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("colormap"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&values),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(image.as_ref().unwrap_or(&self.blank)),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: wgpu::BindingResource::TextureView(lut),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: wgpu::BindingResource::Sampler(&self.sampler),
                    },
                ],
            });
            self.views.insert(
                layer.id,
                GpuView {
                    version: layer.version,
                    colormap: layer.colormap,
                    uniform,
                    bind_group,
                },
            );
        }
        if let Some(view) = self.views.get(&layer.id) {
            let (low, high) = layer.map.range;
            let params = [low, high, layer.opacity, if layer.image.is_some() { 1.0 } else { 0.0 }];
            let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
            queue.write_buffer(&view.uniform, 0, &bytes);
        }
    }

    fn paint(&self, render_pass: &mut wgpu::RenderPass<'static>, id: egui::Id) {
        if let Some(view) = self.views.get(&id) {
            render_pass.set_pipeline(&self.pipeline);
            render_pass.set_bind_group(0, &view.bind_group, &[]);
            render_pass.draw(0..6, 0..1);
        }
    }
}

struct MapCallback {
    layer: MapLayer,
}

impl egui_wgpu::CallbackTrait for MapCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(maps) = resources.get_mut::<MapResources>() {
            maps.prepare(device, queue, &self.layer);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(maps) = resources.get::<MapResources>() {
            maps.paint(render_pass, self.layer.id);
        }
    }
}

/// The CPU rendering of a layer: the same lookup table, blended on the CPU.
pub fn render_on_cpu(layer: &MapLayer) -> RgbImage {
    let map = &layer.map;
    let (low, high) = map.range;
    let span = (high - low).max(1e-6);
    let (w, h) = (map.width as u32, map.height as u32);
    let base = layer
        .image
        .as_ref()
        .map(|img| image::imageops::resize(img.as_ref(), w, h, image::imageops::FilterType::Triangle));
    let weight = if base.is_some() {
        layer.opacity.clamp(0.0, 1.0)
    } else {
        1.0
    };
    RgbImage::from_fn(w, h, |x, y| {
        let v = map.values.get((y * w + x) as usize).copied().unwrap_or(f32::NAN);
        let c = layer.colormap.colour((v - low) / span);
        let b = base.as_ref().map_or(image::Rgb([0, 0, 0]), |img| *img.get_pixel(x, y));
        image::Rgb(std::array::from_fn(|i| {
            (b[i] as f32 * (1.0 - weight) + c[i] as f32 * weight).round() as u8
        }))
    })
}

/// Draws maps, on the GPU when the renderer is wgpu, else through CPU textures.
#[derive(Default)]
pub struct MapPainter {
    pub gpu: bool,
    cpu: HashMap<egui::Id, (u64, Colormap, u32, egui::TextureHandle)>,
}

impl std::fmt::Debug for MapPainter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapPainter")
            .field("gpu", &self.gpu)
            .finish_non_exhaustive()
    }
}

impl MapPainter {
    pub fn new(gpu: bool) -> Self {
        Self {
            gpu,
            cpu: HashMap::new(),
        }
    }

    /// Shows `layer` in a `size` rectangle; returns the response (for hover and clicks).
    pub fn show(&mut self, ui: &mut egui::Ui, layer: &MapLayer, size: egui::Vec2) -> egui::Response {
        let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
        if self.gpu {
            ui.painter().add(egui_wgpu::Callback::new_paint_callback(
                rect,
                MapCallback { layer: layer.clone() },
            ));
        } else {
            let opacity_key = (layer.opacity * 1000.0) as u32;
            let fresh = self.cpu.get(&layer.id).is_none_or(|(version, colormap, opacity, _)| {
                *version != layer.version || *colormap != layer.colormap || *opacity != opacity_key
            });
            if fresh {
                let image = render_on_cpu(layer);
                let colour =
                    egui::ColorImage::from_rgb([image.width() as usize, image.height() as usize], image.as_raw());
                let handle =
                    ui.ctx()
                        .load_texture(format!("map-{:?}", layer.id), colour, egui::TextureOptions::NEAREST);
                self.cpu
                    .insert(layer.id, (layer.version, layer.colormap, opacity_key, handle));
            }
            if let Some((_, _, _, handle)) = self.cpu.get(&layer.id) {
                ui.painter().image(
                    handle.id(),
                    rect,
                    egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    egui::Color32::WHITE,
                );
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rendering_maps_and_blends() {
        let map = Arc::new(Map {
            width: 2,
            height: 1,
            values: vec![0.0, 1.0],
            range: (0.0, 1.0),
        });
        let alone = MapLayer {
            id: egui::Id::unique("a"),
            version: 0,
            map: map.clone(),
            image: None,
            colormap: Colormap::Gray,
            opacity: 0.5,
        };
        let image = render_on_cpu(&alone);
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(1, 0).0, [255, 255, 255]);
        let over = MapLayer {
            image: Some(Arc::new(RgbImage::from_pixel(2, 1, image::Rgb([100, 100, 100])))),
            ..alone
        };
        let blended = render_on_cpu(&over);
        assert_eq!(blended.get_pixel(0, 0).0, [50, 50, 50]);
        assert_eq!(blended.get_pixel(1, 0).0, [178, 178, 178]);
    }
}
