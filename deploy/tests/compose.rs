//! docker-compose.yml and the Dockerfiles, checked against the binaries they run: the
//! settings they pass are ones the binaries read, the health checks they declare pass on a
//! live service and fail on a dead one, and the files they mount exist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::{Address, Process, free_port, known_env, read, root, run_argv, yaml};

/// The lab's services, with the compose names the lab and the suite use (README.md, "With
/// Docker"): the seed's, and llm_service_3, the secondary tier.
const SEED_SERVICES: [&str; 9] = [
    "redis",
    "postgres",
    "prometheus",
    "grafana",
    "api_gateway",
    "llm_service_1",
    "llm_service_2",
    "llm_service_3",
    "chaos_monkey",
];

/// The llm-services and the tier each registers (`SERVICE_TIER`, `primary` when unset).
const LLM_TIERS: [(&str, &str); 3] = [
    ("llm_service_1", "primary"),
    ("llm_service_2", "primary"),
    ("llm_service_3", "secondary"),
];

/// What a Dockerfile builds and runs.
#[derive(Debug)]
struct Image {
    /// The binary's name (the last part of the ENTRYPOINT).
    binary: String,
    /// `HEALTHCHECK CMD [...]`.
    healthcheck: Vec<String>,
    /// The `cargo build` line.
    build: String,
}

/// Reads a Dockerfile, continuation lines joined.
fn image(dockerfile: &str) -> Image {
    let text = read(dockerfile).replace("\\\n", " ");
    let json_after = |instruction: &str, marker: &str| -> Vec<String> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(instruction))
            .unwrap_or_else(|| panic!("{dockerfile} has no {instruction}"));
        let (_, array) = line
            .split_once(marker)
            .unwrap_or_else(|| panic!("{dockerfile}: {instruction} without {marker}"));
        serde_json::from_str(array.trim())
            .unwrap_or_else(|e| panic!("{dockerfile}: {instruction} is not exec form: {e}"))
    };
    let entrypoint = json_after("ENTRYPOINT", "ENTRYPOINT");
    let binary = entrypoint[0].rsplit('/').next().unwrap().to_owned();
    let build = text
        .lines()
        .find(|l| l.contains("cargo build"))
        .unwrap_or_else(|| panic!("{dockerfile} does not build with cargo"))
        .to_owned();
    Image {
        binary,
        healthcheck: json_after("HEALTHCHECK", "CMD"),
        build,
    }
}

/// A compose service's `environment`, as a map (it may be written as a list).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|item| {
                let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("environment must be a map or a list, not {other}"),
    }
}

