//! The CUDA device as candle drives it: all of a device's work on its one stream.

use candle_core::{Device, Result};

/// Stops cudarc creating two CUDA events for every buffer the device allocates afterwards (a driver
/// call each, thousands a training step). Call it on a device just made, before any tensor lives on
/// it: buffers made earlier keep their events.
pub fn untrack_events(device: &Device) -> Result<()> {
    if let Device::Cuda(d) = device {
        // SAFETY: cudarc waits on these events only in multi-stream mode, which a context enters when
        // `new_stream` is called; candle's `Device::new_cuda` uses the per-thread default stream and
        // never calls it, nor does anything in this project (NCCL runs on the device's own stream).
        // With one stream, the stream's order already orders every use of a buffer, so the events
        // guard nothing and dropping them loses no synchronisation.
        unsafe { d.disable_event_tracking() };
    }
    Ok(())
}
