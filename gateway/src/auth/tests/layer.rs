//! The layer on a small router: the matrix of credentials × route groups, asserting the
//! status, `WWW-Authenticate` and the error shape (the lab's envelope, OpenAI's object);
//! API keys through it; the anonymous caller when authentication is off.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::auth::layer::{AuthState, authenticate};
use crate::auth::{Identity, RouteGroup, Scope};
use crate::layers::X_REQUEST_ID;
use crate::layers::request_id::request_id;
use crate::metrics::Metrics;

/// Answers who the layer said the caller is (`none`: no identity).
async fn who(identity: Option<Extension<Identity>>) -> String {
    identity.map_or_else(
        || "none".to_owned(),
        |Extension(id)| format!("{} {} {:?}", id.subject, id.tier, id.client),
    )
}

fn app(auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/generate", post(who))
        .route("/v1/chat/completions", post(who))
        .route("/admin/status", get(who))
        .route("/health", get(who))
        .layer(
            tower::ServiceBuilder::new()
                .layer(from_fn(request_id))
                .layer(from_fn_with_state(
                    AuthState {
                        auth,
                        metrics: Arc::new(Metrics::new().unwrap()),
                    },
                    authenticate,
                )),
        )
}

/// The routes of the matrix: one per group, and the model group in both APIs.
const ROUTES: [(&str, &str, RouteGroup); 4] = [
    ("POST", "/generate", RouteGroup::Model),
    ("POST", "/v1/chat/completions", RouteGroup::Model),
    ("GET", "/admin/status", RouteGroup::Admin),
    ("GET", "/health", RouteGroup::Public),
];

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 200, the handler saw this subject (`none` on public routes).
    Pass,
    /// 401; `true`: a credential was presented (`error="invalid_token"`).
    Unauthorized(bool),
    /// 403 for lack of the group's scope.
    Forbidden,
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    request_id: Option<String>,
    body: String,
}

