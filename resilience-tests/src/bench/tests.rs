//! The pure parts: aggregation, ratios, verdicts, the wrk line, `/proc` parsing, the
//! generated nginx configurations, key file and Lua script, the identity scenario's key and
//! Redis choice.

use std::path::{Path, PathBuf};

use super::Settings;
use super::confs::{
    COMPLETION_JSON, HopServer, IDENTITY_TIER_LIMIT, KeyEntry, api_keys_toml,
    fallback_gateway_toml, gateway_toml, hop_conf, identity_gateway_toml, lua_string, nginx_quote,
    toml_string, upstream_conf, wrk_script,
};
use super::goals::{Inputs, Verdict, goals};
use super::identity::{KEY_PREFIX, RedisPlan, api_key, redact_url, redis_plan, sha256_hex};
use super::memory::answer_complete;
use super::procfs::{cpu_us_per_request, parse_stat, vm_rss_bytes};
use super::report::{
    Machine, Memory, RedisSource, Report, Round, Scenario, ScenarioError, StreamResult, Target,
    ratios, render, stream_added, summarize,
};
use super::servers::{ensure_loopback, tail};
use super::stats::{Spread, added, growth_pct, ratio};
use super::stream::has_content;
use super::wrk::parse_output;

fn round(
    scenario: Scenario,
    concurrency: Option<u32>,
    target: Target,
    rps: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
) -> Round {
    Round {
        scenario,
        concurrency,
        rate: concurrency.is_none().then_some(2000.0),
        target,
        round: 1,
        requests: 1000,
        seconds: 1.0,
        rps,
        p50_us: p50,
        p90_us: p50,
        p99_us: p99,
        p999_us: p99,
        errors: 0,
        cpu_us_per_request: Some(cpu),
        rss_mib: Some(10.0),
    }
}

#[test]
fn spread_is_the_median_with_min_and_max() {
    assert_eq!(Spread::of(&[]), None);
    assert_eq!(Spread::of(&[f64::NAN]), None);
    let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
    let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
    assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
    assert_eq!(Spread::of(&[7.0, f64::INFINITY]).unwrap().median, 7.0);
    assert_eq!(odd.show(1), "2.0 [1.0–3.0]");
}

#[test]
fn ratios_and_differences_need_both_sides() {
    assert_eq!(ratio(Some(6.0), Some(3.0)), Some(2.0));
    assert_eq!(ratio(Some(6.0), Some(0.0)), None);
    assert_eq!(ratio(None, Some(3.0)), None);
    assert_eq!(added(Some(5.0), Some(3.0)), Some(2.0));
    assert_eq!(added(Some(5.0), None), None);
    assert_eq!(growth_pct(100.0, 105.0), Some(5.0));
    assert_eq!(growth_pct(0.0, 5.0), None);
}

#[test]
fn summaries_group_rounds_and_ratios_compare_medians() {
    let mut rounds = Vec::new();
    for n in 1..=3 {
        let f = f64::from(n);
        rounds.push(round(
            Scenario::Answer,
            Some(50),
            Target::Direct,
            100.0 * f,
            100.0,
            200.0,
            10.0,
        ));
        rounds.push(round(
            Scenario::Answer,
            Some(50),
            Target::Hop,
            80.0 * f,
            150.0,
            300.0,
            20.0,
        ));
        rounds.push(round(
            Scenario::Answer,
            Some(50),
            Target::Gateway,
            40.0 * f,
            300.0,
            700.0,
            50.0,
        ));
    }
    let summaries = summarize(&rounds);
    assert_eq!(summaries.len(), 3);
    let gateway = &summaries[2];
    assert_eq!(gateway.target, Target::Gateway);
    assert_eq!(gateway.rounds, 3);
    let rps = gateway.rps.unwrap();
    assert_eq!((rps.median, rps.min, rps.max), (80.0, 40.0, 120.0));
    let r = &ratios(&summaries)[0];
    assert_eq!(r.gateway_over_hop_rps, Some(0.5));
    assert_eq!(r.gateway_over_direct_rps, Some(0.4));
    assert_eq!(r.gateway_over_hop_cpu, Some(2.5));
    assert_eq!(r.gateway_over_direct_cpu, Some(5.0));
    assert_eq!(r.gateway_added_p50_us, Some(200.0));
    assert_eq!(r.gateway_added_p99_us, Some(500.0));
    assert_eq!(r.hop_added_p50_us, Some(50.0));
    assert_eq!(r.hop_added_p99_us, Some(100.0));
}

