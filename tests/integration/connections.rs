//! Connection exhaustion through the real gateway: half-sent request heads
//! and idle keep-alive connections are closed on time, connections over
//! `http.max_connections` are answered 503 at once while calls on open
//! connections keep working and being audited, and a gateway under a low
//! open-files limit flooded with connections keeps answering and auditing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;
use toolgate::storage::Store;

use crate::audit::verify_cli;
use crate::bad_input::rpc;
use crate::common::*;

const ACCEPT: &str = "application/json, text/event-stream";

/// A gateway (dev mode, allow-all) with an HTTP echo upstream and these
/// `[http]` lines.
async fn gateway(http: &str) -> (Gateway, CancellationToken) {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        &format!("[http]\n{http}"),
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    (gw, ct)
}

/// An MCP session over one kept-alive connection: its client never opens a
/// second one while requests go one at a time.
struct OneConnection {
    http: reqwest::Client,
    url: String,
    sid: String,
}

impl OneConnection {
    async fn open(url: &str) -> OneConnection {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "one", "version": "1"}}});
        let r = http
            .post(url)
            .header("accept", ACCEPT)
            .json(&init)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let _ = r.bytes().await.unwrap();
        let s = OneConnection {
            http,
            url: url.to_string(),
            sid,
        };
        let r = s
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .unwrap();
        let _ = r.bytes().await;
        s
    }

    async fn send(&self, body: Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(&self.url)
            .header("accept", ACCEPT)
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
            .await
    }

    /// `echo__echo` with `message`: what came back, or why not.
    async fn echo(&self, message: &str) -> Result<String, String> {
        let r = self
            .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo__echo", "arguments": {"message": message}}}))
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("HTTP {}", r.status()));
        }
        let v = rpc(r).await;
        v["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| v.to_string())
    }
}

