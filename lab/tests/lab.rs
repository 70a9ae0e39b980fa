//! The `lab` binary end to end, on base ports away from 8000 and a private run directory:
//! the real redis-server, gateway, llm-services and chaos-monkey.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A base port whose stack ports (P, P+1, P+2, P+3, P+101, P+102, P+379, P+474, P+1090)
/// are all free now.
fn free_base_port(seed: u16) -> u16 {
    let start = 20_000 + (std::process::id() as u16 % 500) * 40 + seed * 7;
    (0..200)
        .map(|i| start + i * 3)
        .find(|p| {
            [0, 1, 2, 3, 101, 102, 379, 474, 1090]
                .iter()
                .all(|o| TcpListener::bind(("127.0.0.1", p + o)).is_ok())
        })
        .expect("a free base port")
}

fn run_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lab-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `lab down` in `dir` when dropped, so a failed assertion leaves no stack behind.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
            .arg("down")
            .env("LAB_DIR", &self.0)
            .output();
    }
}

/// `lab ARGS` with a fast, calm stack (no simulated latency or failures, a chaos monkey
/// that never injects anything).
async fn lab(dir: &Path, args: &[&str]) -> Output {
    lab_command(dir, args).output().await.unwrap()
}

fn lab_command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lab"));
    command
        .args(args)
        .env("LAB_DIR", dir)
        .env("SIM_MIN_LATENCY_MS", "0")
        .env("SIM_MAX_LATENCY_MS", "0")
        .env("SIM_FAILURE_RATE", "0")
        .env("CHAOS_INTERVAL", "3600")
        .env("FAILURE_PROBABILITY", "0");
    command
}

/// `lab ARGS`, which must succeed; its output.
async fn ok(dir: &Path, args: &[&str]) -> String {
    let output = lab(dir, args).await;
    let said = text(&output);
    assert!(output.status.success(), "lab {args:?} failed:\n{said}");
    said
}