#[test]
fn a_group_of_one_target_has_no_ratios() {
    let rounds = [round(
        Scenario::FallbackCache,
        Some(1),
        Target::Gateway,
        1.0,
        1.0,
        1.0,
        1.0,
    )];
    assert!(ratios(&summarize(&rounds)).is_empty());
}

#[test]
fn stream_added_ttft_is_gateway_minus_direct_and_hop() {
    let s = |concurrency, target, ttft: f64| StreamResult {
        concurrency,
        target,
        streams: 10,
        errors: 0,
        ttft_p50_us: ttft,
        ttft_p99_us: ttft * 2.0,
        gap_p50_us: 2000.0,
        gap_p99_us: 3000.0,
    };
    let added = stream_added(&[
        s(1, Target::Direct, 1000.0),
        s(1, Target::Hop, 1200.0),
        s(1, Target::Gateway, 1500.0),
    ]);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].vs_direct_p50_us, Some(500.0));
    assert_eq!(added[0].vs_hop_p50_us, Some(300.0));
    assert_eq!(added[0].vs_direct_p99_us, Some(1000.0));
}

#[test]
fn verdicts_pass_fail_and_not_run() {
    let mut rounds = Vec::new();
    for (c, gw_p50) in [(Some(1), 140.0), (Some(50), 300.0), (None, 150.0)] {
        rounds.push(round(
            Scenario::Answer,
            c,
            Target::Direct,
            100.0,
            100.0,
            200.0,
            10.0,
        ));
        rounds.push(round(
            Scenario::Answer,
            c,
            Target::Hop,
            100.0,
            120.0,
            300.0,
            20.0,
        ));
        rounds.push(round(
            Scenario::Answer,
            c,
            Target::Gateway,
            70.0,
            gw_p50,
            900.0,
            30.0,
        ));
    }
    rounds.push(round(
        Scenario::FallbackCache,
        Some(1),
        Target::Gateway,
        1.0,
        100.0,
        800.0,
        1.0,
    ));
    rounds.push(round(
        Scenario::FallbackCache,
        None,
        Target::Gateway,
        1.0,
        100.0,
        1200.0,
        1.0,
    ));
    let summaries = summarize(&rounds);
    let ratios = ratios(&summaries);
    let memory = Memory {
        connections: 1000,
        gateway_idle_mib: Some(20.0),
        hop_idle_mib: Some(8.0),
        gateway_held_mib: Some(70.0),
        hop_held_mib: Some(12.0),
    };
    let failed = [ScenarioError {
        scenario: Scenario::FallbackTemplate,
        error: "no template header".into(),
    }];
    let ran = [
        Scenario::Answer,
        Scenario::Memory,
        Scenario::FallbackCache,
        Scenario::FallbackTemplate,
    ];
    let goals = goals(&Inputs {
        ran: &ran,
        failed: &failed,
        summaries: &summaries,
        ratios: &ratios,
        stream_added: &[],
        memory: Some(&memory),
        soak: None,
        identity_redis: None,
    });
    let verdict = |prefix: &str| {
        goals
            .iter()
            .find(|g| g.goal.starts_with(prefix))
            .map(|g| g.verdict)
            .unwrap()
    };
    assert_eq!(
        verdict("answer, c=50: gateway CPU"),
        Verdict::Pass,
        "{goals:#?}"
    ); // 1.5×
    assert_eq!(verdict("answer, c=50: gateway req/s"), Verdict::Pass); // 0.7×
    assert_eq!(verdict("answer, c=1"), Verdict::Pass); // +40 ≤ 2 × +20
    assert_eq!(verdict("answer, fixed rate"), Verdict::Fail); // +0.7 ms
    assert_eq!(verdict("memory: gateway RSS idle"), Verdict::Pass);
    assert_eq!(verdict("memory: gateway RSS holding"), Verdict::Fail);
    assert_eq!(verdict("soak"), Verdict::NotRun);
    assert_eq!(verdict("fallback-cache"), Verdict::Fail); // 1.2 ms at the fixed rate
    assert_eq!(verdict("fallback-template"), Verdict::Fail);
    assert!(
        goals
            .iter()
            .any(|g| g.measured.contains("no template header"))
    );
    assert_eq!(verdict("stream"), Verdict::NotRun);
}

