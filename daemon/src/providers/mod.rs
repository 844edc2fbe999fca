//! The model providers: Kimi (Moonshot) and GLM (Zhipu / Z.ai), both OpenAI-compatible.

pub mod catalogue;
pub mod client;
pub mod discovery;
pub mod limits;
pub mod models;
pub mod models_file;
pub mod progress;
pub mod secret;
pub mod wire;

pub use catalogue::{Catalogue, CatalogueHandle, Chosen, ModelError};
pub use client::{
    CallError, CallFailure, ChatReply, ChatRequest, ProviderClient, ProviderConfig, RetryPolicy,
};
pub use limits::{Busy, CallPermit, InflightLimits};
pub use models::{ModelInfo, Thinking, MODELS};
pub use progress::{CallProgress, Phase};
pub use secret::Secret;
pub use wire::{Message, Role, ThinkingType};
