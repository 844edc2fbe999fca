//! The agent's end of the event pipe: a local socket that several daemons connect to at
//! once. Each connection is decoded on its own task; a connection that sends a bad
//! frame is closed with a logged reason and counted, and nobody else notices.

use crate::metrics::pipe::{InstanceCounters, PipeMetrics};
use crate::sink::{DaemonInfo, EventSink};
use exai_proto::frame::{self, DaemonFrame};
use exai_proto::{Event, EventKind, EventLabel, FrameError, Hello, StreamDecoder};
use interprocess::local_socket::tokio::{prelude::*, Listener, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long a new connection may take to send its Hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// How long an acknowledgement write may take before the daemon is deemed stuck.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection reads this much at a time at first, twice as much after each read that
/// fills it, up to the maximum.
const READ_BUFFER_MIN: usize = 4 * 1024;
const READ_BUFFER_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("EXAI_EVENTS_SOCKET {path}: another agent is already listening there")]
    InUse { path: PathBuf },
    #[error("EXAI_EVENTS_SOCKET {path}: exists and is not a socket; refusing to remove it")]
    NotASocket { path: PathBuf },
    #[error("EXAI_EVENTS_SOCKET {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Binds the socket: creates its directory (mode 0700) when missing, removes a stale
/// socket file left by an agent that died, and refuses to steal a live agent's socket
/// or to delete anything that is not a socket. The socket itself gets mode 0660.
pub fn bind(path: &Path) -> Result<Listener, BindError> {
    let io_err = |what| {
        move |source| BindError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_private_dir(dir).map_err(io_err("cannot create its directory"))?;
        }
    }
    remove_stale_socket(path)?;
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(io_err("not a valid socket name"))?;
    let options = ListenerOptions::new().name(name).reclaim_name(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o660)
    };
    let listener = options.create_tokio().map_err(io_err("cannot listen"))?;
    // bind() applies the umask to the socket file; set the mode the design asks for.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(io_err("cannot set the socket's mode"))?;
    }
    Ok(listener)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn remove_stale_socket(path: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Io {
                path: path.into(),
                what: "cannot inspect it",
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket { path: path.into() });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::InUse { path: path.into() });
    }
    info!(path = %path.display(), "removing stale socket left by an earlier agent");
    std::fs::remove_file(path).map_err(|source| BindError::Io {
        path: path.into(),
        what: "cannot remove the stale socket",
        source,
    })
}

#[cfg(not(unix))]
fn remove_stale_socket(_path: &Path) -> Result<(), BindError> {
    Ok(())
}

/// What the agent remembers about each daemon it has heard from, across reconnects.
#[derive(Debug)]
struct InstanceState {
    /// The sequence number the next event should carry.
    expected_seq: u64,
    /// Whether a connection from this daemon is open now.
    active: bool,
    /// When it was last connected or disconnected.
    since: std::time::Instant,
}

/// Daemons remembered across reconnects before the long-gone ones are pruned.
const REMEMBERED: usize = 4096;

struct Ingest {
    sink: Arc<dyn EventSink>,
    metrics: Arc<PipeMetrics>,
    instances: Mutex<HashMap<String, InstanceState>>,
}

/// Accepts daemons until `cancel` fires, then waits for their connections to end.
pub async fn serve(
    listener: Listener,
    sink: Arc<dyn EventSink>,
    metrics: Arc<PipeMetrics>,
    cancel: CancellationToken,
) {
    let ingest = Arc::new(Ingest {
        sink,
        metrics,
        instances: Mutex::new(HashMap::new()),
    });
    let tracker = TaskTracker::new();
    let mut backoff = crate::accept_backoff::AcceptBackoff::default();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    backoff.accepted();
                    stream
                }
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    let pause = backoff.failed("event pipe", &e);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            },
        };
        ingest.metrics.connection_accepted();
        tracker.spawn(Connection::new(ingest.clone(), stream).run(cancel.clone()));
    }
    tracker.close();
    tracker.wait().await;
}

/// Why a connection ended.
enum Close {
    Eof,
    Io(io::Error),
    Rejected {
        reason: &'static str,
        message: String,
    },
    Shutdown,
}

