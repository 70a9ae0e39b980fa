//! Admin protection, in every authentication mode (`AUTH_MODE=none` included): the admin
//! routes (`/admin`, `/admin/*`) and the status page (`/status`, `/status/*`) answer 403 in
//! the lab's envelope, code `forbidden`, when
//!
//! 1. `ADMIN_ALLOW` names networks and the client's address is in none of them (or is
//!    unknown). The address is the TCP peer's: behind a proxy, allow the proxy's;
//!    `X-Forwarded-For` is never trusted;
//! 2. `Sec-Fetch-Site` is anything but `same-origin` or `none`. `same-site` is refused too:
//!    another port of the same host is the same *site*, and on a lab machine that is any
//!    dashboard or dev server running beside the gateway;
//! 3. `Origin` is present and is not the request's own (`null` included): its host and port
//!    must be those of `Host` (default ports ignored);
//! 4. a method other than GET or HEAD carries a form content type
//!    (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`): the
//!    "simple" requests a foreign page can send with no CORS preflight.
//!
//! Browsers send `Origin` and `Sec-Fetch-Site`; command-line clients send neither, so the
//! lab's `curl -X POST http://host:8000/admin/reset-circuit-breaker` (no content type) and a
//! JSON POST keep working. CORS (`CORS_ALLOW_ORIGINS`) never opens the admin routes: an
//! allowed origin passes the preflight, then its request is refused here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{Api, ErrorKind, RequestId};

/// `Sec-Fetch-Site`, not among `http`'s named headers.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Content types a page on another site may send without a CORS preflight.
const FORM_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// The networks that may call the admin routes (`ADMIN_ALLOW`); empty: any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAllow {
    networks: Vec<Network>,
}

/// Why an admin request was refused (logged; the client gets a generic message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client's address is not in `ADMIN_ALLOW`, or is unknown.
    #[error("the client address is not in ADMIN_ALLOW")]
    AddressNotAllowed,
    /// `Sec-Fetch-Site` says the request comes from another site (or origin).
    #[error("Sec-Fetch-Site is neither same-origin nor none")]
    CrossSite,
    /// `Origin` is not the request's own.
    #[error("the Origin is not the request's own")]
    ForeignOrigin,
    /// A state-changing method with a form content type.
    #[error("a form content type on a method other than GET or HEAD")]
    FormContent,
}

/// An IPv4 or IPv6 network: the address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    V4 { bits: u32, prefix: u8 },
    V6 { bits: u128, prefix: u8 },
}

impl AdminAllow {
    /// Parses `ADMIN_ALLOW`: comma-separated addresses (`127.0.0.1`, `::1`) and CIDR
    /// networks (`10.0.0.0/8`, `fd00::/8`); blank entries are skipped, host bits of a
    /// network are ignored, an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is taken as
    /// the IPv4 one. Empty or blank: any address. Fails naming the first bad entry.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let networks = raw
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Network::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether any address may call (no network given).
    pub fn is_any(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` may call: the list is empty, or a network holds it (an IPv4-mapped IPv6
    /// address, `::ffff:a.b.c.d`, is matched as the IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.is_any()
            || self
                .networks
                .iter()
                .any(|net| net.contains(ip.to_canonical()))
    }

    /// Whether a client at `peer` (unknown: `None`) may call.
    fn admits(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            Some(ip) => self.contains(ip),
            None => self.is_any(),
        }
    }
}

impl Network {
    /// `addr` or `addr/prefix`.
    fn parse(entry: &str) -> Result<Self, String> {
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{entry}` is not an IP address or CIDR network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{entry}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self::new(ip, prefix))
    }

    /// The network of `ip` with `prefix` bits (at most the family's width).
    fn new(ip: IpAddr, prefix: u8) -> Self {
        if let IpAddr::V6(v6) = ip
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Self::new(IpAddr::V4(v4), prefix - 96);
        }
        match ip {
            IpAddr::V4(v4) => Self::V4 {
                bits: u32::from(v4) & mask32(prefix),
                prefix,
            },
            IpAddr::V6(v6) => Self::V6 {
                bits: u128::from(v6) & mask128(prefix),
                prefix,
            },
        }
    }

    /// Whether `ip` (canonical: a mapped IPv4 address as IPv4) is in the network.
    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4 { bits, prefix }, IpAddr::V4(v4)) => u32::from(v4) & mask32(prefix) == bits,
            (Self::V6 { bits, prefix }, IpAddr::V6(v6)) => u128::from(v6) & mask128(prefix) == bits,
            _ => false,
        }
    }
}

