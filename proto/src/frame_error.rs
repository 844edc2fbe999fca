//! Why a frame was refused: its own file, so that the records a frame carries (events,
//! Hello) can name it without reaching up to the frame codec that reads them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("not an exai event stream: the first frame does not start with the EXAI magic")]
    BadMagic,
    #[error("unsupported protocol version {got} (this side speaks version {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("undecodable payload: {0}")]
    BadPayload(String),
    #[error("{extra} unexpected bytes after the payload")]
    TrailingBytes { extra: usize },
}

impl FrameError {
    /// A bounded label for counting rejections.
    pub const fn reason(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "bad_length",
            FrameError::BadMagic => "bad_magic",
            FrameError::UnsupportedVersion { .. } => "bad_version",
            FrameError::BadPayload(_) | FrameError::TrailingBytes { .. } => "bad_payload",
        }
    }
}
