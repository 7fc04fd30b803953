// A single-channel map, colour-mapped through a 256-entry lookup table and laid over an image:
// out = mix(image, lut(normalized value), opacity). Drawn by egui-wgpu paint callbacks
// (app/src/gui/maps.rs); the viewport is the widget's rectangle.

struct Params {
    // value range mapped to [0, 1]
    low: f32,
    high: f32,
    // weight of the map over the image (1: the map alone)
    opacity: f32,
    // 1 when an image is under the map, 0 when it is shown alone
    has_image: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var map_values: texture_2d<f32>;
@group(0) @binding(2) var image: texture_2d<f32>;
@group(0) @binding(3) var lut: texture_2d<f32>;
@group(0) @binding(4) var smooth_sampler: sampler;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// Two triangles covering the viewport, no vertex buffer.
@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
    );
    let uv = corners[index];
    var out: VertexOut;
    out.position = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    // Maps are float textures (not filterable everywhere): fetch the nearest texel.
    let size = vec2<f32>(textureDimensions(map_values));
    let texel = vec2<i32>(clamp(in.uv * size, vec2<f32>(0.0), size - vec2<f32>(1.0)));
    let value = textureLoad(map_values, texel, 0).r;
    var t = (value - params.low) / max(params.high - params.low, 1e-6);
    // NaN compares false: it shows as the lowest colour.
    if (!(t >= 0.0)) { t = 0.0; }
    t = min(t, 1.0);
    let coloured = textureSampleLevel(lut, smooth_sampler, vec2<f32>(t * (255.0 / 256.0) + 0.5 / 256.0, 0.5), 0.0).rgb;
    let base = textureSampleLevel(image, smooth_sampler, in.uv, 0.0).rgb;
    let weight = select(1.0, params.opacity, params.has_image > 0.5);
    return vec4<f32>(mix(base, coloured, weight), 1.0);
}