async fn send(app: &Router, method: &str, path: &str, headers: &HeaderMap) -> Answer {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    req.headers_mut().extend(headers.clone());
    let response = app.clone().oneshot(req).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    let challenge = header(&header::WWW_AUTHENTICATE);
    let request_id = header(&X_REQUEST_ID);
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        challenge,
        request_id,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// Asserts `answer` is what `expect` says for `path` in `group`.
fn assert_answer(case: &str, path: &str, group: RouteGroup, expect: Expect, answer: &Answer) {
    let at = format!("{case} on {path}");
    let openai = path.starts_with("/v1/");
    let (status, challenge, kind, code, message) = match expect {
        Expect::Pass => {
            assert_eq!(answer.status, StatusCode::OK, "{at}: {}", answer.body);
            let subject = if group == RouteGroup::Public {
                "none"
            } else {
                "alice"
            };
            assert!(answer.body.starts_with(subject), "{at}: {}", answer.body);
            assert_eq!(answer.challenge, None, "{at}");
            return;
        }
        Expect::Unauthorized(presented) => (
            StatusCode::UNAUTHORIZED,
            if presented {
                r#"Bearer realm="gateway", error="invalid_token""#.to_owned()
            } else {
                r#"Bearer realm="gateway""#.to_owned()
            },
            "unauthorized",
            "invalid_api_key",
            if presented {
                "invalid credentials".to_owned()
            } else {
                "missing credentials".to_owned()
            },
        ),
        Expect::Forbidden => {
            let scope = group.required_scope().unwrap();
            (
                StatusCode::FORBIDDEN,
                format!(r#"Bearer realm="gateway", error="insufficient_scope", scope="{scope}""#),
                "forbidden",
                "insufficient_permissions",
                format!("insufficient scope: needs {scope}"),
            )
        }
    };
    assert_eq!(answer.status, status, "{at}: {}", answer.body);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(challenge.as_str()),
        "{at}"
    );
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    if openai {
        assert_eq!(
            body,
            json!({"error": {
                "message": message,
                "type": "invalid_request_error",
                "param": null,
                "code": code,
            }}),
            "{at}"
        );
    } else {
        assert_eq!(
            body,
            json!({
                "status": "error",
                "error": {"type": kind, "message": message, "field": null},
                "request_id": answer.request_id.as_deref().unwrap(),
            }),
            "{at}"
        );
    }
}

#[tokio::test]
async fn the_jwt_matrix_over_every_route_group() {
    // Only the RSA key: the HS/RS confusion token finds no key.
    let settings = AuthSettings {
        mode: AuthMode {
            api_key: false,
            jwt: true,
        },
        keys: KeyStore::default(),
        jwt: Some(jwt_settings(vec![rsa_key()])),
    };
    let auth = Arc::new(Authenticator::with_clock(&settings, ManualClock::new()));
    let now = auth.now_unix_s();
    let c = claims(now);
    let scoped = |scope: &str| rs256(None, &with(c.clone(), "scope", json!(scope)));
    let bad = Expect::Unauthorized(true);
    let everywhere = |e: Expect| move |_: RouteGroup| e;
    type Case = (&'static str, HeaderMap, Box<dyn Fn(RouteGroup) -> Expect>);
    let cases: Vec<Case> = vec![
        (
            "no credentials",
            HeaderMap::new(),
            Box::new(everywhere(Expect::Unauthorized(false))),
        ),
        (
            "malformed",
            bearer("not-a-token"),
            Box::new(everywhere(bad)),
        ),
        (
            "not bearer",
            {
                let mut h = HeaderMap::new();
                h.insert(
                    header::AUTHORIZATION,
                    HeaderValue::from_static("Basic YTpi"),
                );
                h
            },
            Box::new(everywhere(bad)),
        ),
        (
            "bad signature",
            bearer(&swapped_payload(
                &rs256(None, &c),
                &rs256(None, &with(c.clone(), "scope", json!("llm:generate admin"))),
            )),
            Box::new(everywhere(bad)),
        ),
        (
            "expired",
            bearer(&rs256(None, &with(c.clone(), "exp", json!(now - 3600)))),
            Box::new(everywhere(bad)),
        ),
        (
            "not yet valid",
            bearer(&rs256(None, &with(c.clone(), "nbf", json!(now + 3600)))),
            Box::new(everywhere(bad)),
        ),
        (
            "wrong audience",
            bearer(&rs256(None, &with(c.clone(), "aud", json!("other")))),
            Box::new(everywhere(bad)),
        ),
        (
            "wrong issuer",
            bearer(&rs256(
                None,
                &with(c.clone(), "iss", json!("https://evil.test")),
            )),
            Box::new(everywhere(bad)),
        ),
        ("alg none", bearer(&alg_none(&c)), Box::new(everywhere(bad))),
        (
            "HS/RS confusion",
            bearer(&hs256_with_rsa_public_key(&with(
                c.clone(),
                "scope",
                json!("llm:generate admin"),
            ))),
            Box::new(everywhere(bad)),
        ),
        (
            "missing scope",
            bearer(&scoped("openid profile")),
            Box::new(|g| match g {
                RouteGroup::Public => Expect::Pass,
                _ => Expect::Forbidden,
            }),
        ),
        (
            "generate scope only",
            bearer(&scoped("llm:generate")),
            Box::new(|g| match g {
                RouteGroup::Admin => Expect::Forbidden,
                _ => Expect::Pass,
            }),
        ),
        (
            "admin scope only",
            bearer(&scoped("admin")),
            Box::new(|g| match g {
                RouteGroup::Model => Expect::Forbidden,
                _ => Expect::Pass,
            }),
        ),
        (
            "right scope",
            bearer(&scoped("llm:generate admin")),
            Box::new(everywhere(Expect::Pass)),
        ),
    ];
    let app = app(Arc::clone(&auth));
    for (case, headers, expect) in &cases {
        for (method, path, group) in ROUTES {
            let expect = if group == RouteGroup::Public {
                Expect::Pass
            } else {
                expect(group)
            };
            let answer = send(&app, method, path, headers).await;
            assert_answer(case, path, group, expect, &answer);
            if let Some(token) = headers.get(header::AUTHORIZATION) {
                let token = token.to_str().unwrap().trim_start_matches("Bearer ");
                assert!(!answer.body.contains(token), "{case}: the token is echoed");
            }
        }
    }
}

#[tokio::test]
async fn api_keys_through_the_layer() {
    let auth = full_auth(AuthMode {
        api_key: true,
        jwt: true,
    });
    let app = app(auth);
    let cases = [
        (
            "right, bearer",
            bearer("gk_right"),
            Expect::Pass,
            Expect::Forbidden,
        ),
        (
            "right, x-api-key",
            x_api_key("gk_right"),
            Expect::Pass,
            Expect::Forbidden,
        ),
        (
            "unknown",
            bearer("gk_unknown"),
            Expect::Unauthorized(true),
            Expect::Unauthorized(true),
        ),
        (
            "unknown, x-api-key",
            x_api_key("gk_unknown"),
            Expect::Unauthorized(true),
            Expect::Unauthorized(true),
        ),
        (
            "revoked",
            x_api_key("gk_revoked"),
            Expect::Unauthorized(true),
            Expect::Unauthorized(true),
        ),
    ];
    for (case, headers, model, admin) in cases {
        for (method, path, group) in ROUTES {
            let expect = match group {
                RouteGroup::Public => Expect::Pass,
                RouteGroup::Model => model,
                RouteGroup::Admin => admin,
            };
            let answer = send(&app, method, path, &headers).await;
            assert_answer(case, path, group, expect, &answer);
        }
    }
    let admin = send(&app, "GET", "/admin/status", &x_api_key("gk_admin")).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(admin.body.starts_with("ops default"), "{}", admin.body);
    let premium = send(&app, "POST", "/generate", &bearer("gk_right")).await;
    assert!(
        premium.body.starts_with("alice premium"),
        "{}",
        premium.body
    );
}

#[tokio::test]
async fn with_auth_off_every_caller_is_the_anonymous_one_with_its_address() {
    let auth = Arc::new(Authenticator::new(&AuthSettings::default()));
    assert!(!auth.enabled());
    let app = app(auth);
    let addr: SocketAddr = "192.0.2.7:4321".parse().unwrap();
    for (method, path, group) in ROUTES {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, "Bearer garbage")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let expected = if group == RouteGroup::Public {
            "none".to_owned()
        } else {
            format!("anonymous default {:?}", Some(addr.ip()))
        };
        assert_eq!(String::from_utf8_lossy(&bytes), expected, "{path}");
    }
}

#[test]
fn route_groups() {
    for (path, group) in [
        ("/generate", RouteGroup::Model),
        ("/v1/chat/completions", RouteGroup::Model),
        ("/v1/models", RouteGroup::Model),
        ("/admin/status", RouteGroup::Admin),
        ("/admin/reset-circuit-breaker", RouteGroup::Admin),
        ("/admin", RouteGroup::Admin),
        ("/status", RouteGroup::Admin),
        ("/status/pools", RouteGroup::Admin),
        ("/live", RouteGroup::Public),
        ("/ready", RouteGroup::Public),
        ("/health", RouteGroup::Public),
        ("/metrics", RouteGroup::Public),
        ("/openapi.json", RouteGroup::Public),
        ("/", RouteGroup::Public),
        ("/statusx", RouteGroup::Public),
        ("/administrator", RouteGroup::Public),
        ("/generated", RouteGroup::Public),
        ("/v1", RouteGroup::Public),
    ] {
        assert_eq!(RouteGroup::of(path), group, "{path}");
    }
    assert_eq!(RouteGroup::Model.required_scope(), Some(Scope::Generate));
    assert_eq!(RouteGroup::Admin.required_scope(), Some(Scope::Admin));
    assert_eq!(RouteGroup::Public.required_scope(), None);
}

#[test]
fn every_reason_is_listed_and_the_challenges_are_rfc_6750() {
    use crate::auth::AuthError;
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::Invalid,
        AuthError::Revoked,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::Forbidden(Scope::Generate),
    ];
    let reasons: Vec<&str> = all.iter().map(|e| e.reason()).collect();
    assert_eq!(reasons, AuthError::REASONS);
    assert_eq!(
        AuthError::Forbidden(Scope::Admin).challenge(),
        r#"Bearer realm="gateway", error="insufficient_scope", scope="admin""#
    );
}