struct Connection {
    ingest: Arc<Ingest>,
    stream: Stream,
    decoder: StreamDecoder,
    daemon: Option<(DaemonInfo, InstanceCounters)>,
    expected_seq: u64,
    acked_seq: u64,
}

/// The clean-up runs however the connection ends, a panic included: otherwise the
/// daemon would stay marked active and be refused as a duplicate when it reconnects.
impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((daemon, counters)) = self.daemon.take() {
            counters.connected.set(0);
            self.ingest
                .metrics
                .instances()
                .disconnected(&daemon.instance_id);
            if let Some(state) = self
                .ingest
                .instances
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&daemon.instance_id)
            {
                state.active = false;
                state.since = std::time::Instant::now();
                state.expected_seq = self.expected_seq;
            }
            self.ingest.metrics.daemon_gone(&daemon.label);
            self.ingest.sink.daemon_disconnected(&daemon);
        }
    }
}

impl Connection {
    fn new(ingest: Arc<Ingest>, stream: Stream) -> Self {
        Self {
            ingest,
            stream,
            decoder: StreamDecoder::new(),
            daemon: None,
            expected_seq: 0,
            acked_seq: 0,
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let close = self.pump(cancel).await;
        let who = self
            .daemon
            .as_ref()
            .map(|(d, _)| d.instance_id.clone())
            .unwrap_or_else(|| "unidentified peer".into());
        match &close {
            Close::Eof | Close::Shutdown => info!(instance = %who, "event-pipe connection closed"),
            Close::Io(e) => info!(instance = %who, error = %e, "event-pipe connection lost"),
            Close::Rejected { reason, message } => {
                warn!(instance = %who, reason, "closing event-pipe connection: {message}");
                self.ingest.metrics.frame_rejected(reason);
            }
        }
    }

    async fn pump(&mut self, cancel: CancellationToken) -> Close {
        // Reads go straight into the decoder's buffer. Most daemons send a batch or two
        // a second: a small read does. One that fills it reads more next time, up to
        // READ_BUFFER_MAX; the pages a buffer touches stay resident, and an agent may
        // have hundreds of connections.
        let mut read_size = READ_BUFFER_MIN;
        // Set when an acknowledgement finds the daemon gone: no more are sent, and the
        // frames it wrote before going are still read.
        let mut peer_closed = false;
        // A peer that connects and never says Hello does not keep its task, however it
        // trickles bytes.
        let hello_due = tokio::time::sleep(HELLO_WITHIN);
        tokio::pin!(hello_due);
        loop {
            let mut stream = &self.stream;
            let read = tokio::select! {
                _ = cancel.cancelled() => return Close::Shutdown,
                _ = &mut hello_due, if self.daemon.is_none() => {
                    return Close::Rejected { reason: "no_hello", message: format!("no Hello within {HELLO_WITHIN:?}") };
                }
                read = stream.read(self.decoder.spare(read_size)) => read,
            };
            match read {
                Ok(0) => return Close::Eof,
                // A peer that closed with our acknowledgements unread resets the
                // connection, but only after everything it sent has been read.
                Err(e) if peer_closed && e.kind() == io::ErrorKind::ConnectionReset => {
                    return Close::Eof
                }
                Ok(n) => {
                    self.decoder.filled(n);
                    if n >= read_size && read_size < READ_BUFFER_MAX {
                        read_size *= 2;
                    }
                }
                Err(e) => return Close::Io(e),
            }
            loop {
                match self.decoder.next_frame() {
                    Ok(Some(DaemonFrame::Hello(hello))) => {
                        if let Err(close) = self.hello(hello) {
                            return close;
                        }
                    }
                    Ok(Some(DaemonFrame::Batch { first_seq, events })) => {
                        if let Err(close) = self.batch(first_seq, &events) {
                            return close;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return rejected(&e),
                }
            }
            if self.expected_seq > self.acked_seq && !peer_closed {
                let mut wire = Vec::with_capacity(16);
                frame::encode_ack(self.expected_seq, &mut wire);
                match tokio::time::timeout(ACK_TIMEOUT, (&self.stream).write_all(&wire)).await {
                    Ok(Ok(())) => self.acked_seq = self.expected_seq,
                    // The daemon closed after its last batch: a normal end, once what it
                    // wrote before closing (still in our receive buffer) is read.
                    Ok(Err(e))
                        if matches!(
                            e.kind(),
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        peer_closed = true
                    }
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => {
                        return Close::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "daemon stopped reading acknowledgements",
                        ))
                    }
                }
            }
        }
    }

    fn hello(&mut self, hello: Hello) -> Result<(), Close> {
        let instance_id = hello.instance_id.as_str().to_string();
        // It becomes a label value and a log field: a daemon sends a UUID.
        let well_formed = !instance_id.is_empty()
            && instance_id != crate::metrics::instances::OTHER
            && instance_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !well_formed {
            return Err(Close::Rejected {
                reason: "bad_instance",
                message: format!(
                    "instance id {:?} is not a plain identifier",
                    instance_id.escape_debug().to_string()
                ),
            });
        }
        let lost = {
            let mut instances = self
                .ingest
                .instances
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let lost = match instances.get_mut(&instance_id) {
                Some(state) if state.active => {
                    return Err(Close::Rejected {
                        reason: "duplicate_instance",
                        message: format!(
                            "daemon {instance_id} is already connected on another connection"
                        ),
                    })
                }
                // Seen before: whatever it wrote after our last event never reached us.
                Some(state) => {
                    state.active = true;
                    state.since = std::time::Instant::now();
                    hello.next_seq.saturating_sub(state.expected_seq)
                }
                // New to this agent: what it wrote to an earlier agent and never had
                // confirmed is lost.
                None => {
                    if instances.len() >= REMEMBERED {
                        // Every daemon start is a new id: forget the longest gone.
                        let cutoff = std::time::Instant::now() - Duration::from_secs(3600);
                        instances.retain(|_, s| s.active || s.since > cutoff);
                    }
                    instances.insert(
                        instance_id.clone(),
                        InstanceState {
                            expected_seq: hello.next_seq,
                            active: true,
                            since: std::time::Instant::now(),
                        },
                    );
                    hello.next_seq.saturating_sub(hello.acked_seq)
                }
            };
            lost
        };
        let label = self.ingest.metrics.instances().connected(&instance_id);
        let counters = self.ingest.metrics.instance(&label);
        counters.lost.inc_by(lost);
        counters.connected.set(1);
        self.expected_seq = hello.next_seq;
        self.acked_seq = hello.next_seq;
        let daemon = DaemonInfo {
            instance_id,
            label,
            pid: hello.pid,
            version: hello.version.as_str().to_string(),
            started_at_unix_ms: hello.started_at_unix_ms,
            sampling: hello.sampling,
        };
        info!(instance = %daemon.instance_id, pid = daemon.pid, version = %daemon.version,
            next_seq = hello.next_seq, lost, "daemon connected");
        self.ingest.sink.daemon_connected(&daemon);
        self.daemon = Some((daemon, counters));
        Ok(())
    }

    fn batch(&mut self, first_seq: u64, events: &[Event]) -> Result<(), Close> {
        let Some((daemon, counters)) = self.daemon.as_ref() else {
            return Err(Close::Rejected {
                reason: "bad_payload",
                message: "a batch arrived before the Hello".into(),
            });
        };
        if first_seq < self.expected_seq {
            return Err(Close::Rejected {
                reason: "bad_sequence",
                message: format!(
                    "sequence went backwards: expected {}, got {first_seq}",
                    self.expected_seq
                ),
            });
        }
        let Some(next) = first_seq.checked_add(events.len() as u64) else {
            return Err(Close::Rejected {
                reason: "bad_sequence",
                message: format!("sequence {first_seq} + {} events overflows", events.len()),
            });
        };
        counters.lost.inc_by(first_seq - self.expected_seq);
        let mut by_kind = [0u64; EventLabel::COUNT];
        for event in events {
            by_kind[event.kind.label().index()] += 1;
        }
        for (counter, n) in counters.received.iter().zip(by_kind) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        self.expected_seq = next;
        for event in events {
            if let EventKind::Heartbeat(heartbeat) = &event.kind {
                self.ingest.metrics.daemon_pipe(
                    &daemon.instance_id,
                    &daemon.label,
                    &heartbeat.pipe,
                );
            }
        }
        self.ingest.sink.events(daemon, events);
        Ok(())
    }
}

fn rejected(e: &FrameError) -> Close {
    Close::Rejected {
        reason: e.reason(),
        message: e.to_string(),
    }
}
