use super::{configured, ids, registered};
use crate::discovery::merge::merge;
use crate::registry::InstanceSource;

#[test]
fn static_instances_come_first_in_order_then_registry_by_id() {
    let statics = [configured(9002), configured(9001)];
    let merged = merge(
        &statics,
        vec![registered("zeta", 8003), registered("alpha", 8001)],
    );
    assert_eq!(
        ids(&merged),
        ["127.0.0.1:9002", "127.0.0.1:9001", "alpha", "zeta"]
    );
}

#[test]
fn registry_entry_replaces_the_static_one_with_the_same_url_in_place() {
    let statics = [configured(8001), configured(8002)];
    let mut llm2 = registered("llm_service_2", 8002);
    llm2.url = "HTTP://127.0.0.1:8002/".to_owned();
    let merged = merge(&statics, vec![llm2, registered("llm_service_3", 8003)]);
    assert_eq!(
        ids(&merged),
        ["127.0.0.1:8001", "llm_service_2", "llm_service_3"]
    );
    assert_eq!(merged[1].url, "http://127.0.0.1:8002");
    assert_eq!(merged[1].source, InstanceSource::Registry);
    assert_eq!(merged[1].model(), Some("model-llm_service_2"));
    assert_eq!(merged[0].source, InstanceSource::Static);
}

#[test]
fn registry_duplicates_by_url_keep_the_lowest_id() {
    let merged = merge(
        &[],
        vec![
            registered("b", 8001),
            registered("a", 8001),
            registered("c", 8002),
        ],
    );
    assert_eq!(ids(&merged), ["a", "c"]);
}

#[test]
fn registry_entries_with_bad_urls_are_skipped() {
    let mut broken = registered("broken", 1);
    broken.url = "nonsense".to_owned();
    let merged = merge(&[configured(8001)], vec![broken, registered("ok", 8002)]);
    assert_eq!(ids(&merged), ["127.0.0.1:8001", "ok"]);
}

#[test]
fn empty_inputs_merge_to_nothing_or_to_either_side() {
    assert!(merge(&[], Vec::new()).is_empty());
    assert_eq!(ids(&merge(&[configured(1)], Vec::new())), ["127.0.0.1:1"]);
    assert_eq!(ids(&merge(&[], vec![registered("x", 2)])), ["x"]);
}