#[test]
fn a_goal_whose_load_was_not_run_says_so() {
    let rounds = [
        round(
            Scenario::Answer,
            Some(1),
            Target::Direct,
            100.0,
            100.0,
            200.0,
            10.0,
        ),
        round(
            Scenario::Answer,
            Some(1),
            Target::Gateway,
            100.0,
            100.0,
            200.0,
            10.0,
        ),
    ];
    let summaries = summarize(&rounds);
    let ratios = ratios(&summaries);
    let goals = goals(&Inputs {
        ran: &[Scenario::Answer],
        failed: &[],
        summaries: &summaries,
        ratios: &ratios,
        stream_added: &[],
        memory: None,
        soak: None,
        identity_redis: None,
    });
    let cpu = &goals[0];
    assert_eq!(cpu.verdict, Verdict::NotRun);
    assert!(cpu.measured.contains("c=50"), "{cpu:?}");
}

#[test]
fn the_wrk_line_is_parsed_and_a_malformed_one_refused() {
    let stdout = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n\
        BENCH_JSON {\"requests\":1234,\"duration_us\":1000456,\"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":3},\
        \"latency\":{\"mean\":101.500,\"p50\":95,\"p90\":150,\"p99\":300,\"p999\":900,\"max\":1500}}\n";
    let summary = parse_output(stdout).unwrap();
    assert_eq!(summary.requests, 1234);
    assert_eq!(summary.duration_us, 1_000_456);
    assert_eq!(summary.errors.total(), 6);
    assert_eq!(summary.latency.p999, 900.0);
    assert!((summary.latency.mean - 101.5).abs() < 1e-9);

    let malformed = parse_output("BENCH_JSON {\"requests\":12,").unwrap_err();
    assert!(
        format!("{malformed:#}").contains("not valid"),
        "{malformed:#}"
    );
    let missing = parse_output("Running 1s test\n").unwrap_err();
    assert!(format!("{missing:#}").contains("BENCH_JSON"), "{missing:#}");
}

