//! The engine over real loopback sockets: a registry, an upstream, a client. Times are
//! scaled down and asserted as lower bounds (a toxic makes things at least this slow) with
//! generous upper bounds.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::parse_proxy_flag;
use super::registry::{NewProxy, ProxyChange, Registry};

/// An upstream that echoes what it reads.
async fn echo_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// An upstream that says `bye` and closes.
async fn goodbye_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"bye").await;
        }
    });
    addr
}

/// A proxy `p` in front of `upstream`; its listen address.
fn proxy(registry: &Registry, upstream: &str) -> String {
    registry
        .create(NewProxy {
            name: "p".into(),
            listen: "127.0.0.1:0".into(),
            upstream: upstream.into(),
            enabled: true,
        })
        .unwrap()
        .listen
}

fn toxic(registry: &Registry, body: serde_json::Value) {
    registry.add_toxic("p", &body).unwrap();
}

/// Writes `message`, reads as many bytes back; how long it took.
async fn round_trip(socket: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    socket.write_all(message).await.unwrap();
    let mut back = vec![0; message.len()];
    socket.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
    started.elapsed()
}

/// Reads until the end; the bytes, and whether it ended in an error rather than a FIN.
async fn read_to_end(socket: &mut TcpStream) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(0)) => return (got, None),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => return (got, Some(error.kind())),
            Err(_) => panic!("the connection stayed open"),
        }
    }
}

#[test]
fn a_proxy_flag_names_listen_and_upstream() {
    let new = parse_proxy_flag("llm=127.0.0.1:0=127.0.0.1:8001").unwrap();
    assert_eq!(new.name, "llm");
    assert_eq!(new.listen, "127.0.0.1:0");
    assert_eq!(new.upstream, "127.0.0.1:8001");
    assert!(new.enabled);
    assert!(parse_proxy_flag("llm=127.0.0.1:0").is_err());
    assert!(parse_proxy_flag("llm=127.0.0.1:0=nowhere").is_err());
}

#[tokio::test]
async fn bytes_pass_both_ways_intact_under_backpressure() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    let socket = TcpStream::connect(&listen).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let sent: Vec<u8> = (0..4_000_000_u32).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    // The writer runs ahead of the reader: every buffer on the way fills and pushes back.
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        write
    });
    let mut back = vec![0; expected.len()];
    tokio::time::sleep(Duration::from_millis(200)).await;
    read.read_exact(&mut back).await.unwrap();
    assert!(back == expected, "the bytes came back changed");
    drop(writer.await.unwrap());
    registry.shutdown().await;
}

#[tokio::test]
async fn latency_reaches_open_connections_and_goes_when_removed() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    assert!(round_trip(&mut socket, b"fast").await < Duration::from_millis(300));

    toxic(
        &registry,
        json!({"type": "latency", "attributes": {"latency": 400}}),
    );
    let slow = round_trip(&mut socket, b"slow").await;
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    assert!(slow < Duration::from_secs(3), "{slow:?}");

    registry.delete_toxic("p", "latency_downstream").unwrap();
    assert!(round_trip(&mut socket, b"fast again").await < Duration::from_millis(300));
}

#[tokio::test]
async fn a_toxic_of_toxicity_zero_never_applies() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    toxic(
        &registry,
        json!({"type": "latency", "toxicity": 0.0, "attributes": {"latency": 1000}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    assert!(round_trip(&mut socket, b"hi").await < Duration::from_millis(500));
}

#[tokio::test]
async fn upstream_latency_delays_requests() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    toxic(
        &registry,
        json!({"type": "latency", "stream": "upstream", "attributes": {"latency": 150}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    assert!(round_trip(&mut socket, b"hi").await >= Duration::from_millis(150));
}

#[tokio::test]
async fn bandwidth_paces_the_stream() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    // 100 KB/s: 30 000 bytes take 300 ms.
    toxic(
        &registry,
        json!({"type": "bandwidth", "attributes": {"rate": 100}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    let took = round_trip(&mut socket, &[7; 30_000]).await;
    assert!(took >= Duration::from_millis(280), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn slicer_spaces_the_pieces() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    // 10 pieces, 20 ms after each.
    toxic(
        &registry,
        json!({"type": "slicer", "attributes": {"average_size": 100, "delay": 20_000}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    let took = round_trip(&mut socket, &[1; 1000]).await;
    assert!(took >= Duration::from_millis(180), "{took:?}");
}

#[tokio::test]
async fn timeout_drops_data_and_closes_after_its_time() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    toxic(
        &registry,
        json!({"type": "timeout", "attributes": {"timeout": 150}}),
    );
    let started = Instant::now();
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    socket.write_all(b"anyone?").await.unwrap();
    let (got, _) = read_to_end(&mut socket).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn limit_data_closes_after_that_many_bytes() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    toxic(
        &registry,
        json!({"type": "limit_data", "attributes": {"bytes": 5}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    socket.write_all(b"0123456789").await.unwrap();
    let (got, _) = read_to_end(&mut socket).await;
    assert_eq!(got, b"01234");
}

#[tokio::test]
async fn reset_peer_resets_the_connection() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    toxic(
        &registry,
        json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 50}}),
    );
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    socket.write_all(b"hello").await.unwrap();
    let (got, error) = read_to_end(&mut socket).await;
    assert!(got.is_empty());
    assert_eq!(error, Some(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn slow_close_delays_the_close() {
    let registry = Registry::new();
    let listen = proxy(&registry, &goodbye_upstream().await);
    toxic(
        &registry,
        json!({"type": "slow_close", "attributes": {"delay": 200}}),
    );
    let started = Instant::now();
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    let (got, error) = read_to_end(&mut socket).await;
    assert_eq!((got.as_slice(), error), (&b"bye"[..], None));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_refusing_upstream_closes_the_client() {
    let registry = Registry::new();
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = free.local_addr().unwrap().to_string();
    drop(free);
    let listen = proxy(&registry, &nobody);
    let mut socket = TcpStream::connect(&listen).await.unwrap();
    let (got, _) = read_to_end(&mut socket).await;
    assert!(got.is_empty());
}

#[tokio::test]
async fn disabling_is_a_partition_and_enabling_heals_it() {
    let registry = Registry::new();
    let listen = proxy(&registry, &echo_upstream().await);
    let mut open = TcpStream::connect(&listen).await.unwrap();
    round_trip(&mut open, b"before").await;

    let disabled = ProxyChange {
        enabled: Some(false),
        ..ProxyChange::default()
    };
    registry.update("p", disabled).await.unwrap();
    // Closed by the time the call returns: the open connection ends, new ones are refused.
    let (_, _) = read_to_end(&mut open).await;
    assert!(TcpStream::connect(&listen).await.is_err());

    let enabled = ProxyChange {
        enabled: Some(true),
        ..ProxyChange::default()
    };
    assert_eq!(registry.update("p", enabled).await.unwrap().listen, listen);
    let mut again = TcpStream::connect(&listen).await.unwrap();
    round_trip(&mut again, b"after").await;
    registry.shutdown().await;
    let (_, _) = read_to_end(&mut again).await;
}
