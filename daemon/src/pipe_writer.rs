//! The background task that ships recorded events to the agent: it drains the queue
//! every few milliseconds, writes many events per frame, adds a heartbeat every second,
//! and reconnects with backoff. Nothing here runs on the request path.

use crate::emitter::{EventEmitter, Shared};
use crate::process_stats::ProcessSampler;
use crate::views::DependencyViews;
use exai_proto::frame::{self, BatchEncoder, MAX_EVENTS_PER_BATCH};
use exai_proto::heartbeat::{DropReason, Heartbeat, PipeStats};
use exai_proto::{AckDecoder, CorrelationId, Event, EventKind, Hello, InlineStr};
use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, ToFsName};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub socket: PathBuf,
    pub heartbeat_every: Duration,
    /// How long the writer sleeps when the queue was empty.
    pub idle_tick: Duration,
    pub reconnect_min: Duration,
    /// Upper bound of the reconnect backoff: the daemon is back on the pipe at most this
    /// long after the agent is.
    pub reconnect_max: Duration,
    /// A write that takes longer than this (an agent that stopped reading) counts as failed.
    pub write_timeout: Duration,
}

impl WriterConfig {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            heartbeat_every: Duration::from_secs(1),
            idle_tick: Duration::from_millis(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            write_timeout: Duration::from_secs(2),
        }
    }
}

/// Who this daemon is, for the Hello.
#[derive(Debug, Clone)]
pub struct DaemonIdentity {
    pub instance_id: String,
    /// Stable across restarts: the agent labels the daemon's series with it.
    pub name: String,
    pub pid: u32,
    pub version: String,
    pub started_at_unix_ms: u64,
}

impl DaemonIdentity {
    /// This process, named `name`.
    pub fn current(name: String) -> Self {
        Self {
            instance_id: uuid::Uuid::new_v4().to_string(),
            name,
            pid: std::process::id(),
            version: crate::VERSION.to_string(),
            started_at_unix_ms: crate::clock::now_unix_us() / 1000,
        }
    }
}

/// An open connection to the agent.
struct Link {
    stream: Arc<Stream>,
    /// Set by the acknowledgement reader when the agent closes its end.
    peer_gone: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Runs until `cancel` fires, then flushes what is queued (with a last heartbeat) if an
/// agent is connected, and returns.
pub async fn run(
    emitter: EventEmitter,
    identity: DaemonIdentity,
    views: Arc<dyn DependencyViews>,
    config: WriterConfig,
    cancel: CancellationToken,
) {
    Writer::new(emitter, identity, views, config)
        .run(cancel)
        .await
}

struct Writer {
    emitter: EventEmitter,
    identity: DaemonIdentity,
    /// What the heartbeat says about Redis and Supabase.
    views: Arc<dyn DependencyViews>,
    /// The catalogue generation the agent on this link has: sent in the Hello, or since.
    catalogue_sent: u64,
    config: WriterConfig,
    started: Instant,
    link: Option<Link>,
    backoff: Duration,
    next_attempt: Instant,
    next_heartbeat: Instant,
    /// Whether the last connection attempt failed, so a down agent is logged once.
    reported_down: bool,
    /// The batch being filled, encoded into `wire` as each event leaves the queue (no
    /// second copy of it); `None` while no agent is connected, when events are only counted.
    frame: Option<BatchEncoder>,
    /// Events taken for the next [`Self::ship`].
    pending: u64,
    /// Whether the last of them is a heartbeat.
    pending_heartbeat: bool,
    wire: Vec<u8>,
    process: ProcessSampler,
}

impl Writer {
    fn new(
        emitter: EventEmitter,
        identity: DaemonIdentity,
        views: Arc<dyn DependencyViews>,
        config: WriterConfig,
    ) -> Self {
        let now = Instant::now();
        Self {
            emitter,
            identity,
            views,
            catalogue_sent: 0,
            backoff: config.reconnect_min,
            config,
            started: now,
            link: None,
            next_attempt: now,
            next_heartbeat: now,
            reported_down: false,
            frame: None,
            pending: 0,
            pending_heartbeat: false,
            wire: Vec::with_capacity(1 << 16),
            process: ProcessSampler::new(),
        }
    }

    fn shared(&self) -> &Shared {
        self.emitter.shared()
    }

    async fn run(mut self, cancel: CancellationToken) {
        loop {
            if cancel.is_cancelled() {
                self.flush_on_shutdown().await;
                return;
            }
            self.shared().clock.tick();
            self.check_link().await;
            let drained = self.drain();
            self.ship().await;
            if drained == MAX_EVENTS_PER_BATCH {
                // More is waiting: go again at once, but let other tasks run.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(self.config.idle_tick) => {}
            }
        }
    }

