//! Authentication through the real binary (issue 18): every route group of the real
//! gateway × every kind of credential (none, malformed, badly signed, expired, not yet
//! valid, wrong audience or issuer, `alg: none`, HS/RS confusion, missing scope, right
//! scope; API keys unknown, revoked, right), asserting the status, `WWW-Authenticate`, the
//! API's error shape and that no answer nor log line echoes the credential; that a refusal
//! reaches no upstream, moves no breaker and is counted by reason; the `gateway keys` and
//! `gateway token` subcommands as processes; `AUTH_MODE=none` (the lab's default); and the
//! settings that stop the binary at start.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use test_support::jwt::alg_none;
use tokio::process::Command;

use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, prometheus_sum};

/// The HS256 secret of the authenticated gateways (36 bytes).
const SECRET: &str = "e2e-identity-hs256-secret-0123456789";
/// `JWT_AUDIENCE` of the authenticated gateways.
const AUDIENCE: &str = "gateway-e2e";
/// `JWT_ISSUER` of the authenticated gateways.
const ISSUER: &str = "https://issuer.e2e.test";
/// The `sub` of the test's tokens.
const SUBJECT: &str = "e2e-user";
/// A caller's API key: `llm:generate`, tier `premium`.
const KEY: &str = "gk_identity_e2e_caller_0123456789abcdef";
/// An admin's API key: `llm:generate` and `admin`.
const ADMIN_KEY: &str = "gk_identity_e2e_admin_0123456789abcdef";
/// A revoked key that had every scope.
const REVOKED_KEY: &str = "gk_identity_e2e_revoked_0123456789abcdef";
/// A key no file holds.
const UNKNOWN_KEY: &str = "gk_identity_e2e_nobody_0123456789abcdef";

// ---------------------------------------------------------------------------------------
// Routes and credentials
// ---------------------------------------------------------------------------------------

/// Which credentials a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `llm:generate`.
    Model,
    /// `admin`.
    Admin,
    /// Nothing.
    Public,
}

/// The error shape of the route's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"status":"error","error":{"type","message",…},"request_id"}`.
    Lab,
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
}

/// One real route of the gateway.
struct Route {
    method: &'static str,
    path: &'static str,
    group: Group,
    shape: Shape,
}

/// Every route group, each with real requests: the model routes of both APIs, the admin
/// routes, the public ones.
const ROUTES: [Route; 12] = [
    route("POST", "/generate", Group::Model, Shape::Lab),
    route("POST", "/v1/chat/completions", Group::Model, Shape::OpenAi),
    route("GET", "/v1/models", Group::Model, Shape::OpenAi),
    route("GET", "/admin/status", Group::Admin, Shape::Lab),
    route("GET", "/admin/signals", Group::Admin, Shape::Lab),
    route("GET", "/status", Group::Admin, Shape::Lab),
    route(
        "POST",
        "/admin/reset-circuit-breaker",
        Group::Admin,
        Shape::Lab,
    ),
    route("GET", "/health", Group::Public, Shape::Lab),
    route("GET", "/live", Group::Public, Shape::Lab),
    route("GET", "/ready", Group::Public, Shape::Lab),
    route("GET", "/metrics", Group::Public, Shape::Lab),
    route("GET", "/openapi.json", Group::Public, Shape::Lab),
];

const fn route(method: &'static str, path: &'static str, group: Group, shape: Shape) -> Route {
    Route {
        method,
        path,
        group,
        shape,
    }
}

/// The route called `path`.
fn at(path: &str) -> &'static Route {
    ROUTES.iter().find(|r| r.path == path).unwrap()
}

/// What the gateway must make of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not a valid credential: 401 on every protected route, counted under this reason
    /// of `gateway_auth_refused_total`.
    Refused(&'static str),
    /// A valid credential with these scopes: 2xx where they suffice, 403 elsewhere.
    Grants { generate: bool, admin: bool },
    /// A header the mode does not read (`x-api-key` when only JWTs are accepted): 401 as
    /// if nothing had been presented.
    Unread,
}

