//! Tests of the compose controller: the commands each engine runs, with `false`, `true`,
//! `sleep` and small `sh` scripts in place of `docker`, `podman-compose` and `podman`.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// A fresh directory for one test's fake programs.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stack-control-compose-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An executable `sh` script `name` in `dir`; `DIR` in `body` is replaced by `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let body = body.replace("DIR", &dir.display().to_string());
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A compose command that logs its arguments to `DIR/calls` and answers `ps` with `ps`.
fn fake_compose(dir: &Path, ps: &str) -> PathBuf {
    std::fs::write(dir.join("ps.json"), ps).unwrap();
    script(
        dir,
        "compose",
        r#"echo "$*" >> DIR/calls
for arg in "$@"; do
  case "$arg" in
    ps) cat DIR/ps.json; exit 0 ;;
    up) echo 'failed to connect to syslog: Initialization' >&2; exit 0 ;;
  esac
done"#,
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn docker_commands_name_the_file_the_verb_and_the_service() {
    let compose = Compose::new(["deploy/docker-compose.yml"]);
    assert_eq!(compose.engine, Engine::Docker);
    assert_eq!(compose.program, PathBuf::from("docker"));
    assert_eq!(
        compose.args(&["up", "-d", "--no-deps"], Some("llm_service_1")),
        [
            "compose",
            "-f",
            "deploy/docker-compose.yml",
            "up",
            "-d",
            "--no-deps",
            "llm_service_1"
        ]
    );
    assert_eq!(
        compose.args(Engine::Docker.ps_verb(), None),
        [
            "compose",
            "-f",
            "deploy/docker-compose.yml",
            "ps",
            "--all",
            "--format",
            "json"
        ]
    );
}

#[test]
fn podman_commands_name_the_file_the_verb_and_the_service() {
    let compose = Compose::with_engine(["docker-compose.yml"], Engine::Podman);
    assert_eq!(compose.program, PathBuf::from("podman-compose"));
    assert_eq!(compose.podman, PathBuf::from("podman"));
    assert_eq!(
        compose.args(&["up", "-d", "--no-deps"], Some("redis")),
        ["-f", "docker-compose.yml", "up", "-d", "--no-deps", "redis"]
    );
    assert_eq!(
        compose.args(&["unpause"], Some("llm_service_2")),
        ["-f", "docker-compose.yml", "unpause", "llm_service_2"]
    );
    assert_eq!(
        compose.args(Engine::Podman.ps_verb(), None),
        ["-f", "docker-compose.yml", "ps", "--format", "json"],
        "podman-compose ps takes no --all"
    );
    assert_eq!(Engine::Podman.to_string(), "podman-compose");
    assert_eq!(Engine::Docker.to_string(), "docker compose");
}

#[test]
fn an_override_file_follows_the_compose_file_in_every_command() {
    let files = ["docker-compose.yml", "deploy/compose.local.yml"];
    let podman = Compose::with_engine(files, Engine::Podman);
    assert_eq!(
        podman.args(&["stop"], Some("redis")),
        [
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/compose.local.yml",
            "stop",
            "redis"
        ]
    );
    let docker = Compose::new(files);
    assert_eq!(
        docker.args(Engine::Docker.ps_verb(), None)[..5],
        [
            "compose",
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/compose.local.yml"
        ]
    );
}

#[tokio::test]
async fn a_failing_docker_is_a_clear_error_naming_the_command() {
    let mut compose = Compose::new(["docker-compose.yml"]);
    compose.program = PathBuf::from("false");
    let error = compose.stop("redis").await.unwrap_err().to_string();
    assert!(
        error.starts_with("false compose -f docker-compose.yml stop redis: "),
        "{error}"
    );
    assert!(error.contains("exit status: 1"), "{error}");
}

#[tokio::test]
async fn a_failing_podman_compose_is_a_clear_error_naming_the_command() {
    let mut compose = Compose::with_engine(["docker-compose.yml"], Engine::Podman);
    compose.program = PathBuf::from("false");
    let error = compose.kill("redis").await.unwrap_err().to_string();
    assert!(
        error.starts_with("false -f docker-compose.yml kill redis: "),
        "{error}"
    );
    assert!(error.contains("exit status: 1"), "{error}");

    compose.program = PathBuf::from("/nonexistent/podman-compose");
    let error = compose.status().await.unwrap_err().to_string();
    assert!(
        error.starts_with("/nonexistent/podman-compose -f docker-compose.yml ps --format json: "),
        "{error}"
    );
}

#[tokio::test]
async fn podman_errors_leave_out_the_complaints_of_a_machine_without_systemd() {
    let dir = temp_dir("noise");
    let mut compose = Compose::with_engine(["compose.yml"], Engine::Podman);
    compose.program = script(
        &dir,
        "podman-compose",
        r#"echo 'time="x" level=error msg="unable to get systemd connection to add healthchecks"' >&2
echo 'CRITICAL:podman_compose:missing files: [compose.yml]' >&2
exit 1"#,
    );
    let error = compose.status().await.unwrap_err().to_string();
    assert!(
        error.ends_with("ps --format json: CRITICAL:podman_compose:missing files: [compose.yml]"),
        "{error}"
    );
    assert!(!error.contains("systemd"), "{error}");
}

#[tokio::test]
async fn unreadable_podman_ps_output_is_an_error() {
    let dir = temp_dir("garbage");
    let mut compose = Compose::with_engine(["compose.yml"], Engine::Podman);
    compose.program = fake_compose(&dir, "not json");
    let error = compose.status().await.unwrap_err().to_string();
    assert!(
        error.contains("ps --format json: unreadable output"),
        "{error}"
    );
}