    /// Drops a link the agent closed and, when disconnected and due, tries to connect.
    async fn check_link(&mut self) {
        if self
            .link
            .as_ref()
            .is_some_and(|l| l.peer_gone.load(Relaxed))
        {
            info!(socket = %self.config.socket.display(), "agent closed the event pipe; reconnecting");
            self.disconnect();
        }
        if self.link.is_some() || Instant::now() < self.next_attempt {
            return;
        }
        match tokio::time::timeout(self.config.reconnect_max, self.connect()).await {
            Ok(Ok(link)) => {
                info!(socket = %self.config.socket.display(), "connected to agent");
                self.link = Some(link);
                self.reported_down = false;
                self.next_heartbeat = Instant::now();
                let w = &self.shared().writer;
                w.connected.store(true, Relaxed);
                w.connections_made.fetch_add(1, Relaxed);
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                if !self.reported_down {
                    warn!(socket = %self.config.socket.display(), error = %why,
                        "agent not reachable; events are dropped (counted as disconnected) until it is");
                    self.reported_down = true;
                } else {
                    debug!(error = %why, "agent still not reachable");
                }
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.config.reconnect_max);
            }
        }
    }

    async fn connect(&mut self) -> io::Result<Link> {
        let name = self
            .config
            .socket
            .as_path()
            .to_fs_name::<GenericFilePath>()?;
        let stream = Arc::new(Stream::connect(name).await?);
        let catalogue = self.emitter.catalogue();
        let w = &self.shared().writer;
        let hello = Hello {
            instance_id: InlineStr::new(&self.identity.instance_id),
            name: InlineStr::new(&self.identity.name),
            pid: self.identity.pid,
            version: InlineStr::new(&self.identity.version),
            started_at_unix_ms: self.identity.started_at_unix_ms,
            sampling: self.emitter.policy(),
            next_seq: w.next_seq.load(Relaxed),
            acked_seq: w.acked_seq.load(Relaxed),
            models: catalogue.models.clone(),
        };
        let mut wire = Vec::new();
        frame::encode_hello(&hello, &mut wire);
        (&*stream).write_all(&wire).await?;
        w.hello_next_seq.store(hello.next_seq, Relaxed);
        w.hello_acked_seq.store(hello.acked_seq, Relaxed);
        self.catalogue_sent = catalogue.generation;
        let peer_gone = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_acks(
            stream.clone(),
            self.emitter.clone(),
            peer_gone.clone(),
        ));
        Ok(Link {
            stream,
            peer_gone,
            reader,
        })
    }

    /// Drops the link. The next attempt waits the current backoff, which grows until a
    /// batch gets through: an agent that refuses each Hello (say, while it still holds
    /// our previous connection) is not hammered.
    fn disconnect(&mut self) {
        self.link = None;
        self.shared().writer.connected.store(false, Relaxed);
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.reconnect_max);
    }

    /// Moves up to one batch of events from the queue into the next frame; adds the
    /// catalogue when it changed and a heartbeat when one is due, if an agent is there to
    /// receive them. Returns how many events were drained from the queue.
    fn drain(&mut self) -> usize {
        self.wire.clear();
        self.pending = 0;
        self.pending_heartbeat = false;
        self.frame = None;
        let mut frame = self.link.is_some().then(|| {
            let first_seq = self.shared().writer.next_seq.load(Relaxed);
            BatchEncoder::begin(&mut self.wire, first_seq)
        });
        let mut drained = 0;
        while drained < MAX_EVENTS_PER_BATCH {
            let Some(event) = self.emitter.pop() else {
                break;
            };
            if let Some(frame) = &mut frame {
                frame.push(&mut self.wire, &event);
            }
            drained += 1;
        }
        self.shared()
            .writer
            .accepted
            .fetch_add(drained as u64, Relaxed);
        self.pending = drained as u64;
        if let Some(mut frame) = frame {
            let catalogue = self.emitter.catalogue();
            if catalogue.generation != self.catalogue_sent {
                self.catalogue_sent = catalogue.generation;
                self.push(
                    &mut frame,
                    &Event {
                        at_unix_us: crate::clock::now_unix_us(),
                        correlation: CorrelationId::empty(),
                        weight: 1,
                        kind: EventKind::Catalogue {
                            models: catalogue.models.clone(),
                        },
                    },
                );
            }
            if Instant::now() >= self.next_heartbeat {
                self.next_heartbeat = Instant::now() + self.config.heartbeat_every;
                let heartbeat = self.heartbeat();
                self.push(&mut frame, &heartbeat);
                self.pending_heartbeat = true;
            }
            self.frame = Some(frame);
        }
        drained
    }

    /// Adds an event of the writer's own (catalogue, heartbeat) to the frame.
    fn push(&mut self, frame: &mut BatchEncoder, event: &Event) {
        frame.push(&mut self.wire, event);
        self.pending += 1;
        self.pending_heartbeat = false;
    }

    fn heartbeat(&mut self) -> Event {
        let process = self.process.sample();
        let s = self.emitter.shared();
        s.writer.heartbeats.fetch_add(1, Relaxed);
        let totals = &s.totals;
        Event {
            at_unix_us: crate::clock::now_unix_us(),
            correlation: CorrelationId::empty(),
            weight: 1,
            kind: EventKind::Heartbeat(Box::new(Heartbeat {
                uptime_ms: self.started.elapsed().as_millis() as u64,
                process,
                connections: (totals.open_connections.load(Relaxed).max(0) as u32)
                    .saturating_add(self.views.http_sessions()),
                in_flight: totals.in_flight.load(Relaxed).max(0) as u32,
                pipe: PipeStats {
                    queue_depth: s.queue.len() as u32,
                    queue_capacity: s.queue.capacity() as u32,
                    accepted: s.writer.accepted.load(Relaxed),
                    dropped: self.emitter.dropped(),
                },
                totals: totals.snapshot(),
                storage: self.views.storage(),
                supabase: self.views.supabase(),
            })),
        }
    }

    /// Writes the batch as one frame, or counts it dropped with the reason.
    async fn ship(&mut self) {
        let n = std::mem::take(&mut self.pending);
        let frame = self.frame.take();
        if n == 0 {
            return;
        }
        let (Some(link), Some(frame)) = (self.link.as_mut(), frame) else {
            self.count_dropped(DropReason::Disconnected, n);
            return;
        };
        let w = &self.emitter.shared().writer;
        let first_seq = w.next_seq.load(Relaxed);
        if let Err(e) = frame.finish(&mut self.wire) {
            warn!(error = %e, events = n, "batch too large to send; dropped");
            self.count_dropped(DropReason::WriteError, n);
            return;
        }
        match tokio::time::timeout(
            self.config.write_timeout,
            (&*link.stream).write_all(&self.wire),
        )
        .await
        {
            Ok(Ok(())) => {
                w.next_seq.store(first_seq + n, Relaxed);
                self.backoff = self.config.reconnect_min;
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("agent did not read for {:?}", self.config.write_timeout),
                };
                // The frame did not reach the agent whole, so its sequence numbers are
                // reused: the loss is counted here, once, and not again as a gap.
                warn!(error = %why, events = n, "writing to the agent failed; reconnecting");
                self.count_dropped(DropReason::WriteError, n);
                self.disconnect();
            }
        }
    }

    fn count_dropped(&self, reason: DropReason, n: u64) {
        self.shared().dropped[reason.index()].fetch_add(n, Relaxed);
    }

    /// Sends what is still queued, with a final heartbeat, so the agent's totals are
    /// exact up to shutdown.
    async fn flush_on_shutdown(&mut self) {
        if self.link.is_none() {
            // Nobody to send them to: count what is left, like any other drop.
            while self.drain() > 0 {
                self.count_dropped(DropReason::Disconnected, self.pending);
            }
            return;
        }
        loop {
            let drained = self.drain();
            if drained < MAX_EVENTS_PER_BATCH {
                if !self.pending_heartbeat {
                    if let Some(mut frame) = self.frame.take() {
                        let heartbeat = self.heartbeat();
                        self.push(&mut frame, &heartbeat);
                        self.frame = Some(frame);
                    }
                }
                self.ship().await;
                break;
            }
            self.ship().await;
            if self.link.is_none() {
                break;
            }
        }
        if let Some(link) = self.link.as_mut() {
            let _ = (&*link.stream).flush().await;
        }
    }
}

/// Reads acknowledgements until the agent closes its end.
async fn read_acks(stream: Arc<Stream>, emitter: EventEmitter, peer_gone: Arc<AtomicBool>) {
    let mut decoder = AckDecoder::new();
    let mut buf = [0u8; 256];
    loop {
        match (&*stream).read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                decoder.feed(&buf[..n]);
                loop {
                    match decoder.next_ack() {
                        Ok(Some(seq)) => {
                            emitter.shared().writer.acked_seq.fetch_max(seq, Relaxed);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "agent sent an invalid acknowledgement; reconnecting");
                            peer_gone.store(true, Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }
    peer_gone.store(true, Relaxed);
}
