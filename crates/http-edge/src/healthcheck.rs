//! `<service> healthcheck`: the container health check, run by the service's own binary
//! (the images carry no shell and no curl). One GET to the service on this host; exit 0 on
//! a 2xx answer, 1 on anything else, within the timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// The flags of the `healthcheck` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET; default: the service's own check on the address it listens on.
    #[arg(long)]
    pub url: Option<String>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

impl HealthcheckArgs {
    /// Checks `url`, or `path` on the service listening on `host:port`; prints one line
    /// saying what it found (to stderr: Docker keeps it in the container's health log).
    /// Blocks: call it outside any Tokio runtime (it runs its own).
    pub fn run(&self, host: IpAddr, port: u16, path: &str) -> ExitCode {
        let url = match (&self.url, port) {
            (Some(url), _) => url.clone(),
            (None, 0) => {
                eprintln!("unhealthy: PORT is 0 (a port picked at start): pass --url");
                return ExitCode::FAILURE;
            }
            (None, port) => local_url(host, port, path),
        };
        match probe(&url, Duration::from_millis(self.timeout_ms)) {
            Ok(status) if (200..300).contains(&status) => {
                eprintln!("healthy: {url} answered {status}");
                ExitCode::SUCCESS
            }
            Ok(status) => {
                eprintln!("unhealthy: {url} answered {status}");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("unhealthy: {url}: {error}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The URL of `path` on a service listening on `host:port`, as seen from the same host:
/// an unspecified address (`0.0.0.0`, `::`) is reached on loopback.
pub fn local_url(host: IpAddr, port: u16, path: &str) -> String {
    let host = match host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(host, port))
}

/// The status of one GET to `url`, within `timeout` (connect included).
fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                "nothing listening".to_owned()
            } else {
                e.to_string()
            }
        })?;
        Ok(response.status().as_u16())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_reached_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0".parse().unwrap(), 8000, "/ready"),
            "http://127.0.0.1:8000/ready"
        );
        assert_eq!(
            local_url("::".parse().unwrap(), 8000, "/health"),
            "http://[::1]:8000/health"
        );
        assert_eq!(
            local_url("10.1.2.3".parse().unwrap(), 9000, "/health"),
            "http://10.1.2.3:9000/health"
        );
    }

    #[tokio::test]
    async fn answers_decide_the_exit_code() {
        use axum::http::StatusCode;
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        // `healthcheck [--url URL]` for a service on `port`, answering `path`.
        let check = |url: Option<String>, port: u16, path: &'static str| {
            let args = HealthcheckArgs {
                url,
                timeout_ms: 300,
            };
            tokio::task::spawn_blocking(move || args.run(addr.ip(), port, path))
        };
        let port = addr.port();
        assert_eq!(check(None, port, "/ok").await.unwrap(), ExitCode::SUCCESS);
        assert_eq!(check(None, port, "/down").await.unwrap(), ExitCode::FAILURE);
        let started = std::time::Instant::now();
        assert_eq!(check(None, port, "/slow").await.unwrap(), ExitCode::FAILURE);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the timeout holds"
        );
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let nothing = Some(format!("http://127.0.0.1:{closed}/ok"));
        let code = check(nothing, port, "/ok").await.unwrap();
        assert_eq!(code, ExitCode::FAILURE, "--url wins; nothing listens there");
        let code = check(None, 0, "/ok").await.unwrap();
        assert_eq!(code, ExitCode::FAILURE, "port 0 cannot be probed");
        let code = check(Some(format!("http://{addr}/ok")), 0, "/")
            .await
            .unwrap();
        assert_eq!(
            code,
            ExitCode::SUCCESS,
            "with --url, port 0 does not matter"
        );
    }
}
