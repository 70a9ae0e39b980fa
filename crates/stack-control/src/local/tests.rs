//! Tests of the local stack, with `sleep`, `sh` and `python3` as its services.

use std::collections::BTreeMap;

use super::process::state_letter;
use super::*;

fn sleeper(dir: &Path, name: &str) -> StackFile {
    StackFile {
        base_port: 0,
        services: vec![ServiceSpec {
            name: name.to_owned(),
            program: PathBuf::from("sleep"),
            args: vec!["30".to_owned()],
            env: BTreeMap::from([("SOME".to_owned(), dir.display().to_string())]),
            port: None,
            url: None,
            health: Health::Alive,
        }],
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stack-control-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn a_service_starts_pauses_resumes_and_stops_and_its_pid_file_follows() {
    let dir = temp_dir("cycle");
    let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
    let reopened = LocalStack::open(&dir).unwrap();
    assert_eq!(reopened.file(), stack.file());

    stack.start("napper").await.unwrap();
    let pid = stack.pid("napper").unwrap().expect("running");
    let status = stack.status().await.unwrap();
    assert_eq!(status[0].state, RunState::Healthy);
    assert_eq!(status[0].pid, Some(pid));

    stack.pause("napper").await.unwrap();
    assert_eq!(stack.status().await.unwrap()[0].state, RunState::Paused);
    stack.resume("napper").await.unwrap();

    // Another controller (the suite, say) sees and stops the same process.
    reopened.stop("napper").await.unwrap();
    assert_eq!(stack.pid("napper").unwrap(), None);
    assert!(!dir.join("pids/napper.pid").exists());
    assert_eq!(stack.status().await.unwrap()[0].state, RunState::Stopped);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_stale_pid_file_is_never_signalled_and_is_removed() {
    let dir = temp_dir("stale");
    let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
    // Our own pid: alive, but not a `sleep` process.
    std::fs::write(
        dir.join("pids/napper.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    assert_eq!(stack.pid("napper").unwrap(), None);
    assert!(!dir.join("pids/napper.pid").exists());
    stack.stop("napper").await.unwrap(); // nothing to stop, and we are still alive
    std::fs::write(dir.join("pids/napper.pid"), "not a pid").unwrap();
    assert_eq!(stack.pid("napper").unwrap(), None);

    // The right program under the right pid, but started at another time: a reused pid.
    stack.start("napper").await.unwrap();
    let pid = stack.pid("napper").unwrap().unwrap();
    let line = std::fs::read_to_string(dir.join("pids/napper.pid")).unwrap();
    let id = ProcessId::parse(&line).unwrap();
    assert_eq!(id.pid, pid);
    let older = ProcessId {
        start_time: id.start_time.saturating_sub(1),
        ..id.clone()
    };
    std::fs::write(dir.join("pids/napper.pid"), older.to_line()).unwrap();
    assert_eq!(
        stack.pid("napper").unwrap(),
        None,
        "not the process we started"
    );
    std::fs::write(dir.join("pids/napper.pid"), id.to_line()).unwrap();
    stack.kill("napper").await.unwrap();
    assert_eq!(stack.pid("napper").unwrap(), None);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_taken_port_fails_up_before_anything_starts() {
    let dir = temp_dir("port");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut file = sleeper(&dir, "first");
    let mut second = file.services[0].clone();
    second.name = "second".to_owned();
    second.port = Some(port);
    file.services.push(second);
    let stack = LocalStack::create(&dir, file).unwrap();
    let error = stack.up().await.unwrap_err();
    assert!(
        matches!(error, ControlError::PortInUse { port: p, ref service } if p == port && service == "second"),
        "{error}"
    );
    assert_eq!(stack.pid("first").unwrap(), None, "nothing started");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_service_that_dies_at_once_fails_with_its_log() {
    let dir = temp_dir("dies");
    let mut file = sleeper(&dir, "crasher");
    file.services[0].program = PathBuf::from("sh");
    file.services[0].args = vec!["-c".into(), "echo broken config >&2; exit 3".into()];
    file.services[0].health = Health::Http {
        url: "http://127.0.0.1:9/health".into(),
    };
    let stack = LocalStack::create(&dir, file).unwrap();
    let error = stack.start("crasher").await.unwrap_err().to_string();
    assert!(error.contains("broken config"), "{error}");
    assert!(stack.start("nobody").await.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn starting_a_paused_service_resumes_it_and_two_starts_spawn_one_process() {
    let dir = temp_dir("twice");
    let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
    let other = LocalStack::open(&dir).unwrap();
    let (a, b) = tokio::join!(stack.start("napper"), other.start("napper"));
    a.unwrap();
    b.unwrap();
    let pid = stack.pid("napper").unwrap().unwrap();
    stack.pause("napper").await.unwrap();
    stack.start("napper").await.unwrap();
    assert_eq!(stack.pid("napper").unwrap(), Some(pid), "the same process");
    assert_eq!(stack.status().await.unwrap()[0].state, RunState::Healthy);
    stack.down().await.unwrap();
    // Only one `sleep 30` was ever started from this directory's spec.
    let strays = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.contains(&format!("SOME={}", dir.display())))
                && process_runs(*p, Path::new("sleep"))
        })
        .count();
    assert_eq!(strays, 0, "nothing left running");
    assert!(!dir.join("pids/napper.lock").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_state_letter_survives_odd_process_names() {
    assert!(matches!(process_state(std::process::id()), Some('R' | 'S')));
    assert_eq!(process_state(u32::MAX), None);
}

/// A server whose first thread ends on SIGTERM while another keeps its port a while longer
/// (as a multi-threaded server's can): `/proc/<pid>/stat` says zombie at once, the port is
/// still taken.
const LINGERER: &str = r#"
import ctypes, os, signal, socket, sys, threading, time
def linger():
    time.sleep(1.5)
    os._exit(0)
def on_term(*_):
    threading.Thread(target=linger).start()
    ctypes.CDLL(None).pthread_exit(None)
signal.signal(signal.SIGTERM, on_term)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
while True:
    time.sleep(1)
"#;

/// The threads of `pid` that have not exited.
fn live_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |threads| {
        threads
            .filter_map(Result::ok)
            .filter(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                !matches!(state_letter(&stat), None | Some('Z' | 'X'))
            })
            .count()
    })
}

#[tokio::test]
async fn down_returns_once_every_process_it_stopped_has_exited_and_its_port_is_free() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    let python = PathBuf::from(String::from_utf8(python.stdout).unwrap().trim());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("linger");
    let mut file = sleeper(&dir, "napper");
    file.services.push(ServiceSpec {
        name: "lingerer".to_owned(),
        program: python,
        args: vec!["-c".into(), LINGERER.into(), port.to_string()],
        env: BTreeMap::new(),
        port: Some(port),
        url: None,
        health: Health::Alive,
    });
    let stack = LocalStack::create(&dir, file).unwrap();
    stack.up().await.unwrap();
    let pids = [
        stack.pid("napper").unwrap().expect("napper runs"),
        stack.pid("lingerer").unwrap().expect("lingerer runs"),
    ];
    let listening = Instant::now() + Duration::from_secs(10);
    while !port_in_use(port) && Instant::now() < listening {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(port_in_use(port), "the lingerer listens on {port}");

    stack.down().await.unwrap();
    for pid in pids {
        assert_eq!(live_threads(pid), 0, "pid {pid} still runs after down");
    }
    assert!(!port_in_use(port), "port {port} is still taken after down");
    assert_eq!(stack.status().await.unwrap()[1].state, RunState::Stopped);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_services_log_is_its_log_file_and_an_unknown_service_is_an_error() {
    let dir = temp_dir("logs");
    let stack = LocalStack::create(&dir, sleeper(&dir, "napper")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(stack.log_path("napper"), "first\nsecond\n").unwrap();

    assert_eq!(stack.logs("napper").await.unwrap(), "first\nsecond\n");
    assert!(matches!(
        stack.logs("grafana").await,
        Err(ControlError::UnknownService(s)) if s == "grafana"
    ));
    std::fs::remove_dir_all(&dir).ok();
}