/// `GET url` as JSON.
async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Asserts that the gateway at `base` answers `prompt` from an upstream, not a fallback.
async fn assert_served_by_an_upstream(client: &reqwest::Client, base: u16, prompt: &str) {
    let answer: serde_json::Value = client
        .post(format!("http://127.0.0.1:{base}/generate"))
        .json(&serde_json::json!({"prompt": prompt, "max_tokens": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    assert_eq!(answer["data"]["fallback_used"], false, "{answer}");
}

/// `/generate` until llm_service_3 answers it (the gateway notices the stopped primaries
/// within seconds; until then a try may still reach for them), at most 30 s; the last answer.
async fn secondary_answer(client: &reqwest::Client, base: u16) -> serde_json::Value {
    let mut answer = serde_json::Value::Null;
    for n in 0..60 {
        answer = client
            .post(format!("http://127.0.0.1:{base}/generate"))
            .json(&serde_json::json!({"prompt": format!("primaries down {n}"), "max_tokens": 8}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["data"]["served_by"] == "llm_service_3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(answer["data"]["served_by"], "llm_service_3", "{answer}");
    answer
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

/// The state letter of a process, `None` when it is gone.
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether `pid` still runs one of this workspace's binaries or a redis-server (a number
/// reused by an unrelated process since does not count), any thread of it: a process whose
/// first thread has exited shows as a zombie while the others still hold its ports.
fn alive(pid: &str) -> bool {
    let running = std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|threads| {
        threads.filter_map(Result::ok).any(|t| {
            let thread = format!("{pid}/task/{}", t.file_name().display());
            !matches!(process_state(&thread), None | Some('Z' | 'X'))
        })
    });
    if !running {
        return false;
    }
    if process_state(pid) == Some('Z') {
        // Its first thread exited (so `exe` cannot be read), others still run.
        return true;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let ours = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    exe.starts_with(ours) || exe.to_string_lossy().contains("redis")
}

/// The stack's ports (for `base`) that something still holds.
fn taken_ports(base: u16) -> Vec<u16> {
    [0, 1, 2, 3, 101, 102, 379, 474]
        .iter()
        .map(|o| base + o)
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect()
}

/// Service name → pid, from `lab status`.
fn pids(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() >= 3 && cols[2].chars().all(|c| c.is_ascii_digit()))
                .then(|| (cols[0].to_owned(), cols[2].to_owned()))
        })
        .collect()
}

fn state_of(status: &str, name: &str) -> String {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("absent")
        .to_owned()
}

#[tokio::test]
async fn up_control_and_down_leave_nothing_behind() {
    let dir = run_dir("cycle");
    let _down = Down(dir.clone());
    let base = free_base_port(1);
    let base_arg = base.to_string();
    let up_args = ["up", "--base-port", &base_arg, "--proxy", "llm_service_1"];
    let up = lab(&dir, &up_args).await;
    assert!(up.status.success(), "lab up failed:\n{}", text(&up));
    let printed = text(&up);
    for name in [
        "redis",
        "chaos_proxy",
        "llm_service_1",
        "llm_service_2",
        "llm_service_3",
        "api_gateway",
        "chaos_monkey",
    ] {
        assert_eq!(state_of(&printed, name), "healthy", "{name}:\n{printed}");
    }
    assert!(
        printed.contains(&format!("http://127.0.0.1:{base}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("http://127.0.0.1:{}", base + 3)),
        "llm_service_3 on base+3: {printed}"
    );
    let started = pids(&printed);
    assert!(started.len() >= 7, "{printed}");

    // The stack works: the gateway answers from an llm-service it found in lab's Redis.
    let client = reqwest::Client::new();
    assert_served_by_an_upstream(&client, base, "hello lab").await;

    // llm_service_1 is reached through the fault proxy: the gateway knows it by the
    // proxy's address, and the proxy's Toxiproxy API lists it.
    let health = get_json(&client, format!("http://127.0.0.1:{base}/health")).await;
    let services = health["service_discovery"]["services"].as_array().unwrap();
    let proxied = services
        .iter()
        .find(|s| s["id"] == "llm_service_1")
        .unwrap();
    assert_eq!(
        proxied["url"],
        format!("http://127.0.0.1:{}", base + 101),
        "{health}"
    );
    // The tiers the llm-services registered: two primaries, llm_service_3 the secondary.
    let tiers: Vec<(String, String)> = services
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["tier"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (id, tier) in [
        ("llm_service_1", "primary"),
        ("llm_service_2", "primary"),
        ("llm_service_3", "secondary"),
    ] {
        assert!(
            tiers.contains(&(id.to_owned(), tier.to_owned())),
            "{id} {tier}: {health}"
        );
    }
    let proxies = get_json(&client, format!("http://127.0.0.1:{}/proxies", base + 474)).await;
    assert_eq!(
        proxies["llm_service_1"]["upstream"],
        format!("127.0.0.1:{}", base + 1),
        "{proxies}"
    );

    // The lab is a lab: every llm-service has its fault API on (the suite's chaos
    // scenarios and the chaos monkey use it).
    for port in [base + 1, base + 2, base + 3] {
        let faults = get_json(&client, format!("http://127.0.0.1:{port}/chaos/faults")).await;
        assert!(faults["faults"].is_array(), "{port}: {faults}");
    }

    // A second `up` changes nothing.
    let again = ok(&dir, &up_args).await;
    assert_eq!(pids(&again), started, "the same processes");

    ok(&dir, &["stop", "llm_service_1"]).await;
    let status = text(&lab(&dir, &["status"]).await);
    assert_eq!(state_of(&status, "llm_service_1"), "stopped", "{status}");

    // Both primaries down: the secondary tier answers, and says so.
    ok(&dir, &["stop", "llm_service_2"]).await;
    let answer = secondary_answer(&client, base).await;
    assert_eq!(answer["data"]["fallback_used"], true, "{answer}");
    assert_eq!(answer["data"]["fallback_type"], "secondary", "{answer}");
    ok(&dir, &["start", "llm_service_1"]).await;
    ok(&dir, &["start", "llm_service_2"]).await;

    ok(&dir, &["restart", "llm_service_3"]).await;
    let status = text(&lab(&dir, &["status"]).await);
    assert_eq!(state_of(&status, "llm_service_3"), "healthy", "{status}");

    ok(&dir, &["kill", "llm_service_2"]).await;
    let status = text(&lab(&dir, &["status"]).await);
    assert_eq!(state_of(&status, "llm_service_2"), "stopped", "{status}");
    ok(&dir, &["restart", "llm_service_2"]).await;

    ok(&dir, &["pause", "chaos_monkey"]).await;
    let status = text(&lab(&dir, &["status"]).await);
    assert_eq!(state_of(&status, "chaos_monkey"), "paused", "{status}");

    let logs = text(&lab(&dir, &["logs", "api_gateway", "-n", "500"]).await);
    assert!(logs.contains("listening"), "{logs}");
    let unknown = lab(&dir, &["stop", "no_such_service"]).await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("unknown service"),
        "{}",
        text(&unknown)
    );

    // A pid file left by a crash, pointing at a process that is not ours: never signalled.
    let final_pids = pids(&text(&lab(&dir, &["status"]).await));
    std::fs::write(dir.join("pids/llm_service_1.pid"), "1\n").unwrap();
    let status = text(&lab(&dir, &["status"]).await);
    assert_eq!(
        state_of(&status, "llm_service_1"),
        "stopped",
        "stale: {status}"
    );

    ok(&dir, &["down"]).await;
    for (name, pid) in final_pids.iter().chain(&started) {
        if name == "llm_service_1" {
            // Its pid file was overwritten: lab no longer knows it; stop it here.
            if alive(pid) {
                let _ = std::process::Command::new("kill").arg(pid).status();
            }
            for _ in 0..200 {
                if !alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        // `lab down` returns once every process it stopped has exited.
        assert!(!alive(pid), "{name} (pid {pid}) still runs after lab down");
    }
    assert_eq!(
        taken_ports(base),
        Vec::<u16>::new(),
        "ports held after lab down"
    );
    let status = text(&lab(&dir, &["status"]).await);
    assert!(
        status.lines().skip(1).all(|l| l.contains("stopped")),
        "{status}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn up_refuses_a_port_in_use_before_starting_anything() {
    let dir = run_dir("busy");
    let _down = Down(dir.clone());
    let base = free_base_port(2);
    let _taken = TcpListener::bind(("127.0.0.1", base + 2)).unwrap();
    let up = lab(
        &dir,
        &["up", "--no-chaos", "--base-port", &base.to_string()],
    )
    .await;
    assert!(!up.status.success());
    let said = text(&up);
    assert!(
        said.contains(&format!("port {}", base + 2)) && said.contains("llm_service_2"),
        "{said}"
    );
    let status = text(&lab(&dir, &["status"]).await);
    assert!(
        status.lines().skip(1).all(|l| l.contains("stopped")),
        "nothing started: {status}"
    );
    let down = lab(&dir, &["down"]).await;
    assert!(down.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn commands_without_a_stack_say_so() {
    let dir = run_dir("none");
    let status = lab(&dir, &["status"]).await;
    assert!(!status.status.success());
    assert!(text(&status).contains("lab up"), "{}", text(&status));
    let down = lab(&dir, &["down"]).await;
    assert!(down.status.success(), "down with nothing to stop is fine");
}

/// A directory holding only `kill` (which `lab` signals with): a PATH without redis-server.
fn path_without_redis_server(tag: &str) -> PathBuf {
    let bin = run_dir(&format!("{tag}-bin"));
    std::fs::create_dir_all(&bin).unwrap();
    let kill = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("kill"))
        .find(|candidate| candidate.is_file())
        .expect("kill is on PATH");
    std::os::unix::fs::symlink(kill, bin.join("kill")).unwrap();
    bin
}

#[tokio::test]
async fn without_redis_server_the_stack_runs_on_static_discovery() {
    let dir = run_dir("static");
    let _down = Down(dir.clone());
    let bin = path_without_redis_server("static");
    let base = free_base_port(3);
    let base_arg = base.to_string();
    let up = lab_command(&dir, &["up", "--base-port", &base_arg])
        .env("PATH", &bin)
        .output()
        .await
        .unwrap();
    let printed = text(&up);
    assert!(up.status.success(), "lab up failed:\n{printed}");
    let mode = printed
        .lines()
        .find(|l| l.starts_with("mode:"))
        .unwrap_or("");
    assert!(
        mode.contains("no Redis")
            && mode.contains("redis-server is not on PATH")
            && mode.contains("no secondary tier"),
        "one line says which mode and why:\n{printed}"
    );
    for name in [
        "llm_service_1",
        "llm_service_2",
        "api_gateway",
        "chaos_monkey",
    ] {
        assert_eq!(state_of(&printed, name), "healthy", "{name}:\n{printed}");
    }
    assert_eq!(state_of(&printed, "redis"), "absent", "{printed}");
    // Without a registry the secondary could not say its tier: it is not started.
    assert_eq!(state_of(&printed, "llm_service_3"), "absent", "{printed}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stack.json")).unwrap()).unwrap();
    for service in state["services"].as_array().unwrap() {
        assert!(service["env"].get("REDIS_URL").is_none(), "{service}");
    }
    assert!(!taken_ports(base).contains(&(base + 379)), "no Redis port");

    // The gateway was given both primaries and answers from them, not from a fallback.
    let client = reqwest::Client::new();
    let health = get_json(&client, format!("http://127.0.0.1:{base}/health")).await;
    let mut urls: Vec<String> = health["service_discovery"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap().trim_end_matches('/').to_owned())
        .collect();
    urls.sort();
    let expected = [1, 2].map(|o| format!("http://127.0.0.1:{}", base + o));
    assert_eq!(urls, expected, "{health}");
    assert_served_by_an_upstream(&client, base, "hello static lab").await;

    let down = lab_command(&dir, &["down"])
        .env("PATH", &bin)
        .output()
        .await
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    for (name, pid) in pids(&printed) {
        assert!(!alive(&pid), "{name} (pid {pid}) still runs after lab down");
    }
    assert_eq!(
        taken_ports(base),
        Vec::<u16>::new(),
        "ports held after lab down"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&bin).ok();
}
