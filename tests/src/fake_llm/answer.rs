//! Turns a reply into an HTTP response: whole JSON or server-sent events, honest or
//! broken the way an injected fault asks.

use super::body::{full, paced, Body, Script, Tail};
use super::fault::FaultKind;
use super::reply::{Reply, THINK_STEP};
use super::wire::{self, Delta, ReplyMeta, Usage};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Response;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the reply goes out; faults that answer with an error status never get here.
pub struct Answer {
    pub meta: ReplyMeta,
    pub reply: Reply,
    pub usage: Usage,
    /// One of `StallStream`, `Cut`, `Malformed`, `EndlessEvent`, or `None` for an honest
    /// answer.
    pub fault: Option<FaultKind>,
    /// Pause between streamed chunks.
    pub pace: Option<Duration>,
    /// Counts streams the client let go of early.
    pub abandoned: Arc<AtomicU64>,
}

/// The body a client gets for `[fault:malformed]` on a stream.
const MALFORMED_EVENT: &[u8] = b"data: {\"choices\": [\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

impl Answer {
    /// The whole completion (after the thinking time, spent before this is called).
    pub fn whole(self, stop: CancellationToken) -> Response<Body> {
        let reasoning = self.reply.reasoning_text();
        let json = Bytes::from(wire::completion(
            &self.meta,
            &self.reply.text,
            reasoning.as_deref(),
            self.usage,
        ));
        // A strict prefix of a JSON object never parses.
        let half = json.slice(..json.len() / 2);
        let (body, declared_len) = match self.fault {
            Some(FaultKind::Malformed) => (full(half), None),
            Some(FaultKind::Cut) => (
                self.script(paced(vec![half], None), Tail::Cut, stop),
                Some(json.len()),
            ),
            Some(FaultKind::StallStream) => {
                (self.script(vec![], Tail::Stall, stop), Some(json.len()))
            }
            Some(FaultKind::EndlessEvent) => (
                self.script(
                    paced(
                        vec![Bytes::from_static(
                            b"{\"choices\":[{\"message\":{\"content\":\"",
                        )],
                        None,
                    ),
                    Tail::Endless,
                    stop,
                ),
                None,
            ),
            _ => (full(json), None),
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(len) = declared_len {
            // Promises the whole body, which never comes.
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }

    pub fn stream(self, stop: CancellationToken) -> Response<Body> {
        let (events, tail) = match self.fault {
            Some(FaultKind::Malformed) => (
                paced(
                    vec![
                        Bytes::from_static(MALFORMED_EVENT),
                        Bytes::from_static(DONE_EVENT),
                    ],
                    None,
                ),
                Tail::Finish,
            ),
            Some(FaultKind::StallStream) => {
                let mut events = self.events();
                events.truncate(1);
                (events, Tail::Stall)
            }
            Some(FaultKind::Cut) => {
                let mut events = self.events();
                events
                    .truncate(((self.reply.reasoning.len() + self.reply.token_count()) / 2).max(1));
                (events, Tail::Cut)
            }
            Some(FaultKind::EndlessEvent) => {
                let mut events = self.events();
                events.truncate(1);
                events.push((
                    Duration::ZERO,
                    Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\""),
                ));
                (events, Tail::Endless)
            }
            _ => (self.events(), Tail::Finish),
        };
        let mut response = Response::new(self.script(events, tail, stop));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// A reasoning event every [`THINK_STEP`], then one event per answer token at the
    /// configured pace, the closing chunk with usage, then `[DONE]`.
    fn events(&self) -> Vec<(Duration, Bytes)> {
        let mut events =
            Vec::with_capacity(self.reply.token_count() + self.reply.reasoning.len() + 2);
        for (i, step) in self.reply.reasoning.iter().enumerate() {
            let delta = Delta {
                role: (i == 0).then_some("assistant"),
                reasoning_content: Some(step),
                ..Delta::default()
            };
            let pause = if i == 0 { Duration::ZERO } else { THINK_STEP };
            events.push((pause, sse(wire::chunk(&self.meta, delta, None))));
        }
        let thought = !self.reply.reasoning.is_empty();
        let mut answer = Vec::with_capacity(self.reply.token_count() + 2);
        for (i, token) in self.reply.tokens().enumerate() {
            let delta = Delta {
                role: (i == 0 && !thought).then_some("assistant"),
                content: Some(token),
                ..Delta::default()
            };
            answer.push(sse(wire::chunk(&self.meta, delta, None)));
        }
        answer.push(sse(wire::chunk(
            &self.meta,
            Delta::default(),
            Some(self.usage),
        )));
        answer.push(Bytes::from_static(DONE_EVENT));
        let mut answer = paced(answer, self.pace);
        if thought {
            // The answer starts a step after the last thought.
            answer[0].0 = THINK_STEP;
        }
        events.extend(answer);
        events
    }

    fn script(&self, events: Vec<(Duration, Bytes)>, tail: Tail, stop: CancellationToken) -> Body {
        Script {
            events,
            tail,
            abandoned: Some(self.abandoned.clone()),
        }
        .into_body(stop)
    }
}

fn sse(json: Vec<u8>) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&json);
    event.extend_from_slice(b"\n\n");
    event.into()
}