/// `llm:generate` only.
const GENERATE: Verdict = Verdict::Grants {
    generate: true,
    admin: false,
};
/// `admin` only.
const ADMIN: Verdict = Verdict::Grants {
    generate: false,
    admin: true,
};
/// Both scopes.
const BOTH: Verdict = Verdict::Grants {
    generate: true,
    admin: true,
};

/// A credential as a request presents it.
struct Credential {
    /// For failure messages.
    name: &'static str,
    /// The header that carries it; `None`: nothing presented.
    header: Option<(&'static str, String)>,
    verdict: Verdict,
}

impl Credential {
    fn none() -> Self {
        Self {
            name: "no credentials",
            header: None,
            verdict: Verdict::Refused("missing"),
        }
    }

    fn authorization(name: &'static str, value: String, verdict: Verdict) -> Self {
        Self {
            name,
            header: Some(("authorization", value)),
            verdict,
        }
    }

    fn bearer(name: &'static str, token: &str, verdict: Verdict) -> Self {
        Self::authorization(name, format!("Bearer {token}"), verdict)
    }

    fn api_key(name: &'static str, key: &str, verdict: Verdict) -> Self {
        Self {
            name,
            header: Some(("x-api-key", key.to_owned())),
            verdict,
        }
    }

    /// The secret parts no answer or log line may show: the credential without its
    /// scheme, and a JWT's signature on its own.
    fn secrets(&self) -> Vec<String> {
        let Some((name, value)) = &self.header else {
            return Vec::new();
        };
        let bare = match value.split_once(' ') {
            Some((_, bare)) => bare,
            None if *name == "authorization" => return Vec::new(),
            None => value.as_str(),
        };
        let mut secrets = vec![bare.to_owned()];
        if let Some(signature) = bare.rsplit('.').next().filter(|s| s.len() >= 16) {
            secrets.push(signature.to_owned());
        }
        secrets
    }

    /// What a request with it must get on a route of `group`.
    fn expect(&self, group: Group) -> Expect {
        match (group, self.verdict) {
            (Group::Public, _) => Expect::Ok,
            (_, Verdict::Refused(_) | Verdict::Unread) => Expect::Unauthorized,
            (Group::Model, Verdict::Grants { generate: true, .. })
            | (Group::Admin, Verdict::Grants { admin: true, .. }) => Expect::Ok,
            (Group::Model, _) => Expect::Forbidden("llm:generate"),
            (Group::Admin, _) => Expect::Forbidden("admin"),
        }
    }

    /// The reason `gateway_auth_refused_total` counts its refusal on a route of `group`
    /// under; `None` when it is served.
    fn reason(&self, group: Group) -> Option<&'static str> {
        match (self.expect(group), self.verdict) {
            (Expect::Ok, _) => None,
            (Expect::Forbidden(_), _) => Some("forbidden"),
            (Expect::Unauthorized, Verdict::Refused(reason)) => Some(reason),
            (Expect::Unauthorized, _) => Some("missing"),
        }
    }
}

/// The outcome a request must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 2xx (200 on the public routes).
    Ok,
    /// 401.
    Unauthorized,
    /// 403 for lack of this scope.
    Forbidden(&'static str),
}

