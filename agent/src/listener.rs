//! The agent's end of the event pipe: a local socket that several daemons connect to at
//! once. Each connection is decoded on its own task and hands what it decodes to the
//! daemon's record (`crate::daemons`) and to the dashboard; a connection that sends a bad
//! frame is closed with a logged reason and counted, and nobody else notices.

use crate::daemons::{Daemons, Refusal, Session};
use crate::sink::EventSink;
use exai_process::throttle::Throttle;
use exai_proto::frame::{self, DaemonFrame};
use exai_proto::{FrameError, StreamDecoder};
use interprocess::local_socket::tokio::{prelude::*, Listener, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    #[error("EXAI_EVENTS_SOCKET {path}: its directory {dir} {why}; refusing to listen there (another user could replace the socket)")]
    UnsafeDir {
        path: PathBuf,
        dir: PathBuf,
        why: String,
    },
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

/// Binds the socket: creates its directory (mode 0700) when missing, refuses one that
/// another user owns or anyone may write to, removes a stale socket file left by an agent
/// that died, and refuses to steal a live agent's socket or to delete anything that is
/// not a socket. The socket itself gets mode 0660: the agent's group may connect.
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
        check_dir(path, dir)?;
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

/// The socket's directory must be ours and closed to other users: whoever can write
/// there can put their own socket in its place and receive every daemon's events.
#[cfg(unix)]
fn check_dir(path: &Path, dir: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_dir = |why: String| BindError::UnsafeDir {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(dir).map_err(|source| BindError::Io {
        path: path.to_path_buf(),
        what: "cannot inspect its directory",
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "belongs to uid {}, not this agent's uid {me}",
            meta.uid()
        )));
    }
    let mode = meta.mode();
    if mode & 0o002 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by every user (mode {:o})",
            mode & 0o7777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir(_path: &Path, _dir: &Path) -> Result<(), BindError> {
    Ok(())
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

/// Where each connection's frames go.
struct Ingest {
    daemons: Arc<Daemons>,
    sink: Arc<dyn EventSink>,
    /// Connections open now, against `max_connections`.
    open: AtomicUsize,
    max_connections: usize,
}

/// Accepts daemons until `cancel` fires, then waits for their connections to end. Past
/// `max_connections` open at once, a new connection is closed at once and counted.
pub async fn serve(
    listener: Listener,
    daemons: Arc<Daemons>,
    sink: Arc<dyn EventSink>,
    max_connections: usize,
    cancel: CancellationToken,
) {
    let ingest = Arc::new(Ingest {
        daemons,
        sink,
        open: AtomicUsize::new(0),
        max_connections,
    });
    let tracker = TaskTracker::new();
    let mut backoff =
        exai_process::accept::AcceptBackoff::new("event pipe", crate::http_server::DESCRIPTORS);
    let mut refusals = Throttle::new(Duration::from_secs(1));
    // Out of file descriptors, say: `next` pauses rather than spins.
    while let Some(stream) = backoff.next(&cancel, || listener.accept()).await {
        let families = ingest.daemons.families();
        families.pipe_connections.inc();
        if ingest.open.fetch_add(1, Ordering::AcqRel) >= ingest.max_connections {
            ingest.open.fetch_sub(1, Ordering::AcqRel);
            families.frame_rejected("too_many_connections");
            if let Some(refused) = refusals.due() {
                warn!(
                    max = ingest.max_connections,
                    refused, "refusing event-pipe connections: EXAI_PIPE_MAX_CONNECTIONS reached"
                );
            }
            drop(stream);
            continue;
        }
        tracker.spawn(Connection::new(ingest.clone(), stream).run(cancel.clone()));
    }
    tracker.close();
    tracker.wait().await;
}

/// Why a connection ended.
enum Close {
    Eof,
    Io(io::Error),
    Rejected(Refusal),
    Shutdown,
}

struct Connection {
    ingest: Arc<Ingest>,
    stream: Stream,
    decoder: StreamDecoder,
    /// Set once the daemon said Hello; dropping it marks the daemon disconnected.
    session: Option<Session>,
    expected_seq: u64,
    acked_seq: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ingest.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    fn new(ingest: Arc<Ingest>, stream: Stream) -> Self {
        Self {
            ingest,
            stream,
            decoder: StreamDecoder::new(),
            session: None,
            expected_seq: 0,
            acked_seq: 0,
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let close = self.pump(cancel).await;
        let who = self
            .session
            .as_ref()
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "unidentified peer".into());
        match &close {
            Close::Eof | Close::Shutdown => info!(daemon = %who, "event-pipe connection closed"),
            Close::Io(e) => info!(daemon = %who, error = %e, "event-pipe connection lost"),
            Close::Rejected(refusal) => {
                warn!(daemon = %who, reason = refusal.reason, "closing event-pipe connection: {}", refusal.message);
                self.ingest
                    .daemons
                    .families()
                    .frame_rejected(refusal.reason);
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
                _ = &mut hello_due, if self.session.is_none() => {
                    return Close::Rejected(Refusal {
                        reason: "no_hello",
                        message: format!("no Hello within {HELLO_WITHIN:?}"),
                    });
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
                    Ok(Some(DaemonFrame::Hello { hello, unknown })) => {
                        match self.ingest.daemons.connect(&hello, unknown) {
                            Ok(session) => {
                                self.expected_seq = hello.next_seq;
                                self.acked_seq = hello.next_seq;
                                self.session = Some(session);
                            }
                            Err(refusal) => return Close::Rejected(refusal),
                        }
                    }
                    Ok(Some(DaemonFrame::Batch(batch))) => {
                        let Some(session) = &self.session else {
                            return Close::Rejected(Refusal {
                                reason: "bad_payload",
                                message: "a batch arrived before the Hello".into(),
                            });
                        };
                        match session.batch(&batch) {
                            Ok(next) => self.expected_seq = next,
                            Err(refusal) => return Close::Rejected(refusal),
                        }
                        self.ingest.sink.events(session.label(), &batch.events);
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
}

fn rejected(e: &FrameError) -> Close {
    Close::Rejected(Refusal {
        reason: e.reason(),
        message: e.to_string(),
    })
}
