//! A test-side GGUF writer (independent of the library's reader): small files with chosen
//! metadata and tensors, and the block encoders of Q8_0, Q4_0 and Q4_1.

#![allow(dead_code)]

use half::f16;
use int8_wgpu::gguf::Value;

/// ggml type ids.
pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q8_0: u32 = 8;
pub const Q6_K: u32 = 14;
pub const BF16: u32 = 30;

pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
    /// An offset written instead of the computed one (hostile files).
    pub offset: Option<u64>,
}

pub struct Writer {
    pub version: u32,
    pub alignment: u64,
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A value's bytes without its type.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => string(out, s),
        Value::Array(a) => {
            // An empty array is written as an array of u8.
            out.extend(a.first().map_or(0, value_type).to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            a.iter().for_each(|e| value(out, e));
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl Writer {
    pub fn new() -> Self {
        Writer { version: 3, alignment: 32, kvs: Vec::new(), tensors: Vec::new() }
    }

    pub fn kv(mut self, key: &str, v: Value) -> Self {
        self.kvs.push((key.to_string(), v));
        self
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push(Tensor { name: name.into(), dims: dims.to_vec(), ty, data, offset: None });
        self
    }

    /// The file: header, metadata, tensor infos, padding to the alignment, each tensor's data
    /// at the next aligned offset; it ends where the last tensor ends.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            string(&mut out, k);
            out.extend(value_type(v).to_le_bytes());
            value(&mut out, v);
        }
        let align = |x: u64| x.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            offsets.push(offset);
            string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(t.ty.to_le_bytes());
            out.extend(t.offset.unwrap_or(offset).to_le_bytes());
            offset = align(offset + t.data.len() as u64);
        }
        if !self.tensors.is_empty() {
            out.resize(align(out.len() as u64) as usize, 0);
        }
        let start = out.len();
        for (t, o) in self.tensors.iter().zip(offsets) {
            out.resize(start + o as usize, 0);
            out.extend(&t.data);
        }
        out
    }
}

pub fn q8_0_block(d: f16, qs: &[i8; 32]) -> Vec<u8> {
    let mut b = d.to_bits().to_le_bytes().to_vec();
    b.extend(qs.iter().map(|&q| q as u8));
    b
}

/// Nibbles `q[j]` for elements j (0..32): byte j holds elements j (low) and j + 16 (high).
fn nibbles(q: &[u8; 32]) -> Vec<u8> {
    (0..16).map(|j| (q[j] & 0x0f) | (q[j + 16] << 4)).collect()
}

pub fn q4_0_block(d: f16, q: &[u8; 32]) -> Vec<u8> {
    let mut b = d.to_bits().to_le_bytes().to_vec();
    b.extend(nibbles(q));
    b
}

pub fn q4_1_block(d: f16, m: f16, q: &[u8; 32]) -> Vec<u8> {
    let mut b = d.to_bits().to_le_bytes().to_vec();
    b.extend(m.to_bits().to_le_bytes());
    b.extend(nibbles(q));
    b
}

pub fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
