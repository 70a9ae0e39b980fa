//! Toxic parsing and the arithmetic of [`plan`]: explicit instants, seeded rngs.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;
use tokio::time::{Duration, Instant};

use super::plan::{self, Abort, LimitCounter, Pacer, ToxicRun, Write};
use super::*;

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

fn toxic(body: serde_json::Value) -> Toxic {
    Toxic::from_request(&body, 1).unwrap()
}

fn run_of(kind: ToxicKind, now: Instant) -> ToxicRun {
    let toxic = Toxic {
        name: "t".into(),
        stream: Stream::Downstream,
        toxicity: 1.0,
        kind,
        revision: 1,
    };
    ToxicRun::new(&toxic, now, &mut rng())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_request_gets_toxiproxy_defaults() {
    let t = toxic(json!({"type": "latency", "attributes": {"latency": 400}}));
    assert_eq!(t.name, "latency_downstream");
    assert_eq!(t.stream, Stream::Downstream);
    assert_eq!(t.toxicity, 1.0);
    assert_eq!(
        t.kind,
        ToxicKind::Latency {
            latency: 400,
            jitter: 0
        }
    );
    let view = serde_json::to_value(t.view()).unwrap();
    assert_eq!(
        view,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
               "toxicity": 1.0, "attributes": {"latency": 400, "jitter": 0}})
    );
    let up = toxic(json!({"type": "timeout", "stream": "upstream", "toxicity": 0.5}));
    assert_eq!(up.name, "timeout_upstream");
    assert_eq!(up.toxicity, 0.5);
    assert_eq!(up.kind, ToxicKind::Timeout { timeout: 0 });
}

#[test]
fn every_toxiproxy_type_parses() {
    for (kind, attributes) in [
        ("noop", json!({})),
        ("latency", json!({"latency": 1, "jitter": 2})),
        ("bandwidth", json!({"rate": 3})),
        ("slow_close", json!({"delay": 4})),
        ("timeout", json!({"timeout": 5})),
        ("reset_peer", json!({"timeout": 6})),
        (
            "slicer",
            json!({"average_size": 7, "size_variation": 8, "delay": 9}),
        ),
        ("limit_data", json!({"bytes": 10})),
    ] {
        let t = toxic(json!({"type": kind, "attributes": attributes}));
        assert_eq!(t.kind.type_name(), kind);
        assert_eq!(Value::Object(t.kind.attributes()), attributes, "{kind}");
    }
}

#[test]
fn bad_requests_are_refused() {
    for body in [
        json!({"type": "earthquake"}),
        json!({}),
        json!({"type": "latency", "stream": "sideways"}),
        json!({"type": "latency", "toxicity": 1.5}),
        json!({"type": "latency", "toxicity": "all"}),
        json!({"type": "latency", "attributes": {"latency": -1}}),
        json!({"type": "latency", "attributes": {"latency": 1.5}}),
        json!({"type": "latency", "attributes": {"latency": 86_400_001}}),
        json!({"type": "latency", "attributes": {"rate": 1}}),
        json!({"type": "latency", "attributes": [1]}),
        json!({"type": "slicer", "attributes": {"average_size": 0}}),
        json!([]),
    ] {
        let error = Toxic::from_request(&body, 1).unwrap_err();
        assert_eq!(error.status().as_u16(), 400, "{body}: {error}");
    }
}

#[test]
fn an_update_merges_attributes_and_keeps_name_type_and_stream() {
    let t = toxic(
        json!({"name": "slow", "type": "latency", "stream": "upstream",
                         "attributes": {"latency": 100, "jitter": 10}}),
    );
    let u = t
        .updated(&json!({"attributes": {"jitter": 20}, "toxicity": 0.25}), 2)
        .unwrap();
    assert_eq!(
        (u.name.as_str(), u.stream, u.toxicity, u.revision),
        ("slow", Stream::Upstream, 0.25, 2)
    );
    assert_eq!(
        u.kind,
        ToxicKind::Latency {
            latency: 100,
            jitter: 20
        }
    );
    assert!(t.updated(&json!({"attributes": {"rate": 1}}), 3).is_err());
}

#[test]
fn toxicity_is_drawn_with_the_given_chance() {
    let mut rng = rng();
    assert!((0..1000).all(|_| plan::draw(1.0, &mut rng)));
    assert!((0..1000).all(|_| !plan::draw(0.0, &mut rng)));
    let hits = (0..10_000).filter(|_| plan::draw(0.3, &mut rng)).count();
    assert!((2700..3300).contains(&hits), "{hits}");
}

