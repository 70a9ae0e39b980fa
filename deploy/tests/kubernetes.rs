//! The Kubernetes manifests in deploy/kubernetes/, checked against each other and against
//! the binaries they run — what `kubernetes-validate` (schemas only) cannot see: settings
//! the binaries read, probes that answer on a live process, the gateway's TOML file
//! accepted by the gateway, and selectors, ports and names that point at something.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use deploy_check::files::yaml_documents;
use serde_json::Value;
use support::{Service, known_env, read, root};

const DIR: &str = "deploy/kubernetes";

/// Every resource of the manifests, with the file it came from.
fn resources() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        for document in yaml_documents(&read(&format!("{DIR}/{file}"))).unwrap() {
            all.push((file.clone(), document));
        }
    }
    all
}

fn of_kind<'a>(resources: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|(_, r)| r["kind"] == kind)
        .map(|(_, r)| r)
        .collect()
}

fn named<'a>(resources: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    of_kind(resources, kind)
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in {DIR}"))
}

/// Do `labels` carry every pair of `selector`?
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
}

/// The binary an image runs: `registry/llm-gateway/gateway:0.1.0` → `gateway`.
fn binary_of(image: &str) -> String {
    let without_tag = image.rsplit_once(':').map_or(image, |(name, _)| name);
    without_tag.rsplit('/').next().unwrap().to_owned()
}

/// A container's literal environment, ConfigMaps included (`envFrom` first, `env` wins),
/// and the names set from elsewhere (Secrets, the downward API).
fn environment(
    resources: &[(String, Value)],
    container: &Value,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut literal = BTreeMap::new();
    let mut elsewhere = BTreeSet::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("envFrom a ConfigMap");
        let map = named(resources, "ConfigMap", name);
        for (key, value) in map["data"].as_object().unwrap() {
            literal.insert(key.clone(), value.as_str().unwrap().to_owned());
        }
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap().to_owned();
        match variable["value"].as_str() {
            Some(value) => {
                literal.insert(name, value.to_owned());
            }
            None => {
                elsewhere.insert(name);
            }
        }
    }
    (literal, elsewhere)
}

/// `api_key_env = "NAME"` in a gateway TOML: variables the gateway reads for a route.
fn api_key_variables(toml: &str) -> BTreeSet<String> {
    toml.lines()
        .filter_map(|line| line.split("api_key_env").nth(1))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = support::yaml(&format!("{DIR}/kustomization.yaml"));
    let listed: BTreeSet<String> =
        serde_json::from_value(kustomization["resources"].clone()).unwrap();
    let files: BTreeSet<String> = resources().into_iter().map(|(file, _)| file).collect();
    assert_eq!(listed, files);
    let images: Vec<String> = kustomization["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    for deployment in of_kind(&resources(), "Deployment") {
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let image = container["image"].as_str().unwrap();
            let name = image.rsplit_once(':').map_or(image, |(n, _)| n);
            assert!(
                images.iter().any(|i| i == name),
                "kustomize does not set {image}"
            );
        }
    }
}

#[test]
fn selectors_ports_and_references_point_at_something() {
    let resources = resources();
    let deployments = of_kind(&resources, "Deployment");
    let pod_labels = |selector: &Value| -> Vec<&Value> {
        deployments
            .iter()
            .filter(|d| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .copied()
            .collect()
    };
    for deployment in &deployments {
        let name = &deployment["metadata"]["name"];
        assert!(
            selects(
                &deployment["spec"]["selector"]["matchLabels"],
                &deployment["spec"]["template"]["metadata"]["labels"]
            ),
            "{name}: its selector matches its pods"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        for container in pod["containers"].as_array().unwrap() {
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                let volume = mount["name"].as_str().unwrap();
                let source = volumes
                    .get(volume)
                    .unwrap_or_else(|| panic!("{name}: no volume {volume}"));
                if let Some(map) = source["configMap"]["name"].as_str() {
                    let data = &named(&resources, "ConfigMap", map)["data"];
                    for item in source["configMap"]["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        assert!(
                            !data[item["key"].as_str().unwrap()].is_null(),
                            "{map}: no key {item}"
                        );
                    }
                }
            }
        }
    }
    for service in of_kind(&resources, "Service") {
        let name = &service["metadata"]["name"];
        let targets = pod_labels(&service["spec"]["selector"]);
        assert_eq!(
            targets.len(),
            1,
            "Service {name} selects one Deployment's pods"
        );
        let container_ports: Vec<&Value> = targets[0]["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().unwrap())
            .collect();
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = &port["targetPort"];
            assert!(
                container_ports
                    .iter()
                    .any(|p| p["name"] == *target || p["containerPort"] == *target),
                "Service {name}: targetPort {target} is no container port"
            );
        }
    }
    for pdb in of_kind(&resources, "PodDisruptionBudget") {
        assert_eq!(
            pod_labels(&pdb["spec"]["selector"]["matchLabels"]).len(),
            1,
            "{pdb}"
        );
    }
    for hpa in of_kind(&resources, "HorizontalPodAutoscaler") {
        let target = &hpa["spec"]["scaleTargetRef"];
        assert_eq!(target["kind"], "Deployment");
        let deployment = named(&resources, "Deployment", target["name"].as_str().unwrap());
        // CPU utilisation needs a CPU request to be computed against.
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            assert!(
                !container["resources"]["requests"]["cpu"].is_null(),
                "{hpa}"
            );
        }
        assert!(
            hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2,
            "a PDB needs two pods"
        );
    }
    for policy in of_kind(&resources, "NetworkPolicy") {
        assert_eq!(
            pod_labels(&policy["spec"]["podSelector"]["matchLabels"]).len(),
            1,
            "{policy}"
        );
    }
}