/// The whole matrix's credentials on the gateway of [`authenticated`].
fn matrix_credentials() -> Vec<Credential> {
    use Verdict::Refused;
    let now = now();
    let good = || claims("llm:generate admin", "premium");
    let other_secret = EncodingKey::from_secret(b"another-e2e-secret-another-e2e-secret");
    let rsa_public_as_secret = EncodingKey::from_secret(&fixture_bytes("rsa_public.pem"));
    let token = |name, claims: Value, verdict| Credential::bearer(name, &hs256(&claims), verdict);
    let basic = "Basic ZTJlLXVzZXI6cGFzc3dvcmQtZTJlLTEyMw==".to_owned();
    vec![
        Credential::none(),
        Credential::authorization("Authorization: Basic", basic, Refused("malformed")),
        Credential::authorization("a scheme alone", "Bearer".into(), Refused("malformed")),
        Credential::bearer(
            "Bearer junk",
            "not-a-credential-e2e-zz9",
            Refused("invalid"),
        ),
        Credential::bearer(
            "Bearer junk in three parts",
            "junk-e2e-part.junk-e2e-part.junk-e2e-signature",
            Refused("malformed"),
        ),
        Credential::bearer(
            "bad signature (another secret)",
            &sign(Algorithm::HS256, &other_secret, None, &good()),
            Refused("invalid"),
        ),
        token(
            "expired",
            with(good(), "exp", json!(now - 3600)),
            Refused("expired"),
        ),
        token(
            "not yet valid",
            with(good(), "nbf", json!(now + 3600)),
            Refused("not_yet_valid"),
        ),
        token(
            "wrong audience",
            with(good(), "aud", json!("someone-else")),
            Refused("wrong_audience"),
        ),
        token(
            "wrong issuer",
            with(good(), "iss", json!("https://evil.example")),
            Refused("wrong_issuer"),
        ),
        token(
            "no scope claim",
            with(good(), "scope", Value::Null),
            Refused("malformed"),
        ),
        Credential::bearer("alg: none", &alg_none(&good()), Refused("malformed")),
        Credential::bearer(
            "HS/RS confusion",
            &sign(Algorithm::HS256, &rsa_public_as_secret, None, &good()),
            Refused("invalid"),
        ),
        token("token with admin only", claims("admin", "premium"), ADMIN),
        token(
            "token with llm:generate only",
            claims("llm:generate", "premium"),
            GENERATE,
        ),
        token("HS256 token with both scopes", good(), BOTH),
        Credential::bearer("RS256 token with both scopes", &rs256(None, &good()), BOTH),
        Credential::bearer("unknown key (Bearer)", UNKNOWN_KEY, Refused("invalid")),
        Credential::api_key("unknown key (x-api-key)", UNKNOWN_KEY, Refused("invalid")),
        Credential::bearer("revoked key (Bearer)", REVOKED_KEY, Refused("revoked")),
        Credential::api_key("revoked key (x-api-key)", REVOKED_KEY, Refused("revoked")),
        Credential::bearer("caller key (Bearer)", KEY, GENERATE),
        Credential::api_key("caller key (x-api-key)", KEY, GENERATE),
        Credential::bearer("admin key (Bearer)", ADMIN_KEY, BOTH),
        Credential::api_key("admin key (x-api-key)", ADMIN_KEY, BOTH),
    ]
}

// ---------------------------------------------------------------------------------------
// Tokens, keys, files
// ---------------------------------------------------------------------------------------

/// Unix seconds now (the gateway checks tokens against the system clock).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fixture of `tests/fixtures/auth`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Valid claims for now: [`SUBJECT`], an hour to live, `scope`, `tier`, the configured
/// audience and issuer.
fn claims(scope: &str, tier: &str) -> Value {
    let now = now();
    json!({
        "sub": SUBJECT,
        "iat": now,
        "exp": now + 3600,
        "scope": scope,
        "tier": tier,
        "aud": AUDIENCE,
        "iss": ISSUER,
    })
}

/// `claims` with `key` set to `value` (`Value::Null` removes it).
fn with(mut claims: Value, key: &str, value: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value);
    }
    claims
}

/// `claims` signed with `alg` and `key`, the header naming `kid`.
fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// HS256 with [`SECRET`].
fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

/// RS256 with the fixture RSA private key.
fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture_bytes("rsa_private.pem")).unwrap();
    sign(Algorithm::RS256, &key, kid, claims)
}

/// ES256 with the fixture P-256 private key.
fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&fixture_bytes("ec_private.pem")).unwrap();
    sign(Algorithm::ES256, &key, kid, claims)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temporary file holding `text`; its path.
