//! GGUF metadata values: the thirteen value types, arrays of any of them but arrays.

use super::cursor::Cursor;
use crate::{Error, Result};

/// A metadata value of a GGUF file.
///
/// Arrays hold one type each (checked when read); GGUF allows arrays of arrays, which llama.cpp
/// does not read either: they are an [`Error::Unsupported`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `UINT8` (type 0).
    U8(u8),
    /// `INT8` (type 1).
    I8(i8),
    /// `UINT16` (type 2).
    U16(u16),
    /// `INT16` (type 3).
    I16(i16),
    /// `UINT32` (type 4).
    U32(u32),
    /// `INT32` (type 5).
    I32(i32),
    /// `FLOAT32` (type 6).
    F32(f32),
    /// `BOOL` (type 7): one byte, 0 or 1.
    Bool(bool),
    /// `STRING` (type 8): UTF-8.
    String(String),
    /// `ARRAY` (type 9): elements of one type.
    Array(Vec<Value>),
    /// `UINT64` (type 10).
    U64(u64),
    /// `INT64` (type 11).
    I64(i64),
    /// `FLOAT64` (type 12).
    F64(f64),
}

const ARRAY: u32 = 9;
const STRING: u32 = 8;

/// GGUF's name of value type `t`.
pub(super) fn type_name(t: u32) -> &'static str {
    const NAMES: [&str; 13] =
        ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];
    NAMES.get(t as usize).copied().unwrap_or("unknown")
}

/// The fewest bytes a value of type `t` takes in the file.
fn min_size(t: u32) -> usize {
    match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        _ => 8, // strings and arrays start with a u64; 64-bit scalars
    }
}

impl Value {
    /// The name of the value's GGUF type (`"u32"`, `"string"`, `"array"`, ...).
    pub fn type_name(&self) -> &'static str {
        type_name(match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => STRING,
            Value::Array(_) => ARRAY,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        })
    }

    /// A short description for messages: the type, and the value unless it is long
    /// (`u32 7`, `string "gpt2"`, `array of 49152 string`).
    pub(super) fn brief(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {} {}", a.len(), a.first().map_or("", Value::type_name)),
            Value::String(s) if s.chars().count() > 40 => format!("string of {} bytes", s.len()),
            Value::String(s) => format!("string {s:?}"),
            v => format!("{} {v:?}", v.type_name()),
        }
    }

    /// The value as an integer, if it is one of the eight integer types.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Reads a value of type `t` (the key names it in errors).
    pub(super) fn read(c: &mut Cursor<'_>, t: u32, key: &str) -> Result<Value> {
        let what = || format!("the value of metadata key `{key}`");
        Ok(match t {
            0 => Value::U8(c.u8(&what)?),
            1 => Value::I8(i8::from_le_bytes(c.array(&what)?)),
            2 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
            4 => Value::U32(c.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
            7 => match c.u8(&what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Error::Corrupt(format!(
                        "GGUF: metadata key `{key}` is a bool stored as {b}, not 0 or 1"
                    )));
                }
            },
            STRING => Value::String(c.string(&what)?.to_string()),
            ARRAY => Value::Array(read_array(c, key)?),
            10 => Value::U64(c.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
            t => return Err(Error::Corrupt(format!("GGUF: metadata key `{key}` has unknown value type {t}"))),
        })
    }
}

/// An array's element type, count and elements; the `Vec` grows no larger than the bytes left
/// can hold, whatever the count says.
fn read_array(c: &mut Cursor<'_>, key: &str) -> Result<Vec<Value>> {
    let t = c.u32(&|| format!("the element type of metadata array `{key}`"))?;
    let n = c.u64(&|| format!("the length of metadata array `{key}`"))?;
    if t == ARRAY {
        return Err(Error::Unsupported(format!("GGUF metadata key `{key}` is an array of arrays")));
    }
    if t > 12 {
        return Err(Error::Corrupt(format!("GGUF: metadata array `{key}` has unknown element type {t}")));
    }
    let fits = c.remaining() / min_size(t);
    if n > fits as u64 {
        return Err(Error::Corrupt(format!(
            "GGUF: metadata array `{key}` claims {n} {} elements; the {} bytes left hold at most {fits}",
            type_name(t),
            c.remaining()
        )));
    }
    let mut out = Vec::with_capacity(c.capacity_for(n, min_size(t)));
    for _ in 0..n {
        out.push(Value::read(c, t, key)?);
    }
    Ok(out)
}