/// Read until the peer closes; returns what was read and how long it took
/// (`None` if it was still open after `limit`).
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&got).into_owned(), start.elapsed()));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One complete keep-alive `GET /healthz` on `tcp`; returns the response
/// head and body as text.
async fn healthz(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // `ok` is the whole body of /healthz.
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("no answer to /healthz")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The status line of the answer to one `GET /healthz` on `tcp` (empty if
/// closed unanswered).
async fn healthz_status(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let got = String::from_utf8_lossy(&got);
    got.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn slowloris_request_heads_are_closed_after_the_header_read_timeout() {
    let (mut gw, ct) = gateway("header_read_timeout = \"600ms\"\nidle_timeout = \"30s\"").await;
    let addr = gw.addr;
    // Ways to never finish a request head.
    let stalls: [&[u8]; 5] = [
        b"",
        b"P",
        b"POST /mcp HTTP/1.1\r\n",
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r", // one byte short
    ];
    let mut held = Vec::new();
    for i in 0..100 {
        let stall = stalls[i % stalls.len()];
        held.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(stall).await.unwrap();
            read_until_closed(&mut tcp, Duration::from_secs(10)).await
        }));
    }
    // A drip of one header byte every 100 ms is still one head, timed from
    // the connection's opening.
    let drip = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if tcp.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let closed = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
        (start.elapsed(), closed)
    });
    // After one complete request, the next head's clock starts at its
    // first byte: closed after the header timeout, not the idle one.
    let second = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        assert!(healthz(&mut tcp).await.starts_with("HTTP/1.1 200"));
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        read_until_closed(&mut tcp, Duration::from_secs(10)).await
    });
    for h in held {
        let (answer, after) = h.await.unwrap().expect("a stalled head was never closed");
        assert!(answer.is_empty(), "a stalled head was answered: {answer}");
        assert!(
            after >= Duration::from_millis(400) && after < Duration::from_secs(5),
            "closed after {after:?}"
        );
    }
    let (dripped_for, closed) = drip.await.unwrap();
    assert!(closed.is_some(), "the drip was never closed");
    assert!(
        dripped_for < Duration::from_secs(5),
        "the drip held its connection {dripped_for:?}"
    );
    let (answer, after) = second
        .await
        .unwrap()
        .expect("a stalled second head was never closed");
    assert!(answer.is_empty(), "{answer}");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");

    // A prompt client is served as before.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut tcp).await.starts_with("HTTP/1.1 200"));
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let (mut gw, ct) = gateway("header_read_timeout = \"5s\"\nidle_timeout = \"500ms\"").await;
    let addr = gw.addr;
    // Idle right after opening, and idle after a request.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    let mut used = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut used).await.starts_with("HTTP/1.1 200"));
    for tcp in [&mut fresh, &mut used] {
        let (answer, after) = read_until_closed(tcp, Duration::from_secs(4))
            .await
            .expect("an idle connection was never closed");
        assert!(answer.is_empty(), "{answer}");
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }

    // A connection in use stays open past the idle timeout.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    for _ in 0..5 {
        assert!(healthz(&mut busy).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A call longer than the idle timeout is not cut, nor is the client's
    // event stream; a client whose pooled connection was closed reconnects.
    let (client, _) = connect(&gw.url).await;
    let r = client
        .call_tool(call("echo__sleep", json!({"ms": 1200})))
        .await
        .unwrap();
    assert_eq!(text(&r), "slept 1200 ms");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client
        .call_tool(call("echo__echo", json!({"message": "again"})))
        .await
        .unwrap();
    assert_eq!(text(&r), "again");
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

/// `decided` records whose arguments carry a `message` starting with
/// `prefix`.
async fn audited(data_dir: &Path, prefix: &str) -> Vec<String> {
    let store = Store::open(None, data_dir).await.unwrap();
    let bodies: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM audit_records WHERE kind = 'decided'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    bodies
        .iter()
        .filter_map(|(b,)| {
            let v: Value = serde_json::from_str(b).ok()?;
            let m = v["args"]["message"].as_str()?;
            m.starts_with(prefix).then(|| m.to_string())
        })
        .collect()
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_503_while_open_ones_keep_working_and_audited() {
    let (mut gw, ct) =
        gateway("max_connections = 4\nheader_read_timeout = \"20s\"\nidle_timeout = \"20s\"").await;
    let addr = gw.addr;
    let session = OneConnection::open(&gw.url).await;
    // Three more fill the cap: idle, half-sent, and one mid-keep-alive.
    let idle = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /mcp HTTP/1.1\r\n").await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));

    // Further connections are answered at once, in parallel, whatever they ask.
    let asks: [&[u8]; 3] = [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /readyz HTTP/1.0\r\n\r\n",
    ];
    let mut refused = Vec::new();
    for i in 0..12 {
        let ask = asks[i % asks.len()];
        refused.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(ask).await.unwrap();
            read_until_closed(&mut tcp, Duration::from_secs(5)).await
        }));
    }
    for r in refused {
        let (answer, after) = r
            .await
            .unwrap()
            .expect("a connection over the cap was held");
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(" 503 "),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        assert!(answer.contains("http.max_connections"), "{answer}");
        assert!(after < Duration::from_secs(1), "answered after {after:?}");
    }
    // One that sends nothing is closed after a short wait, not held.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let (answer, after) = read_until_closed(&mut silent, Duration::from_secs(6))
        .await
        .expect("a silent connection over the cap was held");
    assert!(
        answer.is_empty() && after < Duration::from_secs(5),
        "{answer} after {after:?}"
    );

    // Calls on the open connections still work, and each is audited.
    for i in 0..10 {
        let m = format!("capped-{i}");
        assert_eq!(session.echo(&m).await, Ok(m));
    }
    assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
    let mut seen = audited(&gw.dir.path().join("data"), "capped-").await;
    seen.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("capped-{i}")).collect();
    want.sort();
    assert_eq!(seen, want);

    // A slot freed is a slot taken.
    drop(idle);
    let served = eventually(Duration::from_secs(5), || async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        healthz_status(&mut tcp).await.contains(" 200 ")
    })
    .await;
    assert!(served, "no connection was served after one closed");
    drop((half, kept));
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn a_gateway_at_a_low_open_files_limit_flooded_with_connections_keeps_answering_and_auditing()
{
    // The flood needs more descriptors than a default soft limit here.
    toolgate::app::listen::raise_descriptor_limit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/echo.toml"),
        stdio_reference_toml("echo", "echo", ""),
    )
    .unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = dir.path().join("toolgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nlog_format = \"json\"\n[auth]\ndev_insecure = true\n[http]\nheader_read_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    // 512 descriptors: room for 92 connections beside the reserve.
    let mut gateway = std::process::Command::new("prlimit")
        .arg("--nofile=512:512")
        .arg(TOOLGATE)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/mcp");
    let up = eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "{}", std::fs::read_to_string(&log).unwrap());
    let session = OneConnection::open(&url).await;
    assert_eq!(session.echo("before").await, Ok("before".into()));

    // 1,000 connections (more than fit, fewer than the kernel's accept
    // queue holds), each a request head that never ends.
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.push(tokio::spawn(async move {
            let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target))
                .await
                .ok()?
                .ok()?;
            tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .ok()?;
            read_until_closed(&mut tcp, Duration::from_secs(60)).await
        }));
    }
    // Calls on the connection opened before keep going, and keep being
    // recorded.
    let mut answered = Vec::new();
    for i in 0..30 {
        let m = format!("flooded-{i}");
        assert_eq!(session.echo(&m).await, Ok(m.clone()), "during the flood");
        answered.push(m);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every flood connection is closed in the end (none held forever).
    let mut opened = 0;
    for f in flood {
        if let Some(closed) = f.await.unwrap() {
            opened += 1;
            assert!(
                closed.0.is_empty() || closed.0.starts_with("HTTP/1.1 503"),
                "{}",
                closed.0
            );
        }
    }
    assert!(opened > 900, "only {opened} flood connections got through");
    // And the gateway takes new clients again.
    let after = OneConnection::open(&url).await;
    assert_eq!(after.echo("after").await, Ok("after".into()));
    answered.push("after".into());

    std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    gateway.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("\"open_files\":512"), "{log}");
    assert!(log.contains("at the connection limit"), "{log}");
    for never in ["Too many open files", "cannot accept", "audit"] {
        assert!(
            !log.lines()
                .any(|l| l.contains(never) && l.contains("ERROR")),
            "{never}: {log}"
        );
    }
    let mut seen = audited(&dir.path().join("data"), "").await;
    seen.retain(|m| m.starts_with("flooded-") || m == "after");
    seen.sort();
    answered.sort();
    assert_eq!(seen, answered);
    let (ok, out) = verify_cli(&config);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_responses_is_closed_after_the_idle_timeout() {
    let (mut gw, ct) = gateway("header_read_timeout = \"5s\"\nidle_timeout = \"500ms\"").await;
    let session = OneConnection::open(&gw.url).await;
    // Three pipelined calls whose answers (3 MB each) far exceed what the
    // socket buffers hold, on a socket that never reads.
    let message = "a".repeat(3_000_000);
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo__echo", "arguments": {"message": message}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {ACCEPT}\r\nContent-Type: application/json\r\nMcp-Session-Id: {}\r\nMcp-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n\r\n{body}",
        session.sid,
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(gw.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..3 {
            if write.write_all(request.as_bytes()).await.is_err() {
                return;
            }
        }
        // Keep the write half open (no FIN) until the gateway closes.
        tokio::time::sleep(Duration::from_secs(40)).await;
    });
    // Not reading for well past the idle timeout, and long enough for a
    // debug build to make the first answers (each call's 3 MB of arguments
    // is parsed, decided on, masked for the audit and echoed)...
    tokio::time::sleep(Duration::from_secs(12)).await;
    // ...then whatever was buffered arrives, and the connection is closed
    // short of the three answers.
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a stalled response's connection stayed open"
    );
    assert!(
        got < 2 * message.len(),
        "{got} bytes arrived: the stalled response was not cut"
    );
    writer.abort();
    // The gateway serves others as before.
    assert_eq!(session.echo("still").await, Ok("still".into()));
    gw.shutdown().await;
    ct.cancel();
}
