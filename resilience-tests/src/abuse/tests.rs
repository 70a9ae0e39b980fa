//! The pure parts: percentiles, pass rules, `/proc` parsing, worker lines, the cases.

use std::time::Duration;

use super::attacks::AttackKind;
use super::raw::status_of;
use super::rss::{listening_inodes, socket_inode, vm_rss_bytes};
use super::rules::{
    ClientFigures, Ending, EndingTally, grew_less_than_limit, latency_bar, percentile,
    queued_streams, rss_returned,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn percentiles_by_nearest_rank() {
    assert_eq!(percentile(&[], 99.0), None);
    let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
    assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
    assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
    assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
    assert_eq!(percentile(&samples, 0.0), Some(ms(1)));
    assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
}

#[test]
fn latency_bar_is_twice_idle_p99_at_least_50_ms() {
    assert_eq!(latency_bar(ms(10)), ms(50));
    assert_eq!(latency_bar(ms(40)), ms(80));
    assert_eq!(latency_bar(Duration::ZERO), ms(50));
}

#[test]
fn client_figures_and_their_problems() {
    let mut samples = vec![(true, ms(10)); 99];
    samples.push((false, ms(5000)));
    let figures = ClientFigures::from_samples(&samples);
    assert_eq!((figures.sent, figures.ok), (100, 99));
    assert!((figures.success_pct - 99.0).abs() < 1e-9);
    assert!(figures.problems(None).is_empty(), "99 % is enough");
    assert_eq!(figures.p99_ms, 10.0);
    assert!(figures.problems(Some(ms(50))).is_empty());

    samples.push((false, ms(5000)));
    let worse = ClientFigures::from_samples(&samples);
    let problems = worse.problems(Some(ms(50)));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("success"), "{problems:?}");
    assert!(problems[1].contains("p99"), "{problems:?}");

    let nothing = ClientFigures::from_samples(&[]);
    assert_eq!(nothing.problems(None).len(), 1);
}

#[test]
fn endings_are_judged_against_the_limit_and_the_statuses() {
    let limit = Duration::from_secs(13);
    let endings = [
        Ending::Answered(408, Duration::from_secs(10)),
        Ending::Closed(Duration::from_secs(11)),
        Ending::Answered(408, Duration::from_secs(20)),
        Ending::Answered(413, Duration::from_secs(1)),
        Ending::StillOpen,
        Ending::NotOpened,
    ];
    let tally = EndingTally::of(&endings, limit, &[408]);
    assert_eq!(tally.ended_in_time, 2);
    assert_eq!((tally.answered, tally.closed), (1, 1));
    assert_eq!(tally.late, 1);
    assert_eq!(tally.wrong_status, 1);
    assert_eq!(tally.still_open, 1);
    assert_eq!(tally.not_opened, 1);
    assert_eq!(tally.slowest_end_ms, 20_000);
    assert_eq!(tally.problems("slow bodies", limit).len(), 3);

    let good = EndingTally::of(&endings[..2], limit, &[408]);
    assert!(good.problems("slow bodies", limit).is_empty());
    let refused = EndingTally::of(&[Ending::NotOpened], limit, &[408]);
    assert!(
        refused.problems("x", limit).is_empty(),
        "refusing to open is a defence"
    );
}

#[test]
fn rss_rules() {
    const MIB: u64 = 1024 * 1024;
    // Small processes: 8 MiB of room.
    assert!(rss_returned(20 * MIB, 28 * MIB));
    assert!(!rss_returned(20 * MIB, 29 * MIB));
    // Large ones: 10 %.
    assert!(rss_returned(200 * MIB, 220 * MIB));
    assert!(!rss_returned(200 * MIB, 221 * MIB));
    assert!(rss_returned(200 * MIB, 100 * MIB), "shrinking is fine");
    assert!(grew_less_than_limit(100 * MIB, 119 * MIB));
    assert!(!grew_less_than_limit(100 * MIB, 120 * MIB));
    assert!(grew_less_than_limit(100 * MIB, 50 * MIB));
}

#[test]
fn proc_net_tcp_listeners() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4650 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   3: 0100007F:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
";
    // 0x4650 = 18000: the LISTEN socket only, not the established one, not inode 0.
    assert_eq!(listening_inodes(table, 18000), vec![123_456]);
    assert_eq!(listening_inodes(table, 8080), vec![999]);
    assert!(listening_inodes(table, 1).is_empty());
    let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:4650 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
";
    assert_eq!(listening_inodes(table6, 18000), vec![4242]);
    assert!(listening_inodes("garbage\nmore garbage", 18000).is_empty());
}

