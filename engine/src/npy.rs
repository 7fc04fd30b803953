//! A reader for NumPy `.npy` files of little-endian float32 in C order: the layout of the
//! reference tensors saved from the official implementation.

use std::path::Path;

use crate::{EngineError, Result};

/// A float32 array and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NpyArray {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        Self::parse(&bytes).map_err(|message| EngineError::Npy {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or("missing the \\x93NUMPY magic")?;
        let (&major, rest) = rest.split_first().ok_or("truncated header")?;
        let (_minor, rest) = rest.split_first().ok_or("truncated header")?;
        let (header_len, rest) = match major {
            1 => {
                let len = rest.get(..2).ok_or("truncated header")?;
                (u16::from_le_bytes([len[0], len[1]]) as usize, &rest[2..])
            }
            2 | 3 => {
                let len = rest.get(..4).ok_or("truncated header")?;
                (
                    u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
                    &rest[4..],
                )
            }
            v => return Err(format!("unsupported format version {v}")),
        };
        let header = rest.get(..header_len).ok_or("truncated header")?;
        let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
        let descr = dict_value(header, "descr")
            .and_then(quoted)
            .ok_or("header has no 'descr'")?;
        if !matches!(descr, "<f4" | "float32") {
            return Err(format!("dtype {descr} is not little-endian float32"));
        }
        if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
            return Err("Fortran order is not supported".into());
        }
        let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
        let inner = shape_text
            .strip_prefix('(')
            .and_then(|s| s.split(')').next())
            .ok_or("malformed shape")?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| format!("malformed shape {shape_text}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let count: usize = shape.iter().product();
        let body = &rest[header_len..];
        if body.len() != count * 4 {
            return Err(format!(
                "expected {} bytes of data for shape {shape:?}, found {}",
                count * 4,
                body.len()
            ));
        }
        let data = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self { shape, data })
    }
}

/// The contents of the quoted string at the start of `text`.
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    text[1..].split(quote).next()
}

/// The text after `'key':` in a Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    Some(header[start..].trim_start().strip_prefix(':')?.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[f32]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        out
    }

    #[test]
    fn reads_numpys_own_header_layout() {
        // As numpy writes it: padded with spaces to a multiple of 64 bytes, ending in a newline.
        let header = format!(
            "{:<117}\n",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1, 1), }"
        );
        let array = NpyArray::parse(&npy(&header, &[0.5; 6])).expect("valid");
        assert_eq!(array.shape, vec![2, 3, 1, 1]);
    }

    #[test]
    fn reads_shape_and_values() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }",
            &[1.5, -2.0],
        );
        let array = NpyArray::parse(&bytes).expect("valid");
        assert_eq!(array.shape, vec![2, 1]);
        assert_eq!(array.data, vec![1.5, -2.0]);
    }

    #[test]
    fn refuses_other_dtypes_and_truncation() {
        let bytes = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", &[0.0, 0.0]);
        assert!(NpyArray::parse(&bytes).expect_err("f64").contains("float32"));
        let bytes = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", &[0.0, 0.0]);
        assert!(NpyArray::parse(&bytes).expect_err("short").contains("bytes"));
        assert!(NpyArray::parse(b"PK\x03\x04").is_err());
    }
}