/// The compose services built from our Dockerfiles: name → (service, image).
fn built_services(compose: &Value) -> BTreeMap<String, (Value, Image)> {
    compose["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| !s["build"].is_null())
        .map(|(name, s)| {
            let dockerfile = s["build"]["dockerfile"].as_str().unwrap();
            (name.clone(), (s.clone(), image(dockerfile)))
        })
        .collect()
}

/// `healthcheck.test` without its leading `CMD`.
fn healthcheck_argv(name: &str, service: &Value) -> Vec<String> {
    let test: Vec<String> = serde_json::from_value(service["healthcheck"]["test"].clone())
        .unwrap_or_else(|e| panic!("{name}: healthcheck.test is not a list: {e}"));
    assert_eq!(test[0], "CMD", "{name}: exec form, no shell in our images");
    test[1..].to_vec()
}

#[tokio::test]
async fn compose_mirrors_the_lab_and_passes_only_what_the_binaries_read() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(SEED_SERVICES));

    let built = built_services(&compose);
    let binaries: BTreeSet<&str> = built.values().map(|(_, i)| i.binary.as_str()).collect();
    assert_eq!(
        binaries,
        BTreeSet::from(["gateway", "llm-service", "chaos-monkey"])
    );
    for (name, (service, image)) in &built {
        let package = format!("-p {}", image.binary);
        assert!(
            image.build.contains(&package)
                && image.build.contains(&format!("--bin {}", image.binary)),
            "{name}: the Dockerfile builds what it runs: {}",
            image.build
        );
        let known = known_env(&image.binary).await;
        let env = environment(service);
        let unknown: Vec<_> = env.keys().filter(|k| !known.contains(*k)).collect();
        assert!(
            unknown.is_empty(),
            "{name}: {} does not read {unknown:?}",
            image.binary
        );
        let argv = healthcheck_argv(name, service);
        assert_eq!(
            argv, image.healthcheck,
            "{name}: compose and the Dockerfile run the same health check"
        );
        assert_eq!(argv[0], format!("/usr/local/bin/{}", image.binary));
        assert_eq!(argv[1], "healthcheck");
        // Published ports reach the port the service listens on in the container.
        let listens = env
            .get("PORT")
            .cloned()
            .unwrap_or_else(|| "8000".to_owned());
        for port in service["ports"].as_array().into_iter().flatten() {
            let mapping = port.as_str().unwrap();
            assert!(
                mapping.ends_with(&format!(":{listens}")),
                "{name}: {mapping} does not reach port {listens}"
            );
        }
    }

    // Every llm-service advertises its address on the compose network; the gateway finds
    // them in the registry only (a static entry would name an instance by host:port).
    let gateway_env = environment(&services["api_gateway"]);
    assert!(!gateway_env.contains_key("LLM_SERVICE_URLS"));
    assert!(gateway_env["REDIS_URL"].starts_with("redis://redis:"));
    // Two primaries and a secondary tier, each on a host port of its own (8001…8003).
    let mut host_ports = BTreeSet::new();
    for (llm, tier) in LLM_TIERS {
        let env = environment(&services[llm]);
        assert_eq!(env["SERVICE_ID"], llm);
        assert_eq!(env["ADVERTISE_URL"], format!("http://{llm}:8000"));
        assert_eq!(
            env["REDIS_URL"], gateway_env["REDIS_URL"],
            "{llm}: one registry"
        );
        assert_eq!(
            env.get("SERVICE_TIER").map_or("primary", String::as_str),
            tier,
            "{llm}'s tier"
        );
        let published = services[llm]["ports"][0].as_str().unwrap();
        host_ports.insert(published.split(':').next().unwrap().to_owned());
    }
    assert_eq!(
        host_ports,
        BTreeSet::from(["8001", "8002", "8003"].map(str::to_owned))
    );
    // The chaos monkey's random faults stay on the primaries.
    let chaos_env = environment(&services["chaos_monkey"]);
    let targets: BTreeSet<&str> = chaos_env["TARGET_SERVICES"].split(',').collect();
    for target in &targets {
        assert!(
            names.contains(target),
            "chaos target {target} is not a service"
        );
    }
    assert_eq!(targets, BTreeSet::from(["llm_service_1", "llm_service_2"]));
    // Prometheus scrapes every llm-service.
    let prometheus = read("config/prometheus.yml");
    for (llm, _) in LLM_TIERS {
        assert!(
            prometheus.contains(&format!("\"{llm}:8000\"")),
            "config/prometheus.yml does not scrape {llm}"
        );
    }

    // Health conditions wait only on services that have a health check.
    for (name, service) in services {
        if let Value::Object(depends) = &service["depends_on"] {
            for (dependency, how) in depends {
                assert!(
                    names.contains(dependency.as_str()),
                    "{name} depends on {dependency}"
                );
                if how["condition"] == "service_healthy" {
                    assert!(
                        !services[dependency]["healthcheck"].is_null(),
                        "{name} waits for {dependency} to be healthy, which has no health check"
                    );
                }
            }
        }
        // Bind mounts name files of this repository.
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(relative) = source.strip_prefix("./") {
                assert!(
                    root().join(relative).exists(),
                    "{name} mounts missing {source}"
                );
            }
        }
    }
}

/// Sends SIGTERM (as `docker stop` does) and waits for a clean exit.
async fn stop(name: &str, mut process: Process) {
    process.terminate().await;
    let status = process.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{name}: clean exit on SIGTERM ({status})");
}

#[tokio::test]
async fn each_service_starts_with_its_compose_environment_and_its_health_check_follows_it() {
    let compose = yaml("docker-compose.yml");
    for (name, (service, image)) in built_services(&compose) {
        let argv = healthcheck_argv(&name, &service);
        // The compose environment as it is (hostnames the compose network resolves stay:
        // Redis unreachable only degrades), on a free loopback port.
        let mut env = environment(&service);
        env.insert("PORT".to_owned(), free_port().to_string());
        env.insert("HOST".to_owned(), "127.0.0.1".to_owned());
        if image.binary == "chaos-monkey" {
            let heartbeat =
                std::env::temp_dir().join(format!("deploy-check-heartbeat-{}", std::process::id()));
            let _ = std::fs::remove_file(&heartbeat);
            env.insert(
                "CHAOS_HEARTBEAT_FILE".to_owned(),
                heartbeat.display().to_string(),
            );
        }
        assert!(
            !run_argv(&argv, &env).await.success(),
            "{name}: healthy before it runs"
        );
        let mut command = tokio::process::Command::new(support::binary(&image.binary));
        command.env_clear().envs(&env);
        // Its health check, not a port of ours, says when it is up.
        let process = Process::start(&name, command, Address::Nowhere, None).await;
        support::wait_until(&format!("{name}'s health check passes"), || async {
            run_argv(&argv, &env).await.success()
        })
        .await;
        stop(&name, process).await;
        assert!(
            !run_argv(&argv, &env).await.success(),
            "{name}: stopped but healthy"
        );
    }
}

