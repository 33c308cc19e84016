//! The web server against clients that try to wear it down: idle connections by the
//! thousand, a client that never sends its headers, and more connections than the cap.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::harness::{CONFIG, Sandbox};

const SECRET: &str = "web-limits-test-secret-0123456789abcdef";

/// `herald run` in this process, with `http` as its `[http]` section.
async fn start(
    s: &Sandbox,
    http: &str,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let (base, stop, handle) = crate::daemon::start_with(
        s,
        &format!("\n[http]\n{http}\n"),
        &[("HERALD_SECRET", SECRET)],
        Arc::new(herald::clock::SystemClock),
    )
    .await;
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (addr, stop, handle)
}

/// Reads until the server closes the connection; panics if it is still open after `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("the server kept the connection open for {within:?}: {e}"),
    }
}

fn healthz(addr: SocketAddr, within: Duration) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut status)
        .unwrap_or_else(|e| panic!("/healthz did not answer within {within:?}: {e}"));
    status
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_its_headers_is_disconnected_and_so_is_an_idle_keep_alive() {
    let s = Sandbox::new();
    let (addr, stop, handle) = start(&s, "header_timeout_seconds = 1").await;
    tokio::task::spawn_blocking(move || {
        // Nothing at all.
        let mut silent = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        assert!(closed_within(&mut silent, Duration::from_secs(10)).is_empty());
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "closed too early"
        );

        // Half a request line, then silence (slowloris).
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
            .unwrap();
        closed_within(&mut slow, Duration::from_secs(10));

        // One request on a keep-alive connection, then idle.
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let got = closed_within(&mut idle, Duration::from_secs(10));
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
            "the request was answered before the idle connection was closed"
        );
    })
    .await
    .unwrap();
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let s = Sandbox::new();
    let (addr, stop, handle) = start(&s, "max_connections = 16\nheader_timeout_seconds = 60").await;
    tokio::task::spawn_blocking(move || {
        let mut idle: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The server has accepted all sixteen once a request on a seventeenth is answered.
        assert_eq!(healthz(addr, Duration::from_secs(10)), 200);
        // Room was made by closing the oldest idle connection, long before its timeout.
        closed_within(&mut idle[0], Duration::from_secs(10));
        assert_eq!(healthz(addr, Duration::from_secs(10)), 200);
    })
    .await
    .unwrap();
    stop.cancel();
    handle.await.unwrap();
}

/// `herald run` as an operator starts it, under the common default soft limit of 1,024 open
/// files: 1,100 idle connections must not keep `/healthz` from answering.
#[test]
fn eleven_hundred_idle_connections_do_not_make_healthz_unreachable() {
    herald::http::server::raise_fd_limit();
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[schedule]\ncron = \"0 0 9 1 1 *\"\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let (mut child, addr) = spawn_daemon(&s, "ulimit -Sn 1024 && ");

    let idle: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let status = healthz(addr, Duration::from_secs(10));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    drop(idle);
    assert_eq!(status, 200);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// `herald run` as a process in the sandbox (after the shell commands in `prefix`), with
/// JSON logs: the child and the address it serves on, read from its "serving HTTP" line.
pub fn spawn_daemon(s: &Sandbox, prefix: &str) -> (std::process::Child, SocketAddr) {
    let mut sh = std::process::Command::new("/bin/sh");
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") || key == "RUST_LOG" {
            sh.env_remove(key);
        }
    }
    let mut child = sh
        .args(["-c", &format!("{prefix}exec \"$0\" --log-format json run")])
        .arg(env!("CARGO_BIN_EXE_herald"))
        .current_dir(s.path(""))
        .env("HERALD_SECRET", SECRET)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "herald run exited before serving"
        );
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["fields"]["message"] == "serving HTTP" {
            break entry["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    (child, addr)
}
