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

#[test]
fn prefill_defaults_to_on_for_pools_and_off_for_endpoints_and_is_set_per_target() {
    use resilience_core::policy::continuation::PrefillMode;
    let settings = with_file(
        r#"
        [routes.a]
        targets = [
          { pool = "primary" },
          { url = "http://x/v1", model = "m" },
          { url = "http://y/v1", model = "m", prefill = "auto" },
          { pool = "secondary", prefill = false },
        ]
        [routes.b]
        targets = [{ url = "http://z/v1", model = "m", prefill = true }]
        "#,
        &[URLS],
    )
    .unwrap();
    let endpoint = |route: &str, i: usize| {
        let route = settings.routes.iter().find(|r| r.name == route).unwrap();
        match &route.targets[i] {
            Target::Endpoint(endpoint) => endpoint.clone(),
            other => panic!("{other:?}"),
        }
    };
    let prefill = &settings.prefill;
    assert_eq!(prefill.for_pool("primary"), PrefillMode::On);
    assert_eq!(prefill.for_pool("secondary"), PrefillMode::Off);
    assert_eq!(prefill.for_endpoint(&endpoint("a", 1)), PrefillMode::Off);
    assert_eq!(prefill.for_endpoint(&endpoint("a", 2)), PrefillMode::Auto);
    assert_eq!(prefill.for_endpoint(&endpoint("b", 0)), PrefillMode::On);

    let problems = with_file(
        r#"
        [routes.a]
        targets = [{ pool = "primary", prefill = "sometimes" }, { pool = "secondary", prefill = true }]
        [routes.b]
        targets = [{ pool = "secondary", prefill = false }]
        "#,
        &[URLS],
    )
    .unwrap_err();
    let found = fields(&problems);
    assert!(found.contains(&"routes.a.targets[0].prefill"), "{found:?}");
    assert!(
        found.contains(&"routes.b.targets[0].prefill")
            || found.contains(&"routes.a.targets[1].prefill"),
        "one pool, two prefill modes: {found:?}"
    );
}

#[test]
fn stream_max_continuations_is_a_bounded_setting() {
    assert_eq!(from_env(&[URLS]).unwrap().max_continuations, 2);
    let set = from_env(&[URLS, ("STREAM_MAX_CONTINUATIONS", "0")]).unwrap();
    assert_eq!(set.max_continuations, 0);
    let problems = from_env(&[URLS, ("STREAM_MAX_CONTINUATIONS", "99")]).unwrap_err();
    assert!(fields(&problems).contains(&"stream.max_continuations"));
    let problems = from_env(&[URLS, ("STREAM_MAX_CONTINUATIONS", "two")]).unwrap_err();
    assert!(fields(&problems).contains(&"STREAM_MAX_CONTINUATIONS"));
}