/// What the kubelet would give a pod of `deployment`: its name, its IP, and the Secret's
/// keys (Redis is a private redis-server; the optional keys are left out, as when they are
/// not set).
fn from_elsewhere(deployment: &str, name: &str, redis: &str) -> Option<String> {
    match name {
        "SERVICE_ID" => Some(format!("{deployment}-7c9d5-x2x4q")),
        "POD_IP" => Some("127.0.0.1".to_owned()),
        "REDIS_URL" => Some(redis.to_owned()),
        _ => None,
    }
}

/// `$(NAME)` references expanded as Kubernetes does, from the variables before them.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    env.iter().fold(value.to_owned(), |value, (name, with)| {
        value.replace(&format!("$({name})"), with)
    })
}

/// The Deployments of llm-service pods, and the tier each registers (`SERVICE_TIER`).
const LLM_DEPLOYMENTS: [(&str, &str); 2] = [
    ("llm-service", "primary"),
    ("llm-service-secondary", "secondary"),
];

#[tokio::test]
async fn pods_start_with_their_manifests_and_the_gateway_finds_the_llm_services() {
    let resources = resources();
    let example = read("config/gateway.example.toml");
    let config_dir = std::env::temp_dir().join(format!("deploy-check-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&config_dir).unwrap();
    let (_redis, redis_url) = support::private_redis().await;

    // Deployment name → one pod of it, and its environment.
    let mut running: BTreeMap<String, (Service, BTreeMap<String, String>)> = BTreeMap::new();
    // The llm-services first: they register, then the gateway finds them in Redis.
    let mut deployments = of_kind(&resources, "Deployment");
    deployments.sort_by_key(|d| d["metadata"]["name"] == "gateway");
    for deployment in deployments {
        let deployment_name = deployment["metadata"]["name"].as_str().unwrap().to_owned();
        let pod = &deployment["spec"]["template"]["spec"];
        for container in pod["containers"].as_array().unwrap() {
            let binary = binary_of(container["image"].as_str().unwrap());
            let (literal, elsewhere) = environment(&resources, container);

            // Settings: what the binary reads, or a variable only other values refer to.
            let mut known = known_env(&binary).await;
            known.extend(api_key_variables(&example));
            let all_values: String = literal.values().cloned().collect();
            for name in literal.keys().chain(&elsewhere) {
                assert!(
                    known.contains(name) || all_values.contains(&format!("$({name})")),
                    "{binary}: the manifest sets {name}, which it does not read"
                );
            }
            let port = literal
                .get("PORT")
                .map_or("8000", String::as_str)
                .to_owned();
            assert!(
                container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["containerPort"].as_u64().map(|n| n.to_string())
                        == Some(port.clone())),
                "{binary}: listens on {port}, which is no container port"
            );

            // The pod's environment as the kubelet builds it, on a free loopback port in
            // place of the container port.
            let local_port = support::free_port();
            let mut env: BTreeMap<String, String> = elsewhere
                .iter()
                .filter_map(|name| {
                    let value = from_elsewhere(&deployment_name, name, &redis_url)?;
                    Some((name.clone(), value))
                })
                .collect();
            for (name, value) in &literal {
                let value =
                    expand(value, &env).replace(&format!(":{port}"), &format!(":{local_port}"));
                env.insert(name.clone(), value);
            }
            env.remove("PORT");
            env.remove("HOST");

            // The file the gateway is told to read is mounted, and the gateway accepts it.
            if let Some(path) = env.get("GATEWAY_CONFIG").cloned() {
                let (dir, file) = path.rsplit_once('/').unwrap();
                let mount = container["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["mountPath"] == dir)
                    .unwrap_or_else(|| panic!("{binary}: nothing mounted at {dir}"));
                let volume = pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap();
                let map = named(
                    &resources,
                    "ConfigMap",
                    volume["configMap"]["name"].as_str().unwrap(),
                );
                let toml = map["data"][file]
                    .as_str()
                    .unwrap_or_else(|| panic!("no {file}"));
                let local = config_dir.join(file);
                std::fs::write(&local, toml).unwrap();
                env.insert("GATEWAY_CONFIG".to_owned(), local.display().to_string());
            }
            if binary == "llm-service" {
                // The simulation's latency and failures off: this checks wiring, not luck.
                for sim in [
                    "SIM_MIN_LATENCY_MS",
                    "SIM_MAX_LATENCY_MS",
                    "SIM_FAILURE_RATE",
                ] {
                    env.insert(sim.to_owned(), "0".to_owned());
                }
            }
            let pairs: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let service = Service::start_on(local_port, &binary, &pairs, "/live").await;

            // Every probe answers 200 once the pod is up.
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                if probe == "startupProbe" && container[probe].is_null() {
                    continue;
                }
                let path = container[probe]["httpGet"]["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{binary}: no {probe}"));
                support::wait_until(&format!("{binary}'s {probe} {path} answers 200"), || {
                    let url = service.url(path);
                    async move { reqwest::get(url).await.is_ok_and(|r| r.status() == 200) }
                })
                .await;
            }
            running.insert(deployment_name.clone(), (service, env));
        }
    }

    // The gateway found both llm-service pods through the registry (no static list in the
    // manifests), each in the tier its Deployment sets, and an answer names the primary pod.
    let (gateway, gateway_env) = running.remove("gateway").unwrap();
    assert!(!gateway_env.contains_key("LLM_SERVICE_URLS"));
    let pods: BTreeMap<String, String> = running
        .iter()
        .map(|(deployment, (_, env))| (deployment.clone(), env["SERVICE_ID"].clone()))
        .collect();
    let pod_of = |deployment: &str| pods[deployment].clone();
    let mut expected: Vec<(String, String)> = LLM_DEPLOYMENTS
        .iter()
        .map(|(deployment, tier)| (pod_of(deployment), (*tier).to_owned()))
        .collect();
    expected.sort();
    support::wait_until("the gateway discovers both llm-service pods", || async {
        let health: Value = reqwest::get(gateway.url("/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut seen: Vec<(String, String)> = health["service_discovery"]["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["healthy"] == true)
            .map(|s| {
                let field = |key: &str| s[key].as_str().unwrap_or_default().to_owned();
                (field("id"), field("tier"))
            })
            .collect();
        seen.sort();
        seen == expected
    })
    .await;
    let ask = || async {
        let question = serde_json::json!({"prompt": "What is AI?"});
        let answer: Value = support::post(gateway.url("/generate"), question)
            .await
            .json()
            .await
            .unwrap();
        answer
    };
    let answer = ask().await;
    assert_eq!(
        answer["data"]["served_by"],
        pod_of("llm-service"),
        "{answer}"
    );
    assert_eq!(answer["data"]["fallback_used"], false, "{answer}");

    // The primary pod gone, the secondary tier answers, and says so.
    let (mut primary, _) = running.remove("llm-service").unwrap();
    primary.process.terminate().await;
    let status = primary
        .process
        .wait_exit(std::time::Duration::from_secs(15))
        .await;
    assert!(status.success(), "the primary pod exits cleanly: {status}");
    let secondary = pod_of("llm-service-secondary");
    // Until the gateway drops the deregistered pod, a try may still reach for it.
    let mut answer = ask().await;
    for _ in 0..40 {
        if answer["data"]["served_by"] == *secondary {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        answer = ask().await;
    }
    assert_eq!(answer["data"]["served_by"], *secondary, "{answer}");
    assert_eq!(answer["data"]["fallback_used"], true, "{answer}");
    assert_eq!(answer["data"]["fallback_type"], "secondary", "{answer}");
    let _ = std::fs::remove_dir_all(&config_dir);
}
