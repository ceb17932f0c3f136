//! The few ONNX protobuf messages an exported encoder needs (ModelProto, GraphProto, NodeProto,
//! TensorProto, ValueInfoProto, AttributeProto), written by hand with protobuf's wire format. Field
//! numbers are those of onnx/onnx.proto (IR version 8). A write-only subset of ~100 lines avoids a
//! protoc build step and a generated module of several thousand lines.

/// ONNX `TensorProto.DataType` values.
#[derive(Debug, Clone, Copy)]
pub enum DataType {
    Float = 1,
    Int8 = 3,
    Int64 = 7,
}

/// A protobuf message under construction.
#[derive(Default)]
pub struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// `TensorProto` with raw little-endian data.
pub fn tensor(name: &str, dims: &[usize], dtype: DataType, raw: &[u8]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    m.int(2, dtype as i64).str(8, name).bytes(9, raw)
}

/// One dimension of a value's shape: a fixed size or a named dynamic axis.
pub enum Dim<'a> {
    Fixed(usize),
    Named(&'a str),
}

/// `ValueInfoProto` of a tensor input or output.
pub fn value_info(name: &str, dtype: DataType, dims: &[Dim]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let dim = match d {
            Dim::Fixed(n) => Msg::default().int(1, *n as i64),
            Dim::Named(s) => Msg::default().str(2, s),
        };
        shape = shape.msg(1, dim);
    }
    let tensor_type = Msg::default().int(1, dtype as i64).msg(2, shape);
    Msg::default()
        .str(1, name)
        .msg(2, Msg::default().msg(1, tensor_type))
}

/// A node attribute.
pub enum Attr<'a> {
    Int(&'a str, i64),
    Float(&'a str, f32),
    Ints(&'a str, &'a [i64]),
}

/// `NodeProto`.
pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m = m.str(1, i);
    }
    for o in outputs {
        m = m.str(2, o);
    }
    m = m.str(3, name).str(4, op);
    for a in attrs {
        // AttributeProto: name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7).
        let attr = match a {
            Attr::Int(n, v) => Msg::default().str(1, n).int(3, *v).int(20, 2),
            Attr::Float(n, v) => Msg::default().str(1, n).float(2, *v).int(20, 1),
            Attr::Ints(n, vs) => {
                let mut at = Msg::default().str(1, n);
                for v in *vs {
                    at = at.int(8, *v);
                }
                at.int(20, 7)
            }
        };
        m = m.msg(5, attr);
    }
    m
}

/// `ModelProto` around a finished `GraphProto` (IR version 8, default-domain opset `opset`).
pub fn model(graph: Msg, opset: i64) -> Vec<u8> {
    Msg::default()
        .int(1, 8)
        .str(2, "distill")
        .str(3, env!("CARGO_PKG_VERSION"))
        .msg(8, Msg::default().str(1, "").int(2, opset))
        .msg(7, graph)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_wire_format() {
        // Protobuf's own examples: 150 -> 96 01; a negative int64 takes ten bytes.
        assert_eq!(Msg::default().int(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        let neg = Msg::default().int(1, -1).into_bytes();
        assert_eq!(neg.len(), 11);
        assert_eq!(neg[10], 0x01);
        assert_eq!(
            Msg::default().str(2, "testing").into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        assert_eq!(
            Msg::default().float(2, 1.0).into_bytes(),
            [0x15, 0, 0, 0x80, 0x3f]
        );
    }
}