#[test]
fn jitter_stays_within_its_bounds() {
    let mut rng = rng();
    assert_eq!(plan::latency_delay(400, 0, &mut rng), ms(400));
    let delays: Vec<Duration> = (0..1000)
        .map(|_| plan::latency_delay(100, 30, &mut rng))
        .collect();
    assert!(delays.iter().all(|d| (ms(70)..=ms(130)).contains(d)));
    assert!(delays.iter().any(|d| *d < ms(90)) && delays.iter().any(|d| *d > ms(110)));
    assert!((0..100).all(|_| plan::latency_delay(10, 50, &mut rng) <= ms(60)));
}

#[test]
fn latency_counts_from_when_the_chunk_was_read() {
    let t0 = Instant::now();
    let mut runs = vec![run_of(
        ToxicKind::Latency {
            latency: 400,
            jitter: 0,
        },
        t0,
    )];
    // Read at t0, planned 100 ms later (queued behind others): due at t0 + 400 ms.
    let plan = plan::plan(&mut runs, b"hi".to_vec(), t0, t0 + ms(100), &mut rng());
    assert_eq!(
        plan.writes,
        vec![Write {
            at: t0 + ms(400),
            data: b"hi".to_vec()
        }]
    );
    assert!(!plan.close);
}

#[test]
fn bandwidth_pays_each_piece_before_it_goes() {
    let t0 = Instant::now();
    let mut pacer = Pacer::default();
    // 10 KB/s = 10 bytes per ms; pieces of at most 100 ms = 1000 bytes.
    let writes = pacer.pace(
        vec![Write {
            at: t0,
            data: vec![0; 2500],
        }],
        10,
    );
    let shape: Vec<(Duration, usize)> = writes.iter().map(|w| (w.at - t0, w.data.len())).collect();
    assert_eq!(
        shape,
        vec![(ms(100), 1000), (ms(200), 1000), (ms(250), 500)]
    );
    // A write ready before the link is free waits for it…
    let next = pacer.pace(
        vec![Write {
            at: t0 + ms(10),
            data: vec![0; 100],
        }],
        10,
    );
    assert_eq!(next[0].at - t0, ms(260));
    // …and an idle link earns no credit.
    let later = pacer.pace(
        vec![Write {
            at: t0 + ms(1000),
            data: vec![0; 100],
        }],
        10,
    );
    assert_eq!(later[0].at - t0, ms(1010));
    assert_eq!(plan::transfer_time(1000, 1), Duration::from_secs(1));
}

#[test]
fn slicer_sizes_cover_the_chunk_within_the_variation() {
    let mut rng = rng();
    for len in [0, 1, 5, 99, 4096] {
        let sizes = plan::slice_sizes(len, 10, 4, &mut rng);
        assert_eq!(sizes.iter().sum::<usize>(), len);
        assert!(sizes.iter().all(|s| (1..=14).contains(s)), "{sizes:?}");
        let (last, rest) = sizes.split_last().unwrap_or((&0, &[]));
        assert!(rest.iter().all(|s| *s >= 6), "{sizes:?}");
        assert!(*last >= 1 || len == 0);
    }
    // A variation past the average still gives pieces of at least one byte.
    let sizes = plan::slice_sizes(50, 2, 5, &mut rng);
    assert!(sizes.iter().all(|s| (1..=7).contains(s)));
}

#[test]
fn slicer_spaces_pieces_by_its_delay() {
    let t0 = Instant::now();
    let mut runs = vec![run_of(
        ToxicKind::Slicer {
            average_size: 2,
            size_variation: 0,
            delay: 1000,
        },
        t0,
    )];
    let plan = plan::plan(&mut runs, b"abcdef".to_vec(), t0, t0, &mut rng());
    let shape: Vec<(Duration, &[u8])> = plan
        .writes
        .iter()
        .map(|w| (w.at - t0, w.data.as_slice()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (ms(0), &b"ab"[..]),
            (ms(1), &b"cd"[..]),
            (ms(2), &b"ef"[..])
        ]
    );
}

#[test]
fn limit_data_counts_across_chunks_and_closes_at_the_limit() {
    let mut counter = LimitCounter::default();
    assert_eq!(counter.admit(4, 10), (4, false));
    assert_eq!(counter.admit(4, 10), (4, false));
    assert_eq!(counter.admit(4, 10), (2, true));
    assert_eq!(counter.admit(4, 10), (0, true));
    assert_eq!(LimitCounter::default().admit(3, 3), (3, true));
    assert_eq!(LimitCounter::default().admit(3, 0), (0, true));

    let t0 = Instant::now();
    let mut runs = vec![run_of(ToxicKind::LimitData { bytes: 5 }, t0)];
    let first = plan::plan(&mut runs, b"abc".to_vec(), t0, t0, &mut rng());
    assert_eq!(
        (first.writes[0].data.as_slice(), first.close),
        (&b"abc"[..], false)
    );
    let second = plan::plan(&mut runs, b"defg".to_vec(), t0, t0, &mut rng());
    assert_eq!(
        (second.writes[0].data.as_slice(), second.close),
        (&b"de"[..], true)
    );
}