/// The top `prefix` bits of 32 set.
fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// The top `prefix` bits of 128 set.
fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// Whether `path` is an admin route or the status page.
pub fn is_admin_path(path: &str) -> bool {
    ["/admin", "/status"].iter().any(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The checks of the module doc on one admin request: `peer` is the client's address
/// (`None` when unknown), in order address, `Sec-Fetch-Site`, `Origin`, content type.
pub fn check(
    allow: &AdminAllow,
    peer: Option<IpAddr>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if !allow.admits(peer) {
        return Err(Refusal::AddressNotAllowed);
    }
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        let site = site.to_str().unwrap_or("").trim();
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(Refusal::CrossSite);
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origin.to_str().is_ok_and(|o| is_own_origin(o, host)) {
            return Err(Refusal::ForeignOrigin);
        }
    }
    if *method != Method::GET && *method != Method::HEAD && has_form_type(headers) {
        return Err(Refusal::FormContent);
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) names the same host and port as `host` (the
/// `Host` header), default ports ignored. `null`, a malformed origin or no host: no.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.trim().split_once("://"), host) else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    normalize_authority(&scheme, authority) == normalize_authority(&scheme, host.trim())
}

/// `host[:port]` in lower case, without the port when it is `scheme`'s default.
fn normalize_authority(scheme: &str, authority: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return authority,
    };
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default && !host.is_empty() => host.to_owned(),
        _ => authority,
    }
}

/// Whether the content type is one of [`FORM_TYPES`] (parameters and case ignored).
fn has_form_type(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .any(|value| match value.to_str() {
            Ok(value) => {
                let media = value.split(';').next().unwrap_or("").trim();
                FORM_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t))
            }
            // Bytes a browser would not send; refused as a form may be.
            Err(_) => true,
        })
}

/// The layer: admin requests pass [`check`] or get 403; other paths pass untouched.
pub async fn guard_admin(
    State(allow): State<Arc<AdminAllow>>,
    req: Request,
    next: Next,
) -> Response {
    if !is_admin_path(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match check(&allow, peer, req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            tracing::warn!(path = req.uri().path(), client = ?peer, reason = %refusal,
                "admin request refused");
            forbidden(req.extensions().get::<RequestId>())
        }
    }
}

