//! Model routes: targets, API keys, and every mistake named by its place.

use super::{URLS, fields, from_env, with_file};
use crate::config::{DEFAULT_ROUTE, Target};
use crate::upstream::{ApiKey, Protocol};

#[test]
fn without_routes_default_is_the_primary_then_the_secondary_pool() {
    let routes = from_env(&[URLS]).unwrap().routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].name, DEFAULT_ROUTE);
    assert_eq!(
        routes[0].targets,
        vec![
            Target::Pool("primary".into()),
            Target::Pool("secondary".into())
        ]
    );
}

#[test]
fn an_endpoint_target_takes_its_model_and_key_from_the_environment() {
    let routes = with_file(
        r#"
        [routes.gpt-4o]
        targets = [
          { url = "http://127.0.0.1:11434/v1/", model = "llama3.1:8b", api_key_env = "K" },
          { pool = "primary" },
        ]
        context_fallback = "default"
        "#,
        &[URLS, ("K", "sk-1")],
    )
    .unwrap()
    .routes;
    let route = routes.iter().find(|r| r.name == "gpt-4o").unwrap();
    let Target::Endpoint(endpoint) = &route.targets[0] else {
        panic!("{:?}", route.targets)
    };
    assert_eq!(endpoint.url, "http://127.0.0.1:11434/v1");
    assert_eq!(endpoint.id, "llama3.1:8b@http://127.0.0.1:11434/v1");
    assert_eq!(
        endpoint.protocol,
        Protocol::OpenAi {
            model: "llama3.1:8b".into(),
            api_key: Some(ApiKey::new("sk-1"))
        }
    );
    assert!(
        routes.iter().any(|r| r.name == DEFAULT_ROUTE),
        "default is added"
    );
}

#[test]
fn every_route_mistake_names_its_place() {
    let problems = with_file(
        r#"
        [routes.a]
        targets = [
          { url = "http://x/v1" },
          { pool = "primary", url = "http://x/v1", model = "m" },
          { url = "ftp://x", model = "m" },
          { url = "http://x/v1", model = "m", api_key_env = "NOT_SET_ANYWHERE" },
          { pool = "primary" },
          { pool = "primary" },
        ]
        context_fallback = "nowhere"
        [routes.b]
        targets = []
        "#,
        &[URLS],
    )
    .unwrap_err();
    let found = fields(&problems);
    for field in [
        "routes.a.targets[0]",
        "routes.a.targets[1]",
        "routes.a.targets[2]",
        "routes.a.targets[3]",
        "routes.a.targets[5]",
        "routes.a.context_fallback",
        "routes.b.targets",
    ] {
        assert!(found.contains(&field), "{field} missing from {found:?}");
    }
    let key = problems
        .iter()
        .find(|p| p.field == "routes.a.targets[3]")
        .unwrap();
    assert!(key.message.contains("NOT_SET_ANYWHERE"), "{}", key.message);

    let problems = with_file(
        r#"
        [routes.a]
        targets = [{ url = "http://x/v1?key=1", model = "m" }, { url = "http://u:p@x/v1", model = "m" }]
        [routes.b]
        targets = [{ url = "http://x/v1?key=1", model = "m", name = "other-name" }]
        "#,
        &[URLS],
    )
    .unwrap_err();
    let found = fields(&problems);
    assert!(
        found.contains(&"routes.a.targets[1]"),
        "credentials in a URL: {found:?}"
    );
    assert!(
        found.contains(&"routes.b.targets"),
        "one endpoint model, two names: {found:?}"
    );
}

#[test]
fn an_endpoint_id_never_shows_the_query() {
    let routes = with_file(
        "[routes.a]\ntargets = [{ url = \"http://x:81/v1?key=1\", model = \"m\" }]\n",
        &[URLS],
    )
    .unwrap()
    .routes;
    let route = routes.iter().find(|r| r.name == "a").unwrap();
    let Target::Endpoint(endpoint) = &route.targets[0] else {
        panic!("{:?}", route.targets)
    };
    assert_eq!(
        endpoint.id, "m@http://x:81/v1",
        "no query in ids, logs or metrics"
    );
}