fn temp_file(prefix: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", test_support::unique_id(prefix)));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `API_KEYS_FILE` with the caller, the admin and the revoked key.
fn keys_file() -> String {
    let text = format!(
        "[[keys]]\nowner = \"e2e-caller\"\ntier = \"premium\"\nscopes = [\"llm:generate\"]\nsha256 = \"{}\"\n\n\
         [[keys]]\nowner = \"e2e-ops\"\ntier = \"premium\"\nscopes = [\"llm:generate\", \"admin\"]\nsha256 = \"{}\"\n\n\
         [[keys]]\nowner = \"e2e-gone\"\ntier = \"premium\"\nscopes = [\"llm:generate\", \"admin\"]\nsha256 = \"{}\"\nrevoked = true\n",
        sha256_hex(KEY),
        sha256_hex(ADMIN_KEY),
        sha256_hex(REVOKED_KEY),
    );
    temp_file("e2e-identity-keys", &text)
}

/// A gateway in front of `upstream` accepting API keys and JWTs (HS256 with [`SECRET`],
/// RS256 with the fixture public key), with an audience and an issuer, logging at DEBUG
/// (where refusals are logged).
async fn authenticated(upstream: &LlmService) -> Gateway {
    Gateway::builder()
        .upstreams(&[upstream])
        .env("AUTH_MODE", "api_key,jwt")
        .env("JWT_SECRET_KEY", SECRET)
        .env("JWT_PUBLIC_KEY_FILE", fixture("rsa_public.pem").display())
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_ISSUER", ISSUER)
        .env("API_KEYS_FILE", keys_file())
        .env("RUST_LOG", "info,gateway=debug")
        .start()
        .await
}

// ---------------------------------------------------------------------------------------
// Requests and checks
// ---------------------------------------------------------------------------------------

/// One answer, with its raw text.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `route` called with `credential`, with a valid body where it takes one.
async fn send(gw: &Gateway, route: &Route, credential: &Credential) -> Reply {
    let url = format!("{}{}", gw.url, route.path);
    let client = gw.client();
    let mut request = if route.method == "POST" {
        client.post(url)
    } else {
        client.get(url)
    };
    match route.path {
        "/generate" => {
            request = request.json(&json!({"prompt": "identity e2e", "max_tokens": 4}));
        }
        "/v1/chat/completions" => {
            request = request.json(&json!({
                "model": "m",
                "messages": [{"role": "user", "content": "identity e2e"}],
                "max_tokens": 4,
            }));
        }
        _ => {}
    }
    if let Some((name, value)) = &credential.header {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap_or_else(|e| {
        panic!(
            "{} {} with {} was not answered: {e}",
            route.method, route.path, credential.name
        )
    });
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Everything wrong with `reply` to `route` called with `credential`.
fn check(route: &Route, credential: &Credential, reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    let expect = credential.expect(route.group);
    match expect {
        Expect::Ok => check_ok(route, reply, &mut problems),
        Expect::Unauthorized => check_refused(route, credential, reply, 401, &mut problems),
        Expect::Forbidden(_) => check_refused(route, credential, reply, 403, &mut problems),
    }
    if let Expect::Forbidden(scope) = expect {
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        if !challenge.contains(r#"error="insufficient_scope""#)
            || !challenge.contains(&format!(r#"scope="{scope}""#))
        {
            problems.push(format!("403 challenge `{challenge}` names not {scope}"));
        }
    }
    for secret in credential.secrets() {
        if reply.text.contains(&secret) {
            problems.push("the body echoes the credential".to_owned());
        }
        for (name, value) in &reply.headers {
            if String::from_utf8_lossy(value.as_bytes()).contains(&secret) {
                problems.push(format!("header {name} echoes the credential"));
            }
        }
    }
    if reply.header("x-request-id").is_none_or(str::is_empty) {
        problems.push("no x-request-id".to_owned());
    }
    problems
        .into_iter()
        .map(|p| {
            format!(
                "{} {} with {}: {p} (expected {expect:?}; got {} {})",
                route.method,
                route.path,
                credential.name,
                reply.status,
                reply.text.chars().take(400).collect::<String>()
            )
        })
        .collect()
}

/// A served request: 2xx (exactly 200 on public routes) with the route's own answer.
fn check_ok(route: &Route, reply: &Reply, problems: &mut Vec<String>) {
    let served = match route.group {
        Group::Public => reply.status == 200,
        _ => (200..300).contains(&reply.status),
    };
    if !served {
        problems.push("not served".to_owned());
        return;
    }
    let body = &reply.body;
    let right = match route.path {
        "/generate" => body["status"] == "success" && body["data"]["response"].is_string(),
        "/v1/chat/completions" => body["choices"][0]["message"]["content"].is_string(),
        "/v1/models" => body["data"].is_array(),
        "/admin/status" => body["circuit_breaker"].is_object(),
        "/admin/signals" => body["requests"].is_u64(),
        "/status" => reply.text.contains("<title>Gateway status</title>"),
        "/admin/reset-circuit-breaker" => body["state"].is_string(),
        _ => true,
    };
    if !right {
        problems.push("not the route's answer".to_owned());
    }
    if reply.header("www-authenticate").is_some() {
        problems.push("a served answer carries WWW-Authenticate".to_owned());
    }
}

/// A refusal with `status`: the challenge and the API's error shape, nothing more.
fn check_refused(
    route: &Route,
    credential: &Credential,
    reply: &Reply,
    status: u16,
    problems: &mut Vec<String>,
) {
    if reply.status != status {
        problems.push(format!("status is not {status}"));
    }
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    if !challenge.starts_with(r#"Bearer realm="gateway""#) {
        problems.push(format!("challenge `{challenge}`"));
    }
    let presented = credential.header.is_some() && credential.verdict != Verdict::Unread;
    if status == 401 && presented != challenge.contains(r#"error="invalid_token""#) {
        problems.push(format!(
            "challenge `{challenge}`: error=\"invalid_token\" exactly when a credential was presented"
        ));
    }
    let message = match (status, presented) {
        (403, _) => None,
        (_, true) => Some("invalid credentials"),
        (_, false) => Some("missing credentials"),
    };
    let body = &reply.body;
    let detail = &body["error"];
    if message.is_some_and(|m| detail["message"] != m) || !detail["message"].is_string() {
        problems.push(format!(
            "the message says more than {message:?}: {}",
            detail["message"]
        ));
    }
    match route.shape {
        Shape::Lab => {
            let kind = if status == 403 {
                "forbidden"
            } else {
                "unauthorized"
            };
            if body["status"] != "error" || detail["type"] != kind {
                problems.push(format!("not the lab envelope with type {kind}"));
            }
            let id = reply.header("x-request-id").unwrap_or_default();
            if body["request_id"] != id || id.is_empty() {
                problems.push(format!(
                    "request_id {} is not the x-request-id header {id}",
                    body["request_id"]
                ));
            }
        }
        Shape::OpenAi => {
            let code = if status == 403 {
                "insufficient_permissions"
            } else {
                "invalid_api_key"
            };
            let keys: Vec<&String> = body
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            if keys != ["error"]
                || detail["type"] != "invalid_request_error"
                || detail["code"] != code
                || !detail["param"].is_null()
            {
                problems.push(format!("not OpenAI's error object with code {code}"));
            }
        }
    }
}

/// Sends every credential to every route; every problem found.
async fn run_matrix(gw: &Gateway, credentials: &[Credential]) -> Vec<String> {
    let mut problems = Vec::new();
    for credential in credentials {
        for route in &ROUTES {
            let reply = send(gw, route, credential).await;
            problems.extend(check(route, credential, &reply));
        }
    }
    problems
}

/// Every reason of `gateway_auth_refused_total`.
const REASONS: [&str; 9] = gateway::auth::AuthError::REASONS;

/// `gateway_auth_refused_total` by reason, in [`REASONS`]' order.
async fn refusals_counted(gw: &Gateway) -> Vec<f64> {
    let (_, text) = gw.metrics_text().await;
    REASONS
        .iter()
        .map(|reason| {
            prometheus_sum(
                &text,
                "gateway_auth_refused_total",
                &[&format!("reason=\"{reason}\"")],
            )
        })
        .collect()
}

/// How many refusals of each reason (in [`REASONS`]' order) sending every credential to
/// every route makes.
fn refusals_made<'a>(
    credentials: &[Credential],
    routes: impl IntoIterator<Item = &'a Route> + Clone,
) -> Vec<f64> {
    REASONS
        .iter()
        .map(|reason| {
            let made = credentials
                .iter()
                .flat_map(|c| routes.clone().into_iter().map(|r| c.reason(r.group)))
                .filter(|r| r == &Some(*reason))
                .count();
            f64::from(u32::try_from(made).unwrap())
        })
        .collect()
}

/// `after - before`, by reason.
fn delta(before: &[f64], after: &[f64]) -> Vec<f64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// The pool breaker as `/admin/status` shows it to an admin.
async fn admin_breaker(gw: &Gateway) -> Value {
    let reply = send(
        gw,
        at("/admin/status"),
        &Credential::api_key("admin key", ADMIN_KEY, BOTH),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["circuit_breaker"].clone()
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// The gateway binary, run from the workspace root, with none of the test's own
/// authentication settings inherited.
fn gateway_command() -> Command {
    let mut command = Command::new(test_support::binary("gateway"));
    command.current_dir(test_support::workspace_root());
    for name in [
        "AUTH_MODE",
        "API_KEYS",
        "API_KEYS_FILE",
        "JWT_SECRET_KEY",
        "JWT_PUBLIC_KEY_FILE",
        "JWT_JWKS_FILE",
        "JWT_AUDIENCE",
        "JWT_ISSUER",
        "JWT_LEEWAY_S",
        "GATEWAY_CONFIG",
        "REDIS_URL",
    ] {
        command.env_remove(name);
    }
    command.kill_on_drop(true);
    command
}

/// Runs `command` to its end (at most 20 s).
async fn output(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("the command ends within 20 s")
        .unwrap()
}

/// `gateway keys …`: the key and its two entries (the `API_KEYS_FILE` text and the
/// `API_KEYS` line).
async fn minted_key(owner: &str, tier: &str, scopes: &str) -> (String, String, String) {
    let mut command = gateway_command();
    command.args(["keys", "--owner", owner, "--tier", tier, "--scopes", scopes]);
    let out = output(command).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let key = stdout
        .lines()
        .find(|l| l.starts_with("gk_"))
        .unwrap_or_else(|| panic!("a key in {stdout}"))
        .to_owned();
    let (_, after) = stdout
        .split_once("# For API_KEYS_FILE:\n")
        .unwrap_or_else(|| panic!("the file entry in {stdout}"));
    let (file, env) = after
        .split_once("# Or for API_KEYS")
        .unwrap_or_else(|| panic!("the API_KEYS entry in {stdout}"));
    let env = env.lines().nth(1).unwrap_or_default().trim().to_owned();
    assert_eq!(stdout.matches(&key).count(), 1, "the key is shown once");
    (key, file.to_owned(), env)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_group_answers_every_credential_as_the_matrix_says() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = authenticated(&upstream).await;
    let credentials = matrix_credentials();
    let counted = refusals_counted(&gw).await;

    let problems = run_matrix(&gw, &credentials).await;
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        delta(&counted, &refusals_counted(&gw).await),
        refusals_made(&credentials, &ROUTES),
        "gateway_auth_refused_total by reason ({REASONS:?})"
    );

    let logs = gw.logs().settled().await.join("\n");
    assert!(
        logs.contains("authentication refused"),
        "the refusals are logged at DEBUG (the log checked below is the verbose one)"
    );
    for credential in &credentials {
        for secret in credential.secrets() {
            assert!(
                !logs.contains(&secret),
                "the log shows the credential of `{}`",
                credential.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_no_upstream_move_no_breaker_and_are_counted_by_reason() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = authenticated(&upstream).await;
    // Every credential of the matrix the model routes refuse (401 or 403), on both APIs.
    let refused: Vec<Credential> = matrix_credentials()
        .into_iter()
        .filter(|c| c.expect(Group::Model) != Expect::Ok)
        .collect();
    let model_routes = [at("/generate"), at("/v1/chat/completions")];
    let counted = refusals_counted(&gw).await;
    let generated = upstream.generate_count().await;
    let chatted = upstream.chat_count().await;
    let breaker = admin_breaker(&gw).await;
    assert!(breaker["counters"].is_object(), "{breaker}");

    for credential in &refused {
        for route in model_routes {
            let reply = send(&gw, route, credential).await;
            let problems = check(route, credential, &reply);
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
    // A valid caller without the admin scope cannot reset the breakers.
    let caller = Credential::bearer("caller key", KEY, GENERATE);
    let reset = at("/admin/reset-circuit-breaker");
    let reply = send(&gw, reset, &caller).await;
    assert_eq!(reply.status, 403, "{}", reply.text);

    assert_eq!(
        upstream.generate_count().await,
        generated,
        "no refused /generate reached the upstream"
    );
    assert_eq!(
        upstream.chat_count().await,
        chatted,
        "no refused chat reached the upstream"
    );
    let after = admin_breaker(&gw).await;
    assert_eq!(
        after["counters"], breaker["counters"],
        "the pool breaker counted no refusal"
    );
    assert_eq!(after["state"], "CLOSED");
    let mut made = refusals_made(&refused, model_routes);
    made[REASONS.len() - 1] += 1.0;
    assert_eq!(
        delta(&counted, &refusals_counted(&gw).await),
        made,
        "gateway_auth_refused_total by reason ({REASONS:?})"
    );

    // Through authentication, a model call reaches the upstream.
    let reply = send(&gw, at("/generate"), &caller).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.generate_count().await, generated + 1.0);
    let claims = claims("llm:generate", "premium");
    let token = Credential::bearer("RS256 token", &rs256(None, &claims), GENERATE);
    let reply = send(&gw, at("/v1/chat/completions"), &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.chat_count().await, chatted + 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_keys_and_tokens_are_accepted_by_a_gateway_with_their_entries() {
    // Two keys: one for API_KEYS_FILE, one for API_KEYS.
    let (file_key, file_entry, _) = minted_key("e2e", "premium", "llm:generate").await;
    let (env_key, _, env_entry) = minted_key("e2e-env", "premium", "llm:generate").await;
    for (key, entry) in [(&file_key, &file_entry), (&env_key, &env_entry)] {
        assert_eq!(key.len(), 3 + 64, "gk_ and 256 bits in hex: {key}");
        assert!(entry.contains(&sha256_hex(key)), "{entry}");
        assert!(
            !entry.contains(key.as_str()),
            "an entry holds the hash only"
        );
    }
    assert!(file_entry.contains("owner = \"e2e\""), "{file_entry}");
    assert!(file_entry.contains("tier = \"premium\""), "{file_entry}");
    assert_eq!(
        env_entry,
        format!("e2e-env:premium:llm:generate:{}", sha256_hex(&env_key))
    );

    let mut command = gateway_command();
    command
        .args([
            "token",
            "--sub",
            "e2e",
            "--scope",
            "llm:generate",
            "--tier",
            "premium",
        ])
        .env("JWT_SECRET_KEY", SECRET)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_ISSUER", ISSUER);
    let out = output(command).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "e2e");
    assert_eq!(claims["scope"], "llm:generate");
    assert_eq!(claims["tier"], "premium");
    assert!(claims["iat"].as_u64().unwrap() <= now() + 1);

    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("AUTH_MODE", "api_key,jwt")
        .env("API_KEYS_FILE", temp_file("e2e-minted-keys", &file_entry))
        .env("API_KEYS", &env_entry)
        .env("JWT_SECRET_KEY", SECRET)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_ISSUER", ISSUER)
        .start()
        .await;
    let credentials = [
        Credential::bearer("the file's minted key", &file_key, GENERATE),
        Credential::api_key("the environment's minted key", &env_key, GENERATE),
        Credential::bearer("the minted token", &token, GENERATE),
    ];
    for credential in &credentials {
        for route in [
            at("/generate"),
            at("/v1/chat/completions"),
            at("/admin/status"),
        ] {
            let reply = send(&gw, route, credential).await;
            let problems = check(route, credential, &reply);
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
}

#[tokio::test]
async fn gateway_token_without_a_secret_exits_2_naming_it() {
    let mut command = gateway_command();
    command.args(["token", "--sub", "e2e"]);
    let out = output(command).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no token printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWT_SECRET_KEY"), "{stderr}");

    let mut command = gateway_command();
    command
        .args(["token", "--sub", "e2e"])
        .env("JWT_SECRET_KEY", "short-e2e-secret");
    let out = output(command).await;
    assert_eq!(out.status.code(), Some(2), "a secret under 32 bytes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWT_SECRET_KEY"), "{stderr}");
    assert!(
        !stderr.contains("short-e2e-secret"),
        "the secret is not echoed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_chosen_by_kid_and_algorithm() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("AUTH_MODE", "jwt")
        .env("JWT_JWKS_FILE", fixture("jwks.json").display())
        .start()
        .await;
    let good = || claims("llm:generate", "premium");
    let credentials = [
        Credential::bearer("ES256, kid ec-1", &es256(Some("ec-1"), &good()), GENERATE),
        Credential::bearer("RS256, kid rsa-1", &rs256(Some("rsa-1"), &good()), GENERATE),
        Credential::bearer(
            "RS256, kid of the EC key",
            &rs256(Some("ec-1"), &good()),
            Verdict::Refused("invalid"),
        ),
        Credential::bearer(
            "RS256, unknown kid",
            &rs256(Some("rsa-9"), &good()),
            Verdict::Refused("invalid"),
        ),
        Credential::bearer(
            "HS256 (no secret configured)",
            &hs256(&good()),
            Verdict::Refused("invalid"),
        ),
        Credential::api_key("x-api-key, not read", KEY, Verdict::Unread),
    ];
    let problems = run_matrix(&gw, &credentials).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mode_none_serves_every_route_and_ignores_credentials() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    // The lab's default: AUTH_MODE unset. A JWT_SECRET_KEY of a mode that is off is not
    // read (the lab's own, short, must not stop the gateway).
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("JWT_SECRET_KEY", "lab-secret")
        .start()
        .await;
    let anything = |name, header| Credential {
        name,
        header,
        verdict: BOTH,
    };
    let credentials = [
        anything("no credentials", None),
        anything(
            "garbage bearer",
            Some(("authorization", "Bearer garbage-e2e-none".to_owned())),
        ),
        anything(
            "Basic",
            Some(("authorization", "Basic ZTJlOnB3ZA==".to_owned())),
        ),
        anything(
            "garbage key",
            Some(("x-api-key", "garbage-e2e-key".to_owned())),
        ),
        anything(
            "expired token",
            Some((
                "authorization",
                format!(
                    "Bearer {}",
                    hs256(&with(
                        claims("llm:generate", "premium"),
                        "exp",
                        json!(now() - 3600)
                    ))
                ),
            )),
        ),
    ];
    let problems = run_matrix(&gw, &credentials).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let (_, text) = gw.metrics_text().await;
    assert_eq!(
        prometheus_sum(&text, "gateway_auth_refused_total", &[]),
        0.0,
        "nothing refused"
    );
}

/// A setting that must stop the gateway at start.
struct BadSetting<'a> {
    what: &'a str,
    env: Vec<(&'a str, &'a str)>,
    /// The variable stderr must name.
    names: &'a str,
}

#[tokio::test]
async fn bad_auth_settings_stop_the_gateway_at_start_naming_the_variable() {
    let private_key = fixture("rsa_private.pem").display().to_string();
    let bad = |what, env, names| BadSetting { what, env, names };
    let cases = [
        bad(
            "jwt without key material",
            vec![("AUTH_MODE", "jwt")],
            "JWT_SECRET_KEY",
        ),
        bad("an unknown mode", vec![("AUTH_MODE", "bogus")], "AUTH_MODE"),
        bad(
            "a secret under 32 bytes",
            vec![("AUTH_MODE", "jwt"), ("JWT_SECRET_KEY", "short-e2e-secret")],
            "JWT_SECRET_KEY",
        ),
        bad(
            "api_key without keys",
            vec![("AUTH_MODE", "api_key")],
            "API_KEYS_FILE",
        ),
        bad(
            "a private key as the public one",
            vec![("AUTH_MODE", "jwt"), ("JWT_PUBLIC_KEY_FILE", &private_key)],
            "JWT_PUBLIC_KEY_FILE",
        ),
        bad(
            "a key entry that is not one",
            vec![
                ("AUTH_MODE", "api_key"),
                ("API_KEYS", "ops:default:llm:generate:nothex"),
            ],
            "API_KEYS",
        ),
    ];
    for BadSetting { what, env, names } in cases {
        let mut command = gateway_command();
        command
            .env("LLM_SERVICE_URLS", "http://127.0.0.1:9")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .envs(env);
        let out = output(command).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains(names), "{what} names {names}: {stderr}");
        assert!(
            !stderr.contains("short-e2e-secret"),
            "{what}: the secret is not echoed"
        );
    }
}
