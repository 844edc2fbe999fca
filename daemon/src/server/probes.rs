//! `GET /healthz` and `GET /readyz` on the daemon's own port, for load balancers and
//! orchestrators. `/healthz`: the process serves (live). `/readyz`: it takes new work —
//! 503 from the first SIGTERM on, through the drain (`EXAI_DRAIN_S`), while everything
//! is still served, so balancers take the daemon out of rotation before it stops
//! accepting. Neither asks Redis, Supabase or the providers (chats degrade without them,
//! and restarting the daemon would not bring them back), neither needs the token nor
//! holds a place, and both answer any `Host`: a balancer sends its own. The body says
//! only the verdict.

use super::{text, Body};
use hyper::{Method, Request, Response};
use tokio_util::sync::CancellationToken;

/// The probe `path` names, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

impl Probe {
    pub fn of(path: &str) -> Option<Self> {
        match path {
            "/healthz" => Some(Self::Live),
            "/readyz" => Some(Self::Ready),
            _ => None,
        }
    }

    /// The answer, given whether the drain has begun.
    pub fn answer<B>(self, req: &Request<B>, draining: &CancellationToken) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = text(405, "method not allowed: use GET\n");
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return no_store(response);
        }
        let response = match (self, draining.is_cancelled()) {
            (Self::Live, _) => text(200, "ok\n"),
            (Self::Ready, false) => text(200, "ready\n"),
            (Self::Ready, true) => text(503, "draining\n"),
        };
        no_store(response)
    }
}

/// A verdict of now: no cache between a balancer and the daemon may keep it.
fn no_store(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn ready_until_the_drain_then_live_still() {
        let draining = CancellationToken::new();
        let live = Probe::of("/healthz").unwrap();
        let ready = Probe::of("/readyz").unwrap();
        assert_eq!(ready.answer(&get("/readyz"), &draining).status(), 200);
        assert_eq!(live.answer(&get("/healthz"), &draining).status(), 200);
        draining.cancel();
        assert_eq!(ready.answer(&get("/readyz"), &draining).status(), 503);
        assert_eq!(live.answer(&get("/healthz"), &draining).status(), 200);
    }

    #[test]
    fn only_the_two_paths_and_only_reads() {
        assert_eq!(Probe::of("/healthz/"), None);
        assert_eq!(Probe::of("/mcp"), None);
        let post = Request::post("/readyz").body(()).unwrap();
        let answer = Probe::Ready.answer(&post, &CancellationToken::new());
        assert_eq!(answer.status(), 405);
        assert_eq!(answer.headers()["allow"], "GET, HEAD");
        assert_eq!(answer.headers()["cache-control"], "no-store");
    }
}