/// A YAML document as JSON, tags (`!override`, `!reset`) dropped.
fn untagged(value: yaml_serde::Value) -> Value {
    match value {
        yaml_serde::Value::Tagged(tagged) => untagged(tagged.value),
        yaml_serde::Value::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), untagged(v)))
                .collect(),
        ),
        yaml_serde::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(untagged).collect())
        }
        scalar => serde_json::to_value(scalar).unwrap(),
    }
}

/// `deploy/compose.local.yml`, the override `deploy/compose-local.sh` runs the compose file
/// with on a machine without Docker or a registry, changes only what such a machine needs:
/// images (Debian-built stand-ins), host ports (beside a host's own Redis and PostgreSQL)
/// and the base images of our Dockerfiles, whose defaults stay the public images. The script
/// starts every service of the compose file but Grafana.
#[test]
fn the_local_override_changes_only_images_ports_and_base_images() {
    let compose = yaml("docker-compose.yml");
    let text = read("deploy/compose.local.yml");
    let local = untagged(yaml_serde::from_str(&text).unwrap());
    // Replaced, not added to: compose merges the `ports` of an override into the file's.
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("ports:"))
    {
        assert_eq!(line.trim(), "ports: !override", "{line}");
    }
    let services = compose["services"].as_object().unwrap();
    let overridden = local["services"].as_object().unwrap();
    let mut base_args = BTreeSet::new();
    for (name, service) in overridden {
        assert!(
            services.contains_key(name),
            "{name} is not a compose service"
        );
        for (key, value) in service.as_object().unwrap() {
            match key.as_str() {
                "image" => assert!(
                    value.as_str().unwrap().starts_with("localhost/lab-"),
                    "{name}: a locally built image, not {value}"
                ),
                "ports" => {
                    for port in value.as_array().unwrap() {
                        let port = port.as_str().unwrap();
                        let (address, mapping) = port.split_once(':').unwrap();
                        assert_eq!(address, "127.0.0.1", "{name}: {port} beyond loopback");
                        for host in ["6379:", "5432:"] {
                            assert!(!mapping.starts_with(host), "{name}: {port} is the host's");
                        }
                        let target = services[name]["ports"][0].as_str().unwrap();
                        let target = target.rsplit(':').next().unwrap();
                        assert!(port.ends_with(&format!(":{target}")), "{name}: {port}");
                    }
                }
                "build" => {
                    assert!(services[name]["build"].is_object(), "{name} builds nothing");
                    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
                    assert_eq!(
                        keys,
                        ["args"],
                        "{name}: the override changes only build args"
                    );
                    for (arg, image) in value["args"].as_object().unwrap() {
                        assert!(image.as_str().unwrap().starts_with("localhost/lab-"));
                        base_args.insert(arg.clone());
                    }
                }
                other => panic!("{name}: the override changes `{other}`"),
            }
        }
    }
    assert_eq!(
        base_args,
        BTreeSet::from(["BUILDER_IMAGE".to_owned(), "RUNTIME_IMAGE".to_owned()])
    );
    for dockerfile in ["Dockerfile.gateway", "Dockerfile.llm", "Dockerfile.chaos"] {
        let text = read(dockerfile);
        for line in [
            "ARG BUILDER_IMAGE=rust:1.95-slim-bookworm",
            "ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot",
            "FROM ${BUILDER_IMAGE} AS build",
            "FROM ${RUNTIME_IMAGE}",
        ] {
            assert!(text.lines().any(|l| l == line), "{dockerfile}: no `{line}`");
        }
    }

    let script = read("deploy/compose-local.sh");
    let started: BTreeSet<&str> = script
        .lines()
        .find_map(|l| l.strip_prefix("SERVICES=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect("SERVICES=(…) in compose-local.sh")
        .split_whitespace()
        .collect();
    let expected: BTreeSet<&str> = services
        .keys()
        .map(String::as_str)
        .filter(|s| *s != "grafana")
        .collect();
    assert_eq!(started, expected, "compose-local.sh starts all but Grafana");
}
