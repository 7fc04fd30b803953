//! Where a training step's time goes, stage by stage: `bench train` times one step apart from
//! its timed runs with the clock on (each boundary waits for the device, which would slow a
//! GPU's timed steps), the trainer never.

use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::Device;

/// A step's laps, `(stage, seconds)` in the order they ran, when switched on.
#[derive(Debug, Default)]
pub struct StageClock {
    laps: Mutex<Option<Laps>>,
}

#[derive(Debug)]
struct Laps {
    since: Instant,
    done: Vec<(&'static str, f64)>,
}

impl StageClock {
    /// Starts timing (`true`: from now, laps of earlier steps forgotten) or stops it.
    pub fn switch(&self, on: bool) {
        if let Ok(mut laps) = self.laps.lock() {
            *laps = on.then(|| Laps {
                since: Instant::now(),
                done: Vec::new(),
            });
        }
    }

    /// A step begins: earlier laps are forgotten.
    pub fn restart(&self) {
        if let Ok(mut guard) = self.laps.lock()
            && let Some(laps) = guard.as_mut()
        {
            laps.done.clear();
            laps.since = Instant::now();
        }
    }

    /// `stage` ends now, once `device` has done its work; nothing when the clock is off.
    pub fn lap(&self, stage: &'static str, device: &Device) {
        if let Ok(mut guard) = self.laps.lock()
            && let Some(laps) = guard.as_mut()
        {
            let _ = device.sync();
            laps.done.push((stage, laps.since.elapsed().as_secs_f64()));
            laps.since = Instant::now();
        }
    }

    /// The laps since the step began.
    pub fn laps(&self) -> Vec<(&'static str, f64)> {
        self.laps
            .lock()
            .ok()
            .and_then(|laps| laps.as_ref().map(|l| l.done.clone()))
            .unwrap_or_default()
    }
}
