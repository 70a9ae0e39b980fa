//! Variables, flags and the file: defaults, precedence, every problem at once.

use std::time::Duration;

use clap::CommandFactory;
use llm_api::limits::InputLimits;

use super::{URLS, fields, from_env, problem, with_file};
use crate::config::{Args, LogFormat, Settings};

#[test]
fn the_seed_defaults_apply() {
    let s = from_env(&[URLS]).unwrap();
    assert_eq!(s.breakers.pool.failure_threshold, 5);
    assert_eq!(s.breakers.pool.recovery_timeout, Duration::from_secs(30));
    assert_eq!(s.max_concurrent_requests, 100);
    assert_eq!(s.request_timeout, Duration::from_secs(30));
    assert_eq!(s.per_try_timeout, Duration::from_secs(10));
    assert_eq!(s.port, 8000);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.health.interval, Duration::from_secs(5));
    assert_eq!(s.limits, InputLimits::with_max_tokens(4096));
    assert_eq!(s.limits.max_model_chars, 256);
    assert_eq!(s.limits.max_choices, 8);
    assert_eq!(s.cache.max_bytes, 64 << 20);
    assert_eq!(s.cache.max_entry_bytes, 256 << 10);
    assert_eq!(s.static_instances.len(), 1);
    assert_eq!(s.static_instances[0].url, "http://a:1");
    assert_eq!(s.retry_after_s(), 30);
}

#[test]
fn a_flag_and_its_variable_are_one_setting_and_the_flag_wins() {
    let by_variable = from_env(&[URLS, ("REQUEST_TIMEOUT", "7")]).unwrap();
    let by_flag = Settings::from_sources(["--request-timeout", "7"], &[URLS]).unwrap();
    assert_eq!(by_variable.request_timeout, Duration::from_secs(7));
    assert_eq!(by_variable, by_flag);
    let both =
        Settings::from_sources(["--request-timeout=9"], &[URLS, ("REQUEST_TIMEOUT", "7")]).unwrap();
    assert_eq!(both.request_timeout, Duration::from_secs(9));
}

#[test]
fn every_invalid_value_is_reported_at_once_each_naming_its_setting() {
    let problems = with_file(
        r#"
        colour = "blue"
        per_try_timeout_ms = "soon"
        [retry]
        max_atempts = 2
        [cache]
        ttl_s = 0
        [pool_breaker]
        success_threshold = 0
        [instance_breaker]
        failure_rate_threshold = 1.5
        [routes.a]
        targets = []
        "#,
        &[
            ("LLM_SERVICE_URLS", "ftp://x"),
            ("PORT", "eighty"),
            ("HOST", "localhost"),
            ("REQUEST_TIMEOUT", "0"),
            ("MAX_CONCURRENT_REQUESTS", "-1"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "a minute"),
            ("HEALTH_CHECK_PATH", "health"),
            ("HEALTH_CHECK_INTERVAL_MS", "1"),
            ("LOG_FORMAT", "xml"),
            ("STREAM_IDLE_TIMEOUT_MS", "0"),
        ],
    )
    .unwrap_err();
    let expected = [
        "LLM_SERVICE_URLS",
        "PORT",
        "HOST",
        "REQUEST_TIMEOUT",
        "MAX_CONCURRENT_REQUESTS",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        "HEALTH_CHECK_PATH",
        "HEALTH_CHECK_INTERVAL_MS",
        "LOG_FORMAT",
        "stream.idle_timeout_ms",
        "colour",
        "per_try_timeout_ms",
        "retry",
        "cache.ttl_s",
        "pool_breaker.success_threshold",
        "instance_breaker.failure_rate_threshold",
        "routes.a.targets",
    ];
    for field in expected {
        problem(&problems, field);
    }
    assert_eq!(
        problems.len(),
        expected.len(),
        "one problem per bad value: {problems:?}"
    );
    assert!(problem(&problems, "retry").message.contains("max_atempts"));
    assert!(problem(&problems, "PORT").message.contains("eighty"));
}

#[test]
fn something_to_route_to_is_required() {
    let problems = from_env(&[]).unwrap_err();
    assert_eq!(fields(&problems), ["LLM_SERVICE_URLS"]);
    assert!(from_env(&[("REDIS_URL", "redis://127.0.0.1:6379")]).is_ok());
    let problems = from_env(&[("REDIS_URL", "http://not-redis")]).unwrap_err();
    assert_eq!(fields(&problems), ["REDIS_URL"]);
}

#[test]
fn the_example_file_is_the_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/gateway.example.toml"
    );
    let with = from_env(&[URLS, ("GATEWAY_CONFIG", path)]).unwrap();
    assert_eq!(with, from_env(&[URLS]).unwrap());
}

#[test]
fn a_file_that_cannot_be_read_or_is_not_toml_names_gateway_config() {
    let problems = from_env(&[URLS, ("GATEWAY_CONFIG", "/nonexistent/gateway.toml")]).unwrap_err();
    assert_eq!(fields(&problems), ["GATEWAY_CONFIG"]);
    let problems = with_file("[retry\n", &[URLS]).unwrap_err();
    assert_eq!(fields(&problems), ["GATEWAY_CONFIG"]);
}

