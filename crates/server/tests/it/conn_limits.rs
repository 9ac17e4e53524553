//! The accept loop's limits, over real sockets: a half-sent or dripped
//! header is cut off, an idle kept-alive connection is closed, a late body
//! is answered 408, a slow answer is not cut, and connections beyond the
//! cap wait for a free one.
//!
//! The limits are short here so the tests are quick; every assertion
//! allows many times the limit before it calls a connection "not closed".

use std::time::Duration;

use countersign_server::{ConnLimits, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Harness;

/// Far beyond every limit below: a connection still open after this was
/// not going to be closed.
const PATIENCE: Duration = Duration::from_secs(15);

async fn start(limits: ConnLimits) -> (std::net::SocketAddr, Harness) {
    let h = Harness::with_config(ServerConfig {
        conn_limits: limits,
        ..ServerConfig::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(countersign_server::serve_router(
        listener,
        h.app.clone(),
        limits,
        std::future::pending(),
    ));
    (addr, h)
}

fn limits() -> ConnLimits {
    ConnLimits {
        header_read: Duration::from_secs(30),
        body_read: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        max_connections: 64,
    }
}

/// Reads until the server closes the connection (or resets it); what it
/// sent before. Panics if it is still open after [`PATIENCE`].
async fn until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads one whole response of a `Connection: close`-less exchange: the
/// head and a `Content-Length` body.
async fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before the answer ended");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_half_sent_header_is_cut_off() {
    let (addr, _h) = start(ConnLimits {
        header_read: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let sent = until_closed(&mut s).await;
    assert!(!sent.contains("200 OK"), "{sent}");
}

#[tokio::test]
async fn a_dripped_header_is_cut_off_although_bytes_keep_coming() {
    let (addr, _h) = start(ConnLimits {
        header_read: Duration::from_millis(500),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte every 50 ms, for far longer than the header limit: the
    // reads never wait long, but the header never ends in time.
    let (mut rd, mut wr) = s.split();
    let drip = async {
        for _ in 0..(PATIENCE.as_millis() / 50) {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = closed => {}
        () = drip => panic!("the server read a dripped header for {PATIENCE:?}"),
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_answer() {
    let (addr, _h) = start(ConnLimits {
        idle: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Kept alive, then idle past the limit: closed without a word.
    assert_eq!(until_closed(&mut s).await, "");
}

#[tokio::test]
async fn a_slow_answer_is_not_cut_by_the_idle_or_header_limit() {
    let (addr, h) = start(ConnLimits {
        idle: Duration::from_millis(100),
        header_read: Duration::from_millis(100),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // `slow` never settles: `?wait=1` holds the request for a second,
    // ten times the idle limit, with nothing on the wire.
    let body = "{}";
    let req = format!(
        "POST /api/v1/workflows/slow/runs?wait=1 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        h.tokens.writer,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let answer = response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

#[tokio::test]
async fn a_late_body_is_answered_408_and_the_connection_closed() {
    let (addr, h) = start(ConnLimits {
        body_read: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/v1/workflows/triage/runs HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 60\r\n\r\n{{\"email\":",
        h.tokens.writer
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let sent = until_closed(&mut s).await;
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("request-timeout"), "{sent}");
    assert_eq!(h.run_count().await, 0, "a cut-off request made a run");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let (addr, _h) = start(ConnLimits {
        max_connections: 2,
        ..limits()
    })
    .await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(get).await.unwrap();
    assert!(response(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(get).await.unwrap();
    assert!(response(&mut second).await.starts_with("HTTP/1.1 200"));

    // Both are kept alive: a third waits in the backlog, unanswered.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(get).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond the cap"
    );

    // One closes; the third is served.
    drop(first);
    let answer = response(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