/// 403 in the lab's envelope; the reason stays in the log.
fn forbidden(request_id: Option<&RequestId>) -> Response {
    let kind = ErrorKind {
        lab: "forbidden",
        openai: "invalid_request_error",
        code: "forbidden",
    };
    let message = "the admin routes refuse this request (see the gateway's log)".to_owned();
    Api::Lab.refuse(StatusCode::FORBIDDEN, kind, message, request_id)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
    use axum::middleware::{from_fn, from_fn_with_state};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;
    use crate::layers::request_id::request_id;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// [`check`] from 127.0.0.1 with any address allowed.
    fn local(method: Method, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        check(
            &AdminAllow::default(),
            Some(ip("127.0.0.1")),
            &method,
            &headers(pairs),
        )
    }

    #[test]
    fn an_empty_list_allows_any_address_known_or_not() {
        for raw in ["", "  ", " , ,"] {
            let allow = AdminAllow::parse(raw).unwrap();
            assert!(allow.is_any());
            assert!(allow.contains(ip("203.0.113.9")));
            assert!(allow.contains(ip("2001:db8::1")));
            assert!(allow.admits(None));
        }
    }

    #[test]
    fn ipv4_addresses_and_networks_match_by_prefix() {
        let allow = AdminAllow::parse("10.0.0.0/8, 127.0.0.1,192.168.1.0/24").unwrap();
        for inside in ["10.0.0.0", "10.255.255.255", "127.0.0.1", "192.168.1.77"] {
            assert!(allow.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "11.0.0.1",
            "9.255.255.255",
            "127.0.0.2",
            "192.168.2.1",
            "::1",
        ] {
            assert!(!allow.contains(ip(outside)), "{outside}");
        }
        assert!(
            !allow.admits(None),
            "an unknown client is refused by a list"
        );
    }

    #[test]
    fn ipv6_addresses_and_networks_match_by_prefix() {
        let allow = AdminAllow::parse("::1, fd00::/8, 2001:db8:1::/48").unwrap();
        for inside in ["::1", "fd12:3456::1", "2001:db8:1:ffff::9"] {
            assert!(allow.contains(ip(inside)), "{inside}");
        }
        for outside in ["::2", "fe80::1", "2001:db8:2::1", "127.0.0.1"] {
            assert!(!allow.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn mapped_ipv6_addresses_match_ipv4_networks_and_back() {
        let v4 = AdminAllow::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
        assert!(!v4.contains(ip("::ffff:11.1.2.3")));
        let mapped = AdminAllow::parse("::ffff:10.0.0.0/104, ::ffff:127.0.0.1").unwrap();
        assert_eq!(
            mapped,
            AdminAllow::parse("10.0.0.0/8,127.0.0.1").unwrap(),
            "a mapped network is the IPv4 one"
        );
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(mapped.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn prefix_zero_holds_its_whole_family_and_host_bits_are_ignored() {
        let all_v4 = AdminAllow::parse("0.0.0.0/0").unwrap();
        assert!(all_v4.contains(ip("255.1.2.3")));
        assert!(!all_v4.contains(ip("2001:db8::1")));
        assert!(
            AdminAllow::parse("::/0")
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
        assert_eq!(
            AdminAllow::parse("10.1.2.3/8").unwrap(),
            AdminAllow::parse("10.0.0.0/8").unwrap()
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (raw, names) in [
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("::/129", "::/129"),
            ("127.0.0.1, localhost", "localhost"),
            ("10.0.0.0/x", "10.0.0.0/x"),
            ("10.0.0.0/-1", "10.0.0.0/-1"),
            ("10.0.0/8", "10.0.0/8"),
            ("/8", "/8"),
        ] {
            let error = AdminAllow::parse(raw).unwrap_err();
            assert!(error.contains(names), "{raw}: {error}");
        }
    }

    #[test]
    fn admin_paths_are_the_admin_routes_and_the_status_page() {
        for admin in ["/admin", "/admin/", "/admin/status", "/status", "/status/x"] {
            assert!(is_admin_path(admin), "{admin}");
        }
        for other in ["/administrator", "/statuses", "/health", "/v1/admin", "/"] {
            assert!(!is_admin_path(other), "{other}");
        }
    }

    #[test]
    fn command_line_requests_pass() {
        assert_eq!(local(Method::POST, &[]), Ok(()), "the lab's curl -X POST");
        assert_eq!(
            local(Method::POST, &[("content-type", "application/json")]),
            Ok(())
        );
        assert_eq!(local(Method::GET, &[("host", "127.0.0.1:8000")]), Ok(()));
    }

    #[test]
    fn sec_fetch_site_passes_only_same_origin_and_none() {
        for site in ["same-origin", "none", "Same-Origin"] {
            assert_eq!(local(Method::POST, &[("sec-fetch-site", site)]), Ok(()));
        }
        for site in ["cross-site", "same-site", "bogus", ""] {
            assert_eq!(
                local(Method::POST, &[("sec-fetch-site", site)]),
                Err(Refusal::CrossSite),
                "{site}"
            );
        }
    }

    #[test]
    fn only_the_requests_own_origin_passes() {
        let own = [
            ("http://127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://LocalHost:8000", "localhost:8000"),
            ("http://gw.example", "gw.example:80"),
            ("https://gw.example:443", "gw.example"),
            ("http://[::1]:8000", "[::1]:8000"),
        ];
        for (origin, host) in own {
            let pairs = [("origin", origin), ("host", host)];
            assert_eq!(local(Method::POST, &pairs), Ok(()), "{origin} on {host}");
        }
        let foreign = [
            ("https://evil.example", Some("127.0.0.1:8000")),
            ("http://127.0.0.1:3000", Some("127.0.0.1:8000")),
            ("http://gw.example:8080", Some("gw.example:80")),
            ("https://gw.example", Some("gw.example:80")),
            ("null", Some("127.0.0.1:8000")),
            ("127.0.0.1:8000", Some("127.0.0.1:8000")),
            ("http://127.0.0.1:8000/x", Some("127.0.0.1:8000")),
            ("http://127.0.0.1:8000", None),
        ];
        for (origin, host) in foreign {
            let mut pairs = vec![("origin", origin)];
            pairs.extend(host.map(|h| ("host", h)));
            assert_eq!(
                local(Method::POST, &pairs),
                Err(Refusal::ForeignOrigin),
                "{origin} on {host:?}"
            );
        }
    }

    #[test]
    fn form_content_types_are_refused_on_state_changing_methods() {
        for form in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain;charset=UTF-8",
            "Text/Plain",
        ] {
            let pairs = [("content-type", form)];
            assert_eq!(
                local(Method::POST, &pairs),
                Err(Refusal::FormContent),
                "{form}"
            );
            assert_eq!(local(Method::DELETE, &pairs), Err(Refusal::FormContent));
            assert_eq!(local(Method::GET, &pairs), Ok(()), "GET {form}");
            assert_eq!(local(Method::HEAD, &pairs), Ok(()), "HEAD {form}");
        }
    }

    #[test]
    fn the_address_is_checked_first() {
        let allow = AdminAllow::parse("10.0.0.0/8").unwrap();
        let evil = headers(&[("origin", "https://evil.example")]);
        assert_eq!(
            check(&allow, Some(ip("127.0.0.1")), &Method::POST, &evil),
            Err(Refusal::AddressNotAllowed)
        );
        assert_eq!(
            check(&allow, None, &Method::GET, &HeaderMap::new()),
            Err(Refusal::AddressNotAllowed)
        );
        assert_eq!(
            check(
                &allow,
                Some(ip("10.2.3.4")),
                &Method::POST,
                &HeaderMap::new()
            ),
            Ok(())
        );
    }

    fn app(allow: &str) -> Router {
        let allow = Arc::new(AdminAllow::parse(allow).unwrap());
        Router::new()
            .route("/admin/reset-circuit-breaker", post(|| async { "reset" }))
            .route("/admin/status", get(|| async { "status" }))
            .route("/generate", post(|| async { "generated" }))
            .layer(
                tower::ServiceBuilder::new()
                    .layer(from_fn(request_id))
                    .layer(from_fn_with_state(allow, guard_admin)),
            )
    }

    fn request(
        method: Method,
        path: &str,
        peer: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Request<Body> {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in pairs {
            req = req.header(*name, *value);
        }
        let mut req = req.body(Body::empty()).unwrap();
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        req
    }

    async fn send(app: Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app.oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, body)
    }

    #[tokio::test]
    async fn a_cross_site_form_post_gets_403_in_the_labs_envelope_with_the_request_id() {
        let req = request(
            Method::POST,
            "/admin/reset-circuit-breaker",
            Some("127.0.0.1:5555"),
            &[
                ("origin", "https://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", "127.0.0.1:8000"),
                ("x-request-id", "req-403"),
            ],
        );
        let (status, body) = send(app(""), req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"]["type"], "forbidden");
        assert_eq!(body["request_id"], "req-403");
        assert!(!body.to_string().contains("evil"), "{body}");
    }

    #[tokio::test]
    async fn the_labs_plain_post_passes() {
        let req = request(
            Method::POST,
            "/admin/reset-circuit-breaker",
            Some("127.0.0.1:5555"),
            &[],
        );
        assert_eq!(send(app(""), req).await, (StatusCode::OK, "reset".into()));
    }

    #[tokio::test]
    async fn other_routes_are_not_guarded() {
        let req = request(
            Method::POST,
            "/generate",
            None,
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(
            send(app("10.0.0.0/8"), req).await,
            (StatusCode::OK, "generated".into())
        );
    }

    #[tokio::test]
    async fn admin_allow_is_checked_on_the_connections_address() {
        let from = |peer: Option<&str>| request(Method::GET, "/admin/status", peer, &[]);
        let app = app("10.0.0.0/8, ::1");
        assert_eq!(
            send(app.clone(), from(Some("10.1.1.1:4000"))).await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(app.clone(), from(Some("[::1]:4000"))).await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(app.clone(), from(Some("[::ffff:10.0.0.7]:4000")))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            send(app.clone(), from(Some("127.0.0.1:4000"))).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(app, from(None)).await.0,
            StatusCode::FORBIDDEN,
            "no ConnectInfo"
        );
    }
}
