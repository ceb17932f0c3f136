//! TensorBoard event files, written directly: a TFRecord file (each record its length, the length's
//! masked CRC-32C, the payload, the payload's masked CRC-32C) of `Event` protocol buffers, each holding a
//! step's scalars as `Summary.Value { tag, simple_value }`. That is all `tensorboard --logdir` needs to draw
//! the curves; the few protobuf fields are encoded by hand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// One event file, appended to record by record.
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (made if missing). A resumed run writes a new file beside the old ones;
    /// TensorBoard reads them all.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let path = dir.join(format!(
            "events.out.tfevents.{}.distill.{}",
            now as u64,
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut w = Self { file, path };
        // The first event names the format version, as TensorFlow's writers do.
        let mut event = Vec::new();
        field_double(&mut event, 1, now);
        field_bytes(&mut event, 3, b"brain.Event:2");
        w.record(&event)?;
        Ok(w)
    }

    /// The scalars of one step, as one event.
    pub fn scalars(&mut self, step: usize, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            let mut value = Vec::new();
            field_bytes(&mut value, 1, tag.as_bytes());
            // simple_value (field 2) is a float: wire type 5, four bytes.
            key(&mut value, 2, 5);
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            field_bytes(&mut summary, 1, &value);
        }
        let mut event = Vec::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        field_double(&mut event, 1, now);
        key(&mut event, 2, 0);
        varint(&mut event, step as u64);
        field_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// One TFRecord, in one write; a write that fails half-way is cut back off.
    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(data);
        rec.extend_from_slice(&masked_crc(data).to_le_bytes());
        let at = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        self.file.write_all(&rec).map_err(|e| {
            let _ = self.file.set_len(at);
            Error::io(&self.path, e)
        })
    }
}

/// TFRecord's checksum: CRC-32C, rotated and offset so that CRCs of CRCs stay well spread.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_framed_with_masked_crcs() {
        // TFRecord's masked CRC-32C of empty input, as TensorFlow computes it.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(7, &[("train/loss".into(), 0.5)]).unwrap();
        let bytes = std::fs::read(&w.path).unwrap();
        // Walk the records: each length and payload checks out.
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let dcrc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(dcrc, masked_crc(data));
            at += 16 + len;
            n += 1;
        }
        assert_eq!(n, 2);
        // The scalar's tag and value are in the second record.
        let tail = &bytes[bytes.len() - 40..];
        assert!(tail.windows(10).any(|w| w == b"train/loss"));
        assert!(tail.windows(4).any(|w| w == 0.5f32.to_le_bytes()));
    }
}