#[test]
fn variables_win_over_their_file_keys() {
    let file =
        "per_try_timeout_ms = 700\n[stream]\nfirst_token_timeout_ms = 800\nidle_timeout_ms = 900\n";
    let s = with_file(file, &[URLS]).unwrap();
    assert_eq!(s.per_try_timeout, Duration::from_millis(700));
    assert_eq!(s.first_token_timeout, Duration::from_millis(800));
    assert_eq!(s.idle_timeout, Duration::from_millis(900));
    let s = with_file(
        file,
        &[
            URLS,
            ("PER_TRY_TIMEOUT_MS", "70"),
            ("STREAM_IDLE_TIMEOUT_MS", "250"),
        ],
    )
    .unwrap();
    assert_eq!(s.per_try_timeout, Duration::from_millis(70));
    assert_eq!(s.first_token_timeout, Duration::from_millis(800));
    assert_eq!(s.idle_timeout, Duration::from_millis(250));
    assert_eq!(s.max_retry_after, Duration::from_secs(2));
}

#[test]
fn a_health_probe_never_outlasts_the_interval() {
    let s = from_env(&[URLS, ("HEALTH_CHECK_INTERVAL_MS", "500")]).unwrap();
    assert_eq!(s.health.timeout, Duration::from_millis(500));
}

#[test]
fn the_healthcheck_needs_only_host_and_port() {
    let args =
        Args::from_sources::<_, &str>([], &[("PORT", "8123"), ("LOG_FORMAT", "xml")]).unwrap();
    assert_eq!(args.listen().unwrap().1, 8123);
    let args = Args::from_sources::<_, &str>([], &[("PORT", "99999")]).unwrap();
    assert_eq!(fields(&args.listen().unwrap_err()), ["PORT"]);
}

#[test]
fn every_setting_is_a_variable_listed_in_the_help() {
    // Whitespace folded: clap wraps long lines, possibly inside `[env: NAME=value]`.
    let help = Args::command().render_help().to_string();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for arg in Args::command().get_arguments() {
        if arg.get_id() == "help" || arg.get_id() == "version" {
            continue;
        }
        let env = arg.get_env().and_then(|e| e.to_str());
        let Some(env) = env else {
            panic!("--{} has no variable", arg.get_id())
        };
        assert!(
            !arg.is_hide_set() && !arg.is_hide_env_set(),
            "{env} is hidden from --help"
        );
        assert!(help.contains(env), "{env} not in --help");
    }
}

#[test]
fn cors_is_off_by_default_and_a_bad_origin_is_named() {
    use http_edge::security::CorsOrigins;
    assert_eq!(from_env(&[URLS]).unwrap().cors, CorsOrigins::Off);
    let by_flag =
        Settings::from_sources(["--cors-allow-origins", "https://app.example.com"], &[URLS])
            .unwrap();
    let CorsOrigins::List(origins) = by_flag.cors else {
        panic!("a list: {:?}", by_flag.cors)
    };
    assert_eq!(origins, ["https://app.example.com"]);
    assert_eq!(
        from_env(&[URLS, ("CORS_ALLOW_ORIGINS", "*")]).unwrap().cors,
        CorsOrigins::Any
    );
    let problems = from_env(&[
        URLS,
        ("CORS_ALLOW_ORIGINS", "https://ok.example, evil.example/x"),
    ])
    .unwrap_err();
    assert_eq!(fields(&problems), ["CORS_ALLOW_ORIGINS"]);
    assert!(
        problem(&problems, "CORS_ALLOW_ORIGINS")
            .message
            .contains("evil.example/x")
    );
}

#[test]
fn input_limits_and_cache_bytes_are_settings_checked_at_start() {
    let s = from_env(&[
        URLS,
        ("MAX_TOKENS", "512"),
        ("MAX_MODEL_CHARS", "64"),
        ("MAX_MESSAGES", "10"),
        ("MAX_PROMPT_CHARS", "1000"),
        ("MAX_CHOICES", "2"),
        ("CACHE_MAX_BYTES", "1048576"),
        ("CACHE_MAX_ENTRY_BYTES", "4096"),
    ])
    .unwrap();
    let expected = InputLimits {
        max_tokens: 512,
        max_model_chars: 64,
        max_messages: 10,
        max_prompt_chars: 1000,
        max_choices: 2,
    };
    assert_eq!(s.limits, expected);
    assert_eq!(
        (s.cache.max_bytes, s.cache.max_entry_bytes),
        (1 << 20, 4096)
    );

    let file = "max_tokens = 300\n[cache]\nmax_bytes = 2048\nmax_entry_bytes = 1024\n";
    let s = with_file(file, &[URLS]).unwrap();
    assert_eq!(s.limits.max_tokens, 300);
    assert_eq!((s.cache.max_bytes, s.cache.max_entry_bytes), (2048, 1024));
    let s = with_file(
        file,
        &[URLS, ("MAX_TOKENS", "30"), ("CACHE_MAX_ENTRY_BYTES", "10")],
    )
    .unwrap();
    assert_eq!(s.limits.max_tokens, 30, "the variable wins");
    assert_eq!((s.cache.max_bytes, s.cache.max_entry_bytes), (2048, 10));

    let problems = from_env(&[
        URLS,
        ("MAX_TOKENS", "0"),
        ("MAX_MODEL_CHARS", "0"),
        ("MAX_MESSAGES", "many"),
        ("MAX_PROMPT_CHARS", "0"),
        ("MAX_CHOICES", "1000000"),
        ("CACHE_MAX_BYTES", "-1"),
        ("CACHE_MAX_ENTRY_BYTES", "0"),
    ])
    .unwrap_err();
    assert_eq!(
        fields(&problems),
        [
            "MAX_TOKENS",
            "MAX_MODEL_CHARS",
            "MAX_MESSAGES",
            "MAX_PROMPT_CHARS",
            "MAX_CHOICES",
            "CACHE_MAX_BYTES",
            "cache.max_entry_bytes",
        ]
    );
}