#[tokio::test]
async fn a_command_past_its_deadline_is_killed_with_its_children_and_an_error() {
    let dir = temp_dir("deadline");
    // A compose command that starts a child of its own (as podman-compose runs podman).
    let program = script(&dir, "slow", "sleep 30 & echo $! > DIR/child; wait");
    let started = std::time::Instant::now();
    let error = output(&program, &[], Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(error.starts_with(NO_ANSWER), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "not waited out");
    let child = std::fs::read_to_string(dir.join("child")).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", child.trim()));
    let mut gone = false;
    for _ in 0..50 {
        // Gone, or a zombie waiting for init to reap it.
        let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the command's child {} still runs", child.trim());
}

#[tokio::test]
async fn detection_prefers_a_running_docker_then_podman_compose() {
    let (yes, no, none) = (
        Path::new("true"),
        Path::new("false"),
        Path::new("/nonexistent/x"),
    );
    assert_eq!(Engine::detect_with(yes, yes).await, Engine::Docker);
    assert_eq!(Engine::detect_with(no, yes).await, Engine::Podman);
    assert_eq!(Engine::detect_with(none, yes).await, Engine::Podman);
    assert_eq!(Engine::detect_with(no, none).await, Engine::Docker);
    assert_eq!(Engine::detect_with(yes, no).await, Engine::Docker);
}

/// `podman ps --format json` listing one running service whose Status still says
/// `(starting)`: podman never ran its check.
const PODMAN_STARTING: &str = r#"[{"Names":["resilient-llm_llm_service_1_1"],"State":"running",
"Status":"Up 2 seconds ago (starting)","Labels":{"com.docker.compose.service":"llm_service_1"},
"Ports":[{"host_ip":"","container_port":8000,"host_port":8001,"range":1,"protocol":"tcp"}]}]"#;

#[tokio::test]
async fn podman_start_runs_the_health_check_until_it_passes() {
    let dir = temp_dir("podman-up");
    let mut compose = Compose::with_engine(["compose.yml"], Engine::Podman);
    compose.program = fake_compose(&dir, PODMAN_STARTING);
    // Unhealthy at the first check, healthy at the second.
    compose.podman = script(
        &dir,
        "podman",
        r#"echo "$*" >> DIR/checks
if [ "$(wc -l < DIR/checks)" -ge 2 ]; then exit 0; fi
echo unhealthy; exit 1"#,
    );

    let status = compose.status().await.unwrap();
    assert_eq!(status[0].state, RunState::Running);
    assert_eq!(status[0].url.as_deref(), Some("http://127.0.0.1:8001"));

    compose.start("llm_service_1").await.unwrap();

    assert_eq!(
        lines(&dir.join("checks")),
        ["healthcheck run resilient-llm_llm_service_1_1"; 2]
    );
    let calls = lines(&dir.join("calls"));
    assert_eq!(calls[1], "-f compose.yml up -d --no-deps llm_service_1");
    assert_eq!(calls[2], "-f compose.yml ps --format json");
}

#[tokio::test]
async fn podman_start_counts_a_running_container_without_a_check_as_started() {
    let dir = temp_dir("podman-no-check");
    let mut compose = Compose::with_engine(["compose.yml"], Engine::Podman);
    compose.program = fake_compose(&dir, PODMAN_STARTING);
    compose.podman = script(
        &dir,
        "podman",
        r#"echo "$*" >> DIR/checks
echo "Error: container 5629e5aa has no defined healthcheck" >&2; exit 125"#,
    );

    compose.start("llm_service_1").await.unwrap();

    assert_eq!(lines(&dir.join("checks")).len(), 1);
}

#[tokio::test]
async fn docker_start_reads_health_from_ps_and_runs_no_check() {
    let dir = temp_dir("docker-up");
    let mut compose = Compose::new(["compose.yml"]);
    compose.program = fake_compose(
        &dir,
        r#"{"Service":"redis","Name":"resilient-llm-redis-1","State":"running","Health":"healthy"}"#,
    );
    compose.podman = PathBuf::from("false");

    compose.start("redis").await.unwrap();

    assert_eq!(
        lines(&dir.join("calls")),
        [
            "compose -f compose.yml up -d --no-deps redis",
            "compose -f compose.yml ps --all --format json",
        ]
    );
    assert!(!dir.join("checks").exists());
}

#[tokio::test]
async fn podman_logs_are_read_from_the_services_container_both_streams() {
    let dir = temp_dir("podman-logs");
    let mut compose = Compose::with_engine(["compose.yml"], Engine::Podman);
    compose.program = fake_compose(&dir, PODMAN_STARTING);
    compose.podman = script(
        &dir,
        "podman",
        r#"echo "$*" >> DIR/podman-calls
echo '{"level":"WARN","message":"fallback"}'
echo 'a line on stderr' >&2"#,
    );

    let log = compose.logs("llm_service_1").await.unwrap();
    assert_eq!(
        log,
        "{\"level\":\"WARN\",\"message\":\"fallback\"}\na line on stderr\n"
    );
    assert_eq!(
        lines(&dir.join("podman-calls")),
        ["logs resilient-llm_llm_service_1_1"]
    );
    let error = compose.logs("grafana").await.unwrap_err();
    assert!(
        matches!(&error, ControlError::UnknownService(s) if s == "grafana"),
        "{error}"
    );
}

#[tokio::test]
async fn docker_logs_come_from_compose_logs_without_prefixes() {
    let dir = temp_dir("docker-logs");
    let mut compose = Compose::new(["compose.yml"]);
    compose.program = script(&dir, "docker", r#"echo "$*" >> DIR/calls; echo 'one line'"#);

    assert_eq!(compose.logs("api_gateway").await.unwrap(), "one line\n");
    assert_eq!(
        lines(&dir.join("calls")),
        ["compose -f compose.yml logs --no-color --no-log-prefix api_gateway"]
    );
}