#[test]
fn proc_links_and_status() {
    assert_eq!(socket_inode("socket:[123456]"), Some(123_456));
    assert_eq!(socket_inode("pipe:[123456]"), None);
    assert_eq!(socket_inode("/dev/null"), None);
    let status = "Name:\tgateway\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
    assert_eq!(vm_rss_bytes(status), Some(20480 * 1024));
    assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
}

#[test]
fn status_lines() {
    assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
    assert_eq!(status_of(b"HTTP/1.0 431 x\r\n"), Some(431));
    assert_eq!(status_of(b"SSH-2.0\r\n"), None);
    assert_eq!(status_of(b""), None);
}

#[test]
fn worker_lines() {
    use super::attacks::idle::{parse_opened, parse_still_open, per_worker_count};
    assert_eq!(parse_opened("opened 4990 failed 10"), Some((4990, 10)));
    assert_eq!(parse_opened("opened x failed 1"), None);
    assert_eq!(parse_still_open("still-open 12"), Some(12));
    assert_eq!(parse_still_open("nope"), None);
    assert_eq!(per_worker_count(20_000), 5_000);
    assert_eq!(per_worker_count(1024), 960);
    assert_eq!(per_worker_count(10), 1);
}

#[test]
fn redis_info_used_memory() {
    use super::attacks::oversized::used_memory;
    let info = "$100\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
    assert_eq!(used_memory(info), Some(1_048_576));
    assert_eq!(
        used_memory("$100\r\n# Memory\r\nused_memory:10"),
        None,
        "incomplete line"
    );
}

#[test]
fn malformed_cases_are_all_invalid_json_requests() {
    use super::attacks::malformed::cases;
    use super::target::Api;
    for api in [Api::Lab, Api::Openai] {
        let all = cases(api, br#"{"prompt":"hi"}"#);
        assert!(all.len() >= 15);
        for case in &all {
            let json = case.content_type == Some("application/json");
            let parses = serde_json::from_slice::<llm_api::generate::GenerateRequest>(&case.body)
                .is_ok()
                || serde_json::from_slice::<llm_api::openai::ChatCompletionRequest>(&case.body)
                    .is_ok();
            assert!(
                !(json && parses) || case.name == "duplicate keys",
                "{}: a valid JSON request",
                case.name
            );
        }
    }
}

#[test]
fn every_attack_has_a_name() {
    let names: Vec<&str> = AttackKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(
        names,
        [
            "slowloris",
            "slow-bodies",
            "slow-h2",
            "idle",
            "oversized",
            "malformed",
            "headers"
        ]
    );
}

#[test]
fn presets_and_flags_over_them() {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: super::AbuseArgs,
    }
    let parse = |extra: &[&str]| {
        let mut argv = vec!["abuse", "--target", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).map(|wrapper| super::sizes(&wrapper.args))
    };
    let Ok((small, name)) = parse(&[]) else {
        unreachable!("the defaults parse")
    };
    assert_eq!(name, "small");
    assert_eq!(
        (small.slowloris, small.slow_bodies, small.idle),
        (20, 20, 500)
    );
    let Ok((full, name)) = parse(&["--size", "full"]) else {
        unreachable!("--size full parses")
    };
    assert_eq!(name, "full");
    assert_eq!(
        (
            full.slow_bodies,
            full.h2_streams,
            full.idle,
            full.oversized,
            full.idle_settle_s
        ),
        (200, 1000, 15_000, 1200, 60)
    );
    let Ok((custom, name)) = parse(&["--size", "full", "--idle", "10"]) else {
        unreachable!("--idle parses")
    };
    assert_eq!(name, "custom");
    assert_eq!((custom.idle, custom.slow_bodies), (10, 200));
    assert!(parse(&["--only", "malformed,headers"]).is_ok());
    assert!(parse(&["--only", "nonsense"]).is_err());
}

#[test]
fn streams_still_open_are_queued_only_when_others_ended_in_time() {
    let limit = ms(10_000);
    let held = [Ending::StillOpen, Ending::StillOpen];
    let mut nothing_ended = EndingTally::of(&held, limit, &[408]);
    assert_eq!(queued_streams(&mut nothing_ended), 0);
    assert_eq!(nothing_ended.still_open, 2, "held forever: still failures");
    assert!(!nothing_ended.problems("streams", limit).is_empty());

    let waves = [
        Ending::Answered(408, ms(9_900)),
        Ending::StillOpen,
        Ending::StillOpen,
    ];
    let mut queued = EndingTally::of(&waves, limit, &[408]);
    assert_eq!(queued_streams(&mut queued), 2);
    assert_eq!(queued.still_open, 0);
    assert!(queued.problems("streams", limit).is_empty());

    let late = [Ending::Answered(408, ms(12_000)), Ending::StillOpen];
    let mut late = EndingTally::of(&late, limit, &[408]);
    assert_eq!(
        queued_streams(&mut late),
        0,
        "a late end is no proof of a deadline"
    );
}
