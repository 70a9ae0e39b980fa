//! One kept-alive HTTP/1.1 client connection over hyper, for the fixed-rate pacer and the
//! stream client (wrk covers the closed loop).

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A request the bench sends: `POST path` with a JSON body.
#[derive(Debug, Clone)]
pub struct JsonPost {
    /// The server.
    pub addr: SocketAddr,
    /// The path.
    pub path: String,
    /// The JSON body.
    pub body: Bytes,
    /// Headers beside `Host` and `Content-Type` (the identity scenario's credentials).
    pub headers: Vec<(String, String)>,
}

impl JsonPost {
    /// The hyper request; fails when a header's name or value is not valid.
    fn request(&self) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let mut request = hyper::Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
            .body(Full::new(self.body.clone()))
            .context("cannot build the request")
    }
}

/// A kept-alive connection; its driver task ends when it is dropped.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Opens a connection to `addr` (127.0.0.1 only: the caller builds the address).
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "refusing {addr}: the bench only sends traffic to 127.0.0.1"
        );
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, driver })
    }

    /// Sends `post` and returns the answer's head with its body still to read.
    pub async fn send(&mut self, post: &JsonPost) -> anyhow::Result<hyper::Response<Incoming>> {
        self.sender.ready().await.context("the connection closed")?;
        Ok(self.sender.send_request(post.request()?).await?)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
