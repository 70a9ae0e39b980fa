//! The API over HTTP: JSON shapes and status codes as Toxiproxy 2.x answers them.

use std::sync::Arc;

use serde_json::{Value, json};

use super::app;
use crate::proxy::registry::Registry;

/// The API on a free port, with the registry behind it.
struct Api {
    base: String,
    client: reqwest::Client,
    registry: Arc<Registry>,
}

impl Api {
    async fn start() -> Self {
        let registry = Arc::new(Registry::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app(Arc::clone(&registry));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            registry,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }

    /// A proxy named `name` on a free port in front of a port nobody listens on.
    async fn proxy(&self, name: &str) -> Value {
        let (status, body) = self
            .post(
                "/proxies",
                json!({"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }
}

fn error(message: &str, status: u16) -> Value {
    json!({"error": message, "status": status})
}

#[tokio::test]
async fn version_is_text() {
    let api = Api::start().await;
    assert_eq!(
        api.get("/version").await,
        (200, Value::String(env!("CARGO_PKG_VERSION").into()))
    );
}

#[tokio::test]
async fn a_created_proxy_shows_its_real_port_and_listens() {
    let api = Api::start().await;
    let proxy = api.proxy("llm").await;
    let listen = proxy["listen"].as_str().unwrap().to_owned();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{listen}"
    );
    assert_eq!(
        proxy,
        json!({"name": "llm", "listen": listen, "upstream": "127.0.0.1:1",
               "enabled": true, "toxics": []})
    );
    tokio::net::TcpStream::connect(&listen).await.unwrap();
    assert_eq!(api.get("/proxies").await, (200, json!({"llm": proxy})));
    assert_eq!(api.get("/proxies/llm").await, (200, proxy));
}

#[tokio::test]
async fn proxy_errors_are_toxiproxy_errors() {
    let api = Api::start().await;
    api.proxy("llm").await;
    let again = json!({"name": "llm", "upstream": "127.0.0.1:1"});
    assert_eq!(
        api.post("/proxies", again).await,
        (409, error("proxy already exists", 409))
    );
    assert_eq!(
        api.get("/proxies/nope").await,
        (404, error("proxy not found", 404))
    );
    assert_eq!(
        api.delete("/proxies/nope").await,
        (404, error("proxy not found", 404))
    );
    assert_eq!(
        api.post("/proxies/nope", json!({"enabled": false})).await,
        (404, error("proxy not found", 404))
    );
    assert_eq!(
        api.post("/proxies", json!({"name": "x"})).await,
        (400, error("missing required field: upstream", 400))
    );
    assert_eq!(
        api.post("/proxies", json!({"upstream": "127.0.0.1:1"}))
            .await
            .0,
        400
    );
    for bad in [
        json!({"name": "x", "upstream": "no-port"}),
        json!({"name": "x", "upstream": "127.0.0.1:1", "listen": "anywhere"}),
        json!({"name": "x", "upstream": "127.0.0.1:1", "enabled": "yes"}),
    ] {
        let (status, body) = api.post("/proxies", bad).await;
        assert_eq!((status, &body["status"]), (400, &json!(400)), "{body}");
    }
    let garbled = api
        .client
        .post(format!("{}/proxies", api.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status().as_u16(), 400);
    assert_eq!(api.get("/nowhere").await, (404, error("not found", 404)));
    assert_eq!(api.delete("/version").await.0, 405);
}

#[tokio::test]
async fn a_port_in_use_is_an_error_and_creates_nothing() {
    let api = Api::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let (status, body) = api
        .post(
            "/proxies",
            json!({"name": "x", "listen": listen, "upstream": "127.0.0.1:1"}),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(api.get("/proxies").await, (200, json!({})));
}

#[tokio::test]
async fn toxics_are_added_read_updated_and_removed() {
    let api = Api::start().await;
    api.proxy("llm").await;
    let (status, toxic) = api
        .post(
            "/proxies/llm/toxics",
            json!({"type": "latency", "attributes": {"latency": 400}}),
        )
        .await;
    assert_eq!(status, 200, "{toxic}");
    assert_eq!(
        toxic,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
               "toxicity": 1.0, "attributes": {"latency": 400, "jitter": 0}})
    );
    assert_eq!(
        api.get("/proxies/llm/toxics").await,
        (200, json!([toxic.clone()]))
    );
    assert_eq!(
        api.get("/proxies/llm").await.1["toxics"],
        json!([toxic.clone()])
    );
    assert_eq!(
        api.get("/proxies/llm/toxics/latency_downstream").await,
        (200, toxic)
    );

    let (status, updated) = api
        .post(
            "/proxies/llm/toxics/latency_downstream",
            json!({"attributes": {"jitter": 5}, "toxicity": 0.5}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["attributes"], json!({"latency": 400, "jitter": 5}));
    assert_eq!(updated["toxicity"], json!(0.5));

    assert_eq!(
        api.delete("/proxies/llm/toxics/latency_downstream").await,
        (204, Value::String(String::new()))
    );
    assert_eq!(api.get("/proxies/llm/toxics").await, (200, json!([])));
}

#[tokio::test]
async fn toxic_errors_are_toxiproxy_errors() {
    let api = Api::start().await;
    api.proxy("llm").await;
    let slow = json!({"name": "slow", "type": "latency", "attributes": {"latency": 1}});
    assert_eq!(api.post("/proxies/llm/toxics", slow.clone()).await.0, 200);
    assert_eq!(
        api.post("/proxies/llm/toxics", slow.clone()).await,
        (409, error("toxic already exists", 409))
    );
    assert_eq!(
        api.post("/proxies/nope/toxics", slow).await,
        (404, error("proxy not found", 404))
    );
    assert_eq!(
        api.post("/proxies/llm/toxics", json!({"type": "earthquake"}))
            .await,
        (400, error("invalid toxic type", 400))
    );
    assert_eq!(
        api.post(
            "/proxies/llm/toxics",
            json!({"type": "latency", "stream": "sideways"})
        )
        .await,
        (
            400,
            error(
                "stream was invalid, can be either upstream or downstream",
                400
            )
        )
    );
    let (status, _) = api
        .post(
            "/proxies/llm/toxics",
            json!({"type": "bandwidth", "attributes": {"rate": "fast"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        api.get("/proxies/llm/toxics/nope").await,
        (404, error("toxic not found", 404))
    );
    assert_eq!(
        api.delete("/proxies/llm/toxics/nope").await,
        (404, error("toxic not found", 404))
    );
    assert_eq!(
        api.post("/proxies/llm/toxics/nope", json!({})).await,
        (404, error("toxic not found", 404))
    );
    assert_eq!(
        api.post(
            "/proxies/llm/toxics/slow",
            json!({"attributes": {"latency": -5}})
        )
        .await
        .0,
        400
    );
    assert_eq!(api.get("/proxies/nope/toxics").await.0, 404);
}

#[tokio::test]
async fn disabling_closes_the_port_and_enabling_reopens_the_same_one() {
    let api = Api::start().await;
    let listen = api.proxy("llm").await["listen"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = api.post("/proxies/llm", json!({"enabled": false})).await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)));
    assert!(tokio::net::TcpStream::connect(&listen).await.is_err());
    let (status, body) = api.post("/proxies/llm", json!({"enabled": true})).await;
    assert_eq!((status, &body["listen"]), (200, &json!(listen)));
    tokio::net::TcpStream::connect(&listen).await.unwrap();

    let (status, body) = api
        .post("/proxies/llm", json!({"upstream": "127.0.0.1:2"}))
        .await;
    assert_eq!((status, &body["upstream"]), (200, &json!("127.0.0.1:2")));
    assert_eq!(body["listen"], json!(listen));
}

#[tokio::test]
async fn reset_enables_every_proxy_and_removes_every_toxic() {
    let api = Api::start().await;
    api.proxy("a").await;
    api.proxy("b").await;
    api.post("/proxies/a", json!({"enabled": false})).await;
    api.post("/proxies/b/toxics", json!({"type": "timeout"}))
        .await;
    assert_eq!(
        api.call("POST", "/reset", None).await,
        (204, Value::String(String::new()))
    );
    let proxies = api.get("/proxies").await.1;
    for name in ["a", "b"] {
        assert_eq!(proxies[name]["enabled"], json!(true));
        assert_eq!(proxies[name]["toxics"], json!([]));
    }
}

#[tokio::test]
async fn delete_and_populate() {
    let api = Api::start().await;
    api.proxy("old").await;
    assert_eq!(
        api.delete("/proxies/old").await,
        (204, Value::String(String::new()))
    );
    assert_eq!(api.get("/proxies/old").await.0, 404);

    let (status, body) = api
        .post(
            "/populate",
            json!([
                {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                {"name": "b", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:2", "enabled": false},
            ]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let names: Vec<&str> = body["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(body["proxies"][1]["enabled"], json!(false));
    let (status, body) = api.post("/populate", json!([{"name": "c"}])).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "proxy 1: missing required field: upstream")
    );
    assert_eq!(api.registry.list().len(), 2);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let api = Api::start().await;
    let client = &api.client;
    for (method, path, status) in [
        (reqwest::Method::GET, "/version", 200),
        (reqwest::Method::GET, "/proxies", 200),
        (reqwest::Method::GET, "/proxies/missing", 404),
        (reqwest::Method::GET, "/no-such-route", 404),
        (reqwest::Method::PUT, "/proxies", 405),
        (reqwest::Method::POST, "/proxies", 400),
    ] {
        let response = client
            .request(method.clone(), format!("{}{path}", api.base))
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        for (name, value) in &http_edge::security::SECURITY_HEADERS {
            assert_eq!(response.headers()[name], *value, "{method} {path}: {name}");
        }
    }
}
