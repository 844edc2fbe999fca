//! The model providers: Kimi (Moonshot) and GLM (Zhipu / Z.ai), both OpenAI-compatible.

pub mod client;
pub mod limits;
pub mod models;
pub mod secret;
pub mod wire;

pub use client::{
    CallError, CallFailure, ChatReply, ChatRequest, ProviderClient, ProviderConfig, RetryPolicy,
};
pub use limits::{Busy, CallPermit, InflightLimits};
pub use models::{ModelInfo, MODELS};
pub use secret::Secret;
pub use wire::{Message, Role};
