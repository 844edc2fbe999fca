//! `GET /mcp` streams, bounded per client address. A stream waits for server messages
//! for as long as its client keeps it open and costs a connection and a session worker's
//! channel the whole time: one client opening a thousand held every place. A stream
//! takes a place here for its client address and one in its session
//! ([`super::sessions::BoundedSessions::open_stream`]); past either bound it gets 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct StreamPlaces {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_client: usize,
}

/// One stream's place for its client, given back when dropped.
pub struct ClientStream {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl StreamPlaces {
    pub fn new(max_per_client: usize) -> Self {
        Self {
            open: Arc::default(),
            max_per_client: max_per_client.max(1),
        }
    }

    /// A place for one more stream of `client`, unless it holds the most it may.
    pub fn take(&self, client: IpAddr) -> Option<ClientStream> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(client).or_insert(0);
        if *held >= self.max_per_client {
            return None;
        }
        *held += 1;
        Some(ClientStream {
            open: self.open.clone(),
            client,
        })
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let places = StreamPlaces::new(2);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let a = places.take(one).unwrap();
        let _b = places.take(one).unwrap();
        assert!(places.take(one).is_none(), "the third is refused");
        assert!(places.take(other).is_some(), "another client is not");
        drop(a);
        assert!(
            places.take(one).is_some(),
            "a closed stream gives its place back"
        );
        drop(places.take(other));
        assert_eq!(
            places.open.lock().unwrap().get(&other),
            None,
            "no entry kept for none"
        );
    }
}