#[test]
fn timeout_drops_data_and_closes_after_its_time() {
    let t0 = Instant::now();
    let mut runs = vec![run_of(ToxicKind::Timeout { timeout: 300 }, t0)];
    let plan = plan::plan(&mut runs, b"lost".to_vec(), t0, t0 + ms(10), &mut rng());
    assert!(plan.writes.is_empty());
    assert_eq!(plan::deadline(&runs), Some((t0 + ms(300), Abort::Close)));
    let never = vec![run_of(ToxicKind::Timeout { timeout: 0 }, t0)];
    assert_eq!(plan::deadline(&never), None);
}

#[test]
fn reset_peer_arms_on_the_first_data() {
    let t0 = Instant::now();
    let mut runs = vec![run_of(ToxicKind::ResetPeer { timeout: 50 }, t0)];
    assert_eq!(plan::deadline(&runs), None);
    let plan = plan::plan(&mut runs, b"x".to_vec(), t0, t0 + ms(20), &mut rng());
    assert!(plan.writes.is_empty());
    assert_eq!(plan::deadline(&runs), Some((t0 + ms(70), Abort::Reset)));
    plan::plan(&mut runs, b"y".to_vec(), t0, t0 + ms(40), &mut rng());
    assert_eq!(plan::deadline(&runs), Some((t0 + ms(70), Abort::Reset)));
}

#[test]
fn slow_close_delays_the_close_by_the_longest_delay() {
    let t0 = Instant::now();
    let runs = vec![
        run_of(ToxicKind::SlowClose { delay: 100 }, t0),
        run_of(ToxicKind::SlowClose { delay: 250 }, t0),
    ];
    assert_eq!(plan::close_delay(&runs), ms(250));
    assert_eq!(plan::close_delay(&[]), Duration::ZERO);
}

#[test]
fn a_toxic_not_drawn_does_nothing() {
    let t0 = Instant::now();
    let mut not_drawn = run_of(ToxicKind::Timeout { timeout: 1 }, t0);
    not_drawn.enabled = false;
    let mut runs = vec![not_drawn];
    let plan = plan::plan(&mut runs, b"ok".to_vec(), t0, t0, &mut rng());
    assert_eq!(plan.writes.len(), 1);
    assert_eq!(plan::deadline(&runs), None);
}

#[test]
fn sync_keeps_state_draws_new_toxics_and_drops_removed_ones() {
    let t0 = Instant::now();
    let mut rng = rng();
    let mut limit = toxic(json!({"type": "limit_data", "attributes": {"bytes": 10}}));
    limit.revision = 1;
    let mut up = toxic(json!({"type": "latency", "stream": "upstream"}));
    up.revision = 2;
    let mut runs = Vec::new();
    plan::sync(
        &mut runs,
        &[limit.clone(), up.clone()],
        Stream::Downstream,
        t0,
        &mut rng,
    );
    assert_eq!(runs.len(), 1, "only the downstream toxic");
    plan::plan(&mut runs, vec![0; 6], t0, t0, &mut rng);

    let mut timeout = toxic(json!({"type": "timeout", "attributes": {"timeout": 100}}));
    timeout.revision = 3;
    plan::sync(
        &mut runs,
        &[limit.clone(), timeout.clone()],
        Stream::Downstream,
        t0 + ms(50),
        &mut rng,
    );
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].since, t0 + ms(50), "a new toxic starts when seen");
    assert_eq!(plan::deadline(&runs), Some((t0 + ms(150), Abort::Close)));

    plan::sync(
        &mut runs,
        &[limit],
        Stream::Downstream,
        t0 + ms(60),
        &mut rng,
    );
    // The limit kept its count: 6 bytes went, 4 are left.
    let plan = plan::plan(&mut runs, vec![0; 6], t0, t0, &mut rng);
    assert_eq!((plan.writes[0].data.len(), plan.close), (4, true));
}

#[test]
fn toxics_chain_in_order() {
    let t0 = Instant::now();
    let mut runs = vec![
        run_of(
            ToxicKind::Latency {
                latency: 100,
                jitter: 0,
            },
            t0,
        ),
        run_of(ToxicKind::Bandwidth { rate: 1 }, t0),
    ];
    // 50 bytes at 1 byte/ms after 100 ms of latency: due at 150 ms.
    let plan = plan::plan(&mut runs, vec![0; 50], t0, t0, &mut rng());
    assert_eq!(plan.writes.len(), 1);
    assert_eq!(plan.writes[0].at - t0, ms(150));
}