#[test]
fn proc_stat_is_read_after_the_last_parenthesis() {
    // comm "nginx: worker (x) )" holds spaces and parentheses.
    let stat = "4242 (nginx: worker (x) )) S 4241 4241 4241 0 -1 4194624 100 0 0 0 \
        250 75 0 0 20 0 1 0 12345 10000000 500 18446744073709551615";
    let parsed = parse_stat(stat).unwrap();
    assert_eq!(parsed.ppid, 4241);
    assert_eq!(parsed.cpu_ticks, 325);
    assert_eq!(parse_stat("12 (short) S 1"), None);
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn rss_and_cpu_per_request() {
    let status = "Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
    assert_eq!(vm_rss_bytes(status), Some(2048 * 1024));
    assert_eq!(vm_rss_bytes("Name: x\n"), None);
    // 50 ticks at 100/s = 0.5 s over 10,000 requests = 50 µs each.
    assert_eq!(cpu_us_per_request(100, 150, 100, 10_000), Some(50.0));
    assert_eq!(cpu_us_per_request(100, 150, 100, 0), None);
}

#[test]
fn the_upstream_nginx_answers_a_valid_completion() {
    let completion: llm_api::openai::ChatCompletion =
        serde_json::from_str(COMPLETION_JSON).unwrap();
    assert_eq!(completion.object, "chat.completion");
    assert_eq!(completion.model, "bench-model");
    assert_eq!(completion.choices[0].finish_reason.as_deref(), Some("stop"));
    let words = completion.choices[0]
        .message
        .content
        .as_deref()
        .unwrap()
        .split_whitespace()
        .count();
    assert!((25..=40).contains(&words), "{words} words");
    assert!(!COMPLETION_JSON.contains(['$', '\'']));

    let conf = upstream_conf(Path::new("/tmp/b e"), "up", 4100);
    for needle in [
        "daemon off;",
        "master_process on;",
        "worker_processes auto;",
        "access_log off;",
        "keepalive_requests 100000;",
        "listen 127.0.0.1:4100;",
        "default_type application/json;",
        "location = /v1/chat/completions",
        "location = /health",
        "location = /v1/models",
        "pid '/tmp/b e/up.pid';",
        "error_log '/tmp/b e/up.error.log' warn;",
        "client_body_temp_path '/tmp/b e/up-tmp/client_body';",
    ] {
        assert!(conf.contains(needle), "{needle} missing from:\n{conf}");
    }
    assert!(conf.contains(&format!("return 200 {};", nginx_quote(COMPLETION_JSON))));
    assert_eq!(
        conf.matches('{').count(),
        conf.matches('}').count(),
        "{conf}"
    );
}

#[test]
fn nginx_strings_escape_quotes_and_backslashes() {
    assert_eq!(nginx_quote("a'b\\c"), "'a\\'b\\\\c'");
    assert_eq!(nginx_quote("{\"x\":1}"), "'{\"x\":1}'");
}

#[test]
fn the_hop_proxies_over_kept_alive_connections() {
    let conf = hop_conf(
        Path::new("/w"),
        "hop",
        &[
            HopServer {
                name: "answer".into(),
                listen: 5001,
                upstream: 4001,
                streaming: false,
            },
            HopServer {
                name: "stream".into(),
                listen: 5002,
                upstream: 4002,
                streaming: true,
            },
        ],
    );
    for needle in [
        "upstream answer {",
        "server 127.0.0.1:4001;",
        "keepalive 64;",
        "listen 127.0.0.1:5001;",
        "proxy_pass http://answer;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "listen 127.0.0.1:5002;",
        "proxy_pass http://stream;",
    ] {
        assert!(conf.contains(needle), "{needle} missing from:\n{conf}");
    }
    assert_eq!(conf.matches("proxy_buffering off;").count(), 1, "{conf}");
    assert_eq!(
        conf.matches('{').count(),
        conf.matches('}').count(),
        "{conf}"
    );
}

#[test]
fn the_gateway_files_parse_as_toml() {
    let file: toml::Value = toml::from_str(&gateway_toml(4001, 4002)).unwrap();
    let bench = &file["routes"]["bench"]["targets"][0];
    assert_eq!(bench["url"].as_str(), Some("http://127.0.0.1:4001/v1"));
    assert_eq!(bench["model"].as_str(), Some("bench-model"));
    assert_eq!(bench["name"].as_str(), Some("nginx"));
    assert_eq!(
        file["routes"]["bench-stream"]["targets"][0]["url"].as_str(),
        Some("http://127.0.0.1:4002/v1")
    );
    let open: toml::Value = toml::from_str(&fallback_gateway_toml(4999, 600_000)).unwrap();
    let target = &open["routes"]["bench"]["targets"][0];
    assert_eq!(target["breaker"]["failure_threshold"].as_integer(), Some(1));
    assert_eq!(
        target["breaker"]["recovery_timeout_ms"].as_integer(),
        Some(600_000)
    );
    assert_eq!(
        open["pool_breaker"]["recovery_timeout_ms"].as_integer(),
        Some(600_000)
    );
}

#[test]
fn lua_strings_escape_the_body() {
    assert_eq!(lua_string(r#"{"a":"b"}"#), r#""{\"a\":\"b\"}""#);
    assert_eq!(
        lua_string("back\\slash\nnew\rline\ttab"),
        r#""back\\slash\nnew\rline\ttab""#
    );
    assert_eq!(lua_string("bell\u{7}"), r#""bell\007""#);
    assert_eq!(lua_string("naïve"), "\"naïve\"");
    let script = wrk_script(
        "POST",
        r#"{"prompt":"say \"hi\""}"#,
        "application/json",
        &[],
    );
    assert!(script.contains(r#"wrk.method = "POST""#), "{script}");
    assert!(
        script.contains(r#"wrk.body = "{\"prompt\":\"say \\\"hi\\\"\"}""#),
        "{script}"
    );
    assert!(
        script.contains(r#"wrk.headers["Content-Type"] = "application/json""#),
        "{script}"
    );
    assert!(
        script.contains("function done(summary, latency, requests)"),
        "{script}"
    );
    assert!(script.contains("BENCH_JSON "), "{script}");
    assert!(script.contains("latency:percentile(99.9)"), "{script}");
}

#[test]
fn only_loopback_targets_are_allowed() {
    assert!(ensure_loopback("http://127.0.0.1:8000/v1/chat/completions").is_ok());
    assert!(ensure_loopback("http://127.0.0.1").is_ok());
    assert!(ensure_loopback("http://10.0.0.1:8000/").is_err());
    assert!(ensure_loopback("http://127.0.0.1.evil.example:80/").is_err());
    assert!(ensure_loopback("https://127.0.0.1:8000/").is_err());
}

#[test]
fn an_answer_is_complete_by_length_or_last_chunk() {
    assert_eq!(
        answer_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5"),
        None
    );
    assert_eq!(
        answer_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"),
        Some(false)
    );
    assert_eq!(
        answer_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde"),
        Some(true)
    );
    assert_eq!(
        answer_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
        Some(false)
    );
    assert_eq!(
        answer_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        Some(true)
    );
}

#[test]
fn content_deltas_are_told_from_role_chunks() {
    assert!(!has_content(
        b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
    ));
    assert!(!has_content(
        b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
    ));
    assert!(has_content(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
    ));
    assert!(!has_content(b"data: [DONE]\n\n"));
}

#[test]
fn a_log_tail_keeps_the_last_lines() {
    assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
    assert_eq!(tail("a", 5), "a");
    assert_eq!(tail("", 5), "");
}

/// Rounds of the identity scenario at `concurrency`: the baseline at 1000 req/s and 10 µs
/// CPU per request, gateway+auth at `auth_rps`, gateway+redis at `redis_rps` when given.
fn identity_rounds(concurrency: Option<u32>, auth_rps: f64, redis_rps: Option<f64>) -> Vec<Round> {
    let mut rounds = vec![
        round(
            Scenario::Identity,
            concurrency,
            Target::Gateway,
            1000.0,
            100.0,
            200.0,
            10.0,
        ),
        round(
            Scenario::Identity,
            concurrency,
            Target::GatewayAuth,
            auth_rps,
            110.0,
            220.0,
            11.0,
        ),
    ];
    if let Some(rps) = redis_rps {
        rounds.push(round(
            Scenario::Identity,
            concurrency,
            Target::GatewayRedis,
            rps,
            150.0,
            300.0,
            15.0,
        ));
    }
    rounds
}

/// The identity goal over `rounds`, with `redis` as the scenario's Redis.
fn identity_goal(
    rounds: &[Round],
    failed: &[ScenarioError],
    redis: Option<&RedisSource>,
) -> (Verdict, String) {
    let summaries = summarize(rounds);
    let ratios = ratios(&summaries);
    let goals = goals(&Inputs {
        ran: &[Scenario::Identity],
        failed,
        summaries: &summaries,
        ratios: &ratios,
        stream_added: &[],
        memory: None,
        soak: None,
        identity_redis: redis,
    });
    let goal = goals
        .iter()
        .find(|g| g.goal.starts_with("identity, c=50"))
        .unwrap();
    (goal.verdict, goal.measured.clone())
}

#[test]
fn identity_ratios_compare_each_identity_gateway_with_the_baseline() {
    let r = &ratios(&summarize(&identity_rounds(Some(50), 950.0, Some(800.0))))[0];
    assert_eq!(r.scenario, Scenario::Identity);
    assert_eq!(r.auth_over_gateway_rps, Some(0.95));
    assert_eq!(r.auth_over_gateway_cpu, Some(1.1));
    assert_eq!(r.redis_over_gateway_rps, Some(0.8));
    assert_eq!(r.redis_over_gateway_cpu, Some(1.5));
    // No hop or direct target in this scenario.
    assert_eq!(r.gateway_over_hop_rps, None);
    assert_eq!(r.gateway_added_p50_us, None);
}

#[test]
fn the_identity_goal_passes_at_nine_tenths_and_reports_redis_beside_it() {
    let private = RedisSource::Private {
        url: "redis://127.0.0.1:4000".into(),
    };
    let (verdict, measured) = identity_goal(
        &identity_rounds(Some(50), 900.0, Some(700.0)),
        &[],
        Some(&private),
    );
    assert_eq!(verdict, Verdict::Pass, "{measured}");
    assert!(
        measured.contains("gateway+auth/gateway 0.90× ≥ 0.9×"),
        "{measured}"
    );
    assert!(
        measured.contains("gateway+redis/gateway 0.70× (information, no goal)"),
        "{measured}"
    );

    let (verdict, measured) =
        identity_goal(&identity_rounds(Some(50), 899.0, None), &[], Some(&private));
    assert_eq!(verdict, Verdict::Fail, "{measured}");
    assert!(measured.contains("0.90× < 0.9×"), "{measured}");
    assert!(
        measured.contains("gateway+redis/gateway: no reading"),
        "{measured}"
    );
}

#[test]
fn the_identity_goal_says_why_redis_or_the_load_was_not_run() {
    let skipped = RedisSource::NotRun {
        reason: "no redis-server".into(),
    };
    let (verdict, measured) =
        identity_goal(&identity_rounds(Some(50), 990.0, None), &[], Some(&skipped));
    assert_eq!(verdict, Verdict::Pass, "{measured}");
    assert!(
        measured.contains("gateway+redis not run: no redis-server"),
        "{measured}"
    );

    let (verdict, measured) = identity_goal(&identity_rounds(Some(16), 990.0, None), &[], None);
    assert_eq!(verdict, Verdict::NotRun);
    assert!(measured.contains("c=50"), "{measured}");

    let failed = [ScenarioError {
        scenario: Scenario::Identity,
        error: "gateway-auth answered HTTP 200 to a request without a key".into(),
    }];
    let (verdict, measured) = identity_goal(&[], &failed, None);
    assert_eq!(verdict, Verdict::Fail);
    assert!(measured.contains("without a key"), "{measured}");

    let goals = goals(&Inputs {
        ran: &[Scenario::Answer],
        failed: &[],
        summaries: &[],
        ratios: &[],
        stream_added: &[],
        memory: None,
        soak: None,
        identity_redis: None,
    });
    let goal = goals
        .iter()
        .find(|g| g.goal.starts_with("identity"))
        .unwrap();
    assert_eq!(goal.verdict, Verdict::NotRun);
    assert_eq!(goal.measured, "not run (scenario identity)");
}

#[test]
fn identity_runs_after_answer_and_its_targets_are_named_for_the_json() {
    let at = |s| Scenario::ALL.iter().position(|x| *x == s).unwrap();
    assert_eq!(at(Scenario::Identity), at(Scenario::Answer) + 1);
    assert_eq!(Scenario::Identity.name(), "identity");
    for target in [Target::GatewayAuth, Target::GatewayRedis, Target::Gateway] {
        assert_eq!(
            serde_json::to_value(target).unwrap(),
            serde_json::json!(target.name())
        );
    }
    assert_eq!(Target::GatewayAuth.name(), "gateway+auth");
    assert_eq!(Target::GatewayRedis.name(), "gateway+redis");
    let skipped = RedisSource::NotRun {
        reason: "no redis-server".into(),
    };
    assert_eq!(
        serde_json::to_value(&skipped).unwrap(),
        serde_json::json!({"kind": "not-run", "reason": "no redis-server"})
    );
}

/// Settings for a rendered report.
fn settings() -> Settings {
    Settings {
        rounds: 1,
        duration_s: 1,
        concurrency: vec![50],
        rate: 200.0,
        streams: 1,
        scenarios: vec![Scenario::Identity],
        max_concurrent_requests: 1024,
        soak_s: 0,
        quick: false,
        strict: false,
        work_dir: PathBuf::from("/w"),
        json: PathBuf::from("/w/bench.json"),
        gateway_bin: PathBuf::from("gateway"),
        llm_service_bin: PathBuf::from("llm-service"),
        nginx: PathBuf::from("nginx"),
        wrk: PathBuf::from("wrk"),
        redis_server: None,
    }
}

/// The rendered report of `rounds` with `redis` as the identity scenario's Redis.
fn rendered(rounds: Vec<Round>, redis: RedisSource) -> String {
    let summaries = summarize(&rounds);
    let ratios = ratios(&summaries);
    render(&Report {
        machine: Machine {
            cores: 2,
            kernel: "6".into(),
            cpu_model: "cpu".into(),
            clk_tck: 100,
        },
        settings: settings(),
        servers: Vec::new(),
        rounds,
        summaries,
        ratios,
        streams: Vec::new(),
        stream_added: Vec::new(),
        memory: None,
        gateway_rss: None,
        soak: None,
        identity_redis: Some(redis),
        scenario_errors: Vec::new(),
        targets: Vec::new(),
    })
}

#[test]
fn the_identity_table_has_a_row_per_gateway_and_their_ratios() {
    let text = rendered(
        identity_rounds(Some(50), 950.0, Some(800.0)),
        RedisSource::Private {
            url: "redis://127.0.0.1:4000".into(),
        },
    );
    assert!(text.contains("identity · c=50 (wrk)"), "{text}");
    for target in ["gateway ", "gateway+auth ", "gateway+redis "] {
        assert!(text.contains(&format!("  {target}")), "{target}: {text}");
    }
    assert!(
        text.contains("gateway+auth/gateway: req/s ×0.95, CPU/req ×1.10"),
        "{text}"
    );
    assert!(
        text.contains("gateway+redis/gateway: req/s ×0.80, CPU/req ×1.50"),
        "{text}"
    );
    assert!(!text.contains("gateway/hop"), "{text}");
    assert!(
        text.contains("gateway+redis's Redis: a private redis-server (redis://127.0.0.1:4000)"),
        "{text}"
    );

    let text = rendered(
        identity_rounds(Some(50), 950.0, None),
        RedisSource::NotRun {
            reason: "no redis-server".into(),
        },
    );
    assert!(
        text.contains("gateway+redis/gateway: not run: no redis-server"),
        "{text}"
    );
}

#[test]
fn the_identity_wrk_script_sends_the_key() {
    let headers = [("Authorization".to_owned(), "Bearer gk_abc".to_owned())];
    let script = wrk_script("POST", "{}", "application/json", &headers);
    assert!(
        script.contains(r#"wrk.headers["Authorization"] = "Bearer gk_abc""#),
        "{script}"
    );
    assert!(
        script.contains(r#"wrk.headers["Content-Type"] = "application/json""#),
        "{script}"
    );
    let plain = wrk_script("POST", "{}", "application/json", &[]);
    assert!(!plain.contains("Authorization"), "{plain}");
    assert_eq!(plain.matches("wrk.headers[").count(), 1, "{plain}");
}

#[test]
fn the_key_file_holds_the_hash_of_a_fresh_looking_key() {
    // The SHA-256 test vector of "abc".
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let key = api_key("seed");
    assert!(key.starts_with(KEY_PREFIX), "{key}");
    let hex = &key[KEY_PREFIX.len()..];
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(api_key("seed"), api_key("other seed"));

    let hash = sha256_hex(&key);
    let text = api_keys_toml(&[KeyEntry {
        owner: "bench",
        tier: "bench",
        scopes: &["llm:generate"],
        sha256: &hash,
    }]);
    assert!(!text.contains(&key), "the file holds no key: {text}");
    let file: toml::Value = toml::from_str(&text).unwrap();
    let keys = file["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["owner"].as_str(), Some("bench"));
    assert_eq!(keys[0]["tier"].as_str(), Some("bench"));
    assert_eq!(
        keys[0]["scopes"].as_array().unwrap()[0].as_str(),
        Some("llm:generate")
    );
    assert_eq!(keys[0]["sha256"].as_str(), Some(hash.as_str()));
    let quoted = toml_string("a\"b\\c\u{1}");
    let parsed: toml::Table = toml::from_str(&format!("v = {quoted}")).unwrap();
    assert_eq!(parsed["v"].as_str(), Some("a\"b\\c\u{1}"));
}

#[test]
fn the_identity_gateways_have_the_routes_and_a_tier_never_reached() {
    let file: toml::Value = toml::from_str(&identity_gateway_toml(4001, 4002, "bench")).unwrap();
    assert_eq!(
        file["routes"]["bench"]["targets"][0]["url"].as_str(),
        Some("http://127.0.0.1:4001/v1")
    );
    let tier = &file["rate_limits"]["bench"];
    let limit = i64::from(IDENTITY_TIER_LIMIT);
    assert_eq!(tier["requests_per_minute"].as_integer(), Some(limit));
    assert_eq!(tier["burst"].as_integer(), Some(limit));
    // Far above anything two cores can send in a minute.
    const { assert!(IDENTITY_TIER_LIMIT >= 100_000_000) };
}

#[test]
fn redis_comes_from_the_environment_then_a_private_server_then_nowhere() {
    let exists = std::env::current_exe().unwrap();
    assert_eq!(
        redis_plan(Some("redis://127.0.0.1:6379".into()), Some(&exists)),
        RedisPlan::Environment("redis://127.0.0.1:6379".into())
    );
    assert_eq!(
        redis_plan(Some("  ".into()), Some(&exists)),
        RedisPlan::Private(exists.clone())
    );
    assert_eq!(
        redis_plan(None, None),
        RedisPlan::Skip("no redis-server".into())
    );
    let RedisPlan::Skip(reason) = redis_plan(None, Some(Path::new("/nonexistent/redis-server")))
    else {
        panic!("a missing redis-server is not started");
    };
    assert!(reason.contains("/nonexistent/redis-server"), "{reason}");
}

#[test]
fn a_redis_url_is_shown_without_its_credentials() {
    assert_eq!(
        redact_url("redis://:s3cret@10.0.0.5:6379/2"),
        "redis://***@10.0.0.5:6379/2"
    );
    assert_eq!(
        redact_url("rediss://user:p@ss@host:6380"),
        "rediss://***@host:6380"
    );
    assert_eq!(
        redact_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(
        redact_url("redis://host:6379/0?password=x@y"),
        "redis://host:6379/0?password=x@y"
    );
    assert_eq!(redact_url("s3cret"), "(not a URL)");
}

/// Rounds of the persistence scenario at c=50: the gateway (history and access log on) at
/// `on_rps`, gateway-quiet at 1000 req/s, gateway+db-down at 900 req/s with a p99 of 260 µs.
fn persistence_rounds(on_rps: f64) -> Vec<Round> {
    let at = |target, rps, p99, cpu| {
        round(
            Scenario::Persistence,
            Some(50),
            target,
            rps,
            100.0,
            p99,
            cpu,
        )
    };
    vec![
        at(Target::Gateway, on_rps, 200.0, 11.0),
        at(Target::GatewayQuiet, 1000.0, 180.0, 10.0),
        at(Target::GatewayDbDown, 900.0, 260.0, 12.0),
    ]
}

#[test]
fn the_persistence_scenario_compares_history_on_with_off_and_with_the_database_down() {
    let r = &ratios(&summarize(&persistence_rounds(950.0)))[0];
    assert_eq!(r.scenario, Scenario::Persistence);
    assert_eq!(r.gateway_over_quiet_rps, Some(0.95));
    assert_eq!(r.gateway_over_quiet_cpu, Some(1.1));
    assert_eq!(r.db_down_added_p99_us, Some(60.0));
    assert!(
        r.db_down_over_gateway_rps
            .is_some_and(|x| (x - 900.0 / 950.0).abs() < 1e-9)
    );
    for (target, name) in [
        (Target::GatewayQuiet, "gateway-quiet"),
        (Target::GatewayDbDown, "gateway+db-down"),
    ] {
        assert_eq!(target.name(), name);
        assert_eq!(
            serde_json::to_value(target).unwrap(),
            serde_json::json!(name)
        );
    }
    assert_eq!(Scenario::Persistence.name(), "persistence");

    let judged = |rounds: &[Round]| {
        let summaries = summarize(rounds);
        let ratios = ratios(&summaries);
        goals(&Inputs {
            ran: &[Scenario::Persistence],
            failed: &[],
            summaries: &summaries,
            ratios: &ratios,
            stream_added: &[],
            memory: None,
            soak: None,
            identity_redis: None,
        })
        .into_iter()
        .find(|g| g.goal.starts_with("persistence, c=50"))
        .unwrap()
    };
    let pass = judged(&persistence_rounds(950.0));
    assert_eq!(pass.verdict, Verdict::Pass, "{}", pass.measured);
    assert!(
        pass.measured.contains("gateway/gateway-quiet 0.95× ≥ 0.9×"),
        "{}",
        pass.measured
    );
    let fail = judged(&persistence_rounds(850.0));
    assert_eq!(fail.verdict, Verdict::Fail, "{}", fail.measured);

    let text = rendered(
        persistence_rounds(950.0),
        RedisSource::NotRun { reason: "-".into() },
    );
    assert!(text.contains("persistence · c=50 (wrk)"), "{text}");
    assert!(
        text.contains(
            "gateway/gateway-quiet (history + access log on vs off): req/s ×0.95, CPU/req ×1.10"
        ),
        "{text}"
    );
    assert!(
        text.contains("gateway+db-down/gateway: req/s ×0.95, p99 +60"),
        "{text}"
    );
}
