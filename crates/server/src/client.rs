//! Who is on the other end: the client's address (the peer, or the last
//! `X-Forwarded-For` hop when the peer is the configured trusted proxy)
//! and a fixed-window counter per key, for the form's per-address limit
//! and the sign-in lockout per account and address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;

/// The client's address; `None` when the server was not started with
/// peer addresses (in-process tests) and no trusted proxy named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// From the peer address and headers: `X-Forwarded-For` counts only
    /// when the peer is `trusted_proxy` (anyone else could write it), and
    /// then its last entry (the one that proxy appended).
    pub(crate) fn resolve(
        peer: Option<IpAddr>,
        forwarded_for: Option<&str>,
        trusted_proxy: Option<IpAddr>,
    ) -> ClientIp {
        let via_proxy = peer.is_some() && peer == trusted_proxy;
        if via_proxy
            && let Some(ip) = forwarded_for
                .and_then(|h| h.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
                .and_then(|s| s.parse::<IpAddr>().ok())
        {
            return ClientIp(Some(ip));
        }
        ClientIp(peer)
    }

    /// For keys and logs: the address, or `-`.
    pub(crate) fn label(self) -> String {
        self.0.map_or_else(|| "-".to_string(), |ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientIp, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp::resolve(peer, xff, state.config.trusted_proxy))
    }
}

/// Counts events per key in fixed windows. Not on the engine's hot path
/// (form posts and sign-ins only); one short lock per call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter {
    hits: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
}

impl Counter {
    /// Counts one event for `key`; `Err(wait)` when `limit` events were
    /// already counted in the current `window` (the event is not counted).
    pub(crate) fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Duration> {
        let mut map = self.hits.lock().expect("counter lock");
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= window {
            *e = (0, Instant::now());
        }
        if e.0 >= limit {
            return Err(window.saturating_sub(e.1.elapsed()));
        }
        e.0 += 1;
        Ok(())
    }

    /// Whether `key` reached `limit` in the current window (counts nothing).
    pub(crate) fn reached(&self, key: &str, limit: u32, window: Duration) -> bool {
        let map = self.hits.lock().expect("counter lock");
        map.get(key)
            .is_some_and(|(n, since)| *n >= limit && since.elapsed() < window)
    }

    pub(crate) fn clear(&self, key: &str) {
        self.hits.lock().expect("counter lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_counts_only_from_the_trusted_proxy() {
        let proxy = ip("10.0.0.2");
        let xff = Some("203.0.113.9, 198.51.100.7");
        assert_eq!(
            ClientIp::resolve(proxy, xff, proxy),
            ClientIp(ip("198.51.100.7"))
        );
        // Anyone else's header is ignored: the peer is the client.
        assert_eq!(
            ClientIp::resolve(ip("192.0.2.1"), xff, proxy),
            ClientIp(ip("192.0.2.1"))
        );
        assert_eq!(
            ClientIp::resolve(ip("192.0.2.1"), xff, None),
            ClientIp(ip("192.0.2.1"))
        );
        // A junk header from the proxy falls back to the proxy itself.
        assert_eq!(
            ClientIp::resolve(proxy, Some("junk, "), proxy),
            ClientIp(proxy)
        );
        assert_eq!(ClientIp::resolve(None, xff, None), ClientIp(None));
        assert_eq!(ClientIp::resolve(None, xff, None).label(), "-");
    }

    #[test]
    fn the_counter_allows_limit_per_window_per_key() {
        let c = Counter::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(c.hit("a", 3, w).is_ok());
        }
        assert!(c.reached("a", 3, w));
        let wait = c.hit("a", 3, w).unwrap_err();
        assert!(wait <= w && wait > Duration::from_secs(50), "{wait:?}");
        assert!(c.hit("b", 3, w).is_ok(), "keys are separate");
        assert!(!c.reached("b", 3, w));
        c.clear("a");
        assert!(c.hit("a", 3, w).is_ok());
        // A window that has passed starts again.
        let short = Duration::from_millis(1);
        assert!(c.hit("c", 1, short).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.hit("c", 1, short).is_ok());
    }
}
