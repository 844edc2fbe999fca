//! Which events the daemon samples. Rates are "1 in N": 1 keeps every event, 0 keeps none.

use crate::frame_error::FrameError;
use crate::wire::{Reader, Wire, Writer};

label_enum! {
    /// The classes of event, each with its own rate.
    pub enum SampleClass {
        WsMessages => "ws_messages",
        Requests => "requests",
        StorageReads => "storage_reads",
        StorageWrites => "storage_writes",
        Supabase => "supabase",
        ProviderCalls => "provider_calls",
        Connections => "connections",
    }
}

/// Sampling rates by class. The defaults are the seed's: WebSocket messages 1 in 10,
/// storage reads 1 in 5, storage writes, Supabase operations and provider calls all.
/// Completed requests follow WebSocket messages (1 in 10); connections are all kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingPolicy {
    rates: [u32; SampleClass::COUNT],
}

impl SamplingPolicy {
    pub const fn rate(&self, class: SampleClass) -> u32 {
        self.rates[class.index()]
    }

    pub fn with_rate(mut self, class: SampleClass, one_in: u32) -> Self {
        self.rates[class.index()] = one_in;
        self
    }

    /// Keep every event of every class.
    pub const fn keep_all() -> Self {
        Self {
            rates: [1; SampleClass::COUNT],
        }
    }
}

impl Default for SamplingPolicy {
    fn default() -> Self {
        Self::keep_all()
            .with_rate(SampleClass::WsMessages, 10)
            .with_rate(SampleClass::Requests, 10)
            .with_rate(SampleClass::StorageReads, 5)
    }
}

/// On the wire: the rates in class order, as a list, so a class added later is a longer
/// list. A class this side does not know is ignored; one the peer did not send keeps all.
impl Wire for SamplingPolicy {
    fn write(&self, w: &mut Writer<'_>) {
        w.primitive(self.rates.len() as u64);
        self.rates.iter().for_each(|rate| w.primitive(*rate));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let mut policy = Self::keep_all();
        for i in 0..r.count()? {
            let rate: u32 = r.primitive()?;
            if let Some(slot) = policy.rates.get_mut(i) {
                *slot = rate;
            }
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let p = SamplingPolicy::default();
        assert_eq!(p.rate(SampleClass::WsMessages), 10);
        assert_eq!(p.rate(SampleClass::StorageReads), 5);
        assert_eq!(p.rate(SampleClass::StorageWrites), 1);
        assert_eq!(p.rate(SampleClass::Supabase), 1);
        assert_eq!(p.rate(SampleClass::ProviderCalls), 1);
    }
}
