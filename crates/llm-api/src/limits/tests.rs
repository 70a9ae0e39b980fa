//! Each bound at its edge: exactly at the limit passes, one over fails naming the field.

use serde_json::json;

use super::*;
use crate::openai::ChatMessage;

fn limits() -> InputLimits {
    InputLimits {
        max_tokens: 100,
        max_model_chars: 10,
        max_messages: 3,
        max_prompt_chars: 20,
        max_choices: 4,
    }
}

fn chat() -> ChatCompletionRequest {
    ChatCompletionRequest::user("m", "hi")
}

fn field(result: Result<(), FieldError>) -> String {
    result.map_or_else(|e| e.field, |()| "ok".to_owned())
}

#[test]
fn model_names_of_the_documented_characters_pass() {
    for name in [
        "llama3.1:8b",
        "org/model",
        "gpt-4o-mini@2024",
        "A_b.C-d",
        "x",
    ] {
        assert!(model("model", name, MAX_MODEL_CHARS).is_ok(), "{name}");
    }
    for name in [
        "has space",
        "semi;colon",
        "ünïcode",
        "new\nline",
        "a*b",
        "q?x=1",
    ] {
        let error = model("model", name, MAX_MODEL_CHARS).unwrap_err();
        assert_eq!(error.field, "model", "{name}");
    }
    assert_eq!(field(model("model", "  ", 10)), "model");
}

#[test]
fn model_length_is_bounded_at_the_edge_and_never_echoed() {
    let mut req = chat();
    req.model = "a".repeat(10);
    assert!(req.validate_within(&limits()).is_ok());
    req.model = "a".repeat(11);
    let error = req.validate_within(&limits()).unwrap_err();
    assert_eq!(error.field, "model");
    assert!(error.message.contains("11 bytes"), "{error}");

    let huge = "x".repeat(900 * 1024);
    req.model = huge.clone();
    let error = req.validate_within(&limits()).unwrap_err();
    assert_eq!(error.field, "model");
    assert!(
        error.to_string().len() < 200,
        "the value is not echoed: {error}"
    );
    assert!(error.message.contains(&huge.len().to_string()));

    let exact = "b".repeat(MAX_MODEL_CHARS);
    let default = InputLimits::with_max_tokens(100);
    assert!(
        ChatCompletionRequest::user(exact.clone(), "hi")
            .validate_within(&default)
            .is_ok()
    );
    let over = format!("{exact}b");
    assert_eq!(
        field(ChatCompletionRequest::user(over, "hi").validate_within(&default)),
        "model"
    );
}

#[test]
fn message_count_is_bounded_at_the_edge() {
    let mut req = chat();
    req.messages = vec![ChatMessage::new("user", "a"); 3];
    assert!(req.validate_within(&limits()).is_ok());
    req.messages.push(ChatMessage::new("user", "a"));
    assert_eq!(field(req.validate_within(&limits())), "messages");
    req.messages.clear();
    assert_eq!(field(req.validate_within(&limits())), "messages");
}

#[test]
fn prompt_size_counts_every_message_and_content_part() {
    let mut req = chat();
    req.messages = vec![
        ChatMessage::new("system", "x".repeat(10)),
        ChatMessage {
            role: "user".to_owned(),
            content: json!([{"type": "text", "text": "é".repeat(5)}, {"type": "image_url"},
                {"type": "text", "text": "y".repeat(5)}]),
            extra: serde_json::Map::new(),
        },
    ];
    assert!(
        req.validate_within(&limits()).is_ok(),
        "20 characters, not bytes"
    );
    req.messages[0] = ChatMessage::new("system", "x".repeat(11));
    assert_eq!(field(req.validate_within(&limits())), "messages");
}

#[test]
fn only_the_documented_roles_are_accepted() {
    for role in ROLES {
        let mut req = chat();
        req.messages = vec![ChatMessage::new(role, "hi")];
        assert!(req.validate_within(&limits()).is_ok(), "{role}");
    }
    for role in ["root", "", "User", "function", " user"] {
        let mut req = chat();
        req.messages = vec![
            ChatMessage::new("user", "a"),
            ChatMessage::new("assistant", "b"),
            ChatMessage::new(role, "c"),
        ];
        assert_eq!(
            field(req.validate_within(&limits())),
            "messages[2].role",
            "{role:?}"
        );
    }
}

#[test]
fn n_is_bounded_at_the_edge() {
    let mut req = chat();
    for ok in [json!(1), json!(4), serde_json::Value::Null] {
        req.extra.insert("n".to_owned(), ok.clone());
        assert!(req.validate_within(&limits()).is_ok(), "{ok}");
    }
    for bad in [
        json!(0),
        json!(5),
        json!(1_000_000),
        json!(-1),
        json!(1.5),
        json!("2"),
    ] {
        req.extra.insert("n".to_owned(), bad.clone());
        assert_eq!(field(req.validate_within(&limits())), "n", "{bad}");
    }
    req.extra.insert("n".to_owned(), json!(MAX_CHOICES));
    assert!(
        req.validate_within(&InputLimits::with_max_tokens(100))
            .is_ok()
    );
    req.extra.insert("n".to_owned(), json!(MAX_CHOICES + 1));
    assert_eq!(
        field(req.validate_within(&InputLimits::with_max_tokens(100))),
        "n"
    );
}

#[test]
fn stop_is_bounded_in_count_and_length() {
    let mut req = chat();
    let at_edge = "s".repeat(MAX_STOP_CHARS);
    for ok in [
        json!(at_edge),
        json!(["a", "b", "c", at_edge]),
        json!([]),
        serde_json::Value::Null,
    ] {
        req.extra.insert("stop".to_owned(), ok);
        assert!(req.validate_within(&limits()).is_ok());
    }
    let over = format!("{at_edge}s");
    for (bad, named) in [
        (json!(over), "stop"),
        (json!(["a", "b", "c", "d", "e"]), "stop"),
        (json!(["a", over]), "stop[1]"),
        (json!(["a", 1]), "stop[1]"),
        (json!(7), "stop"),
    ] {
        req.extra.insert("stop".to_owned(), bad);
        assert_eq!(field(req.validate_within(&limits())), named);
    }
}

#[test]
fn token_budgets_use_the_limit() {
    let mut req = chat();
    req.max_tokens = Some(100);
    assert!(req.validate_within(&limits()).is_ok());
    req.max_tokens = Some(101);
    assert_eq!(field(req.validate_within(&limits())), "max_tokens");
    req.max_tokens = None;
    req.max_completion_tokens = Some(101);
    assert_eq!(
        field(req.validate_within(&limits())),
        "max_completion_tokens"
    );
}

#[test]
fn generate_requests_are_bounded_too() {
    let ok = GenerateRequest::new("p".repeat(20));
    assert!(ok.validate_within(&limits()).is_ok());
    assert_eq!(
        field(GenerateRequest::new("p".repeat(21)).validate_within(&limits())),
        "prompt"
    );
    let named = |model: &str| GenerateRequest {
        model: Some(model.to_owned()),
        ..GenerateRequest::new("hi")
    };
    assert!(named("org/m3:8b").validate_within(&limits()).is_ok());
    assert!(
        named("").validate_within(&limits()).is_ok(),
        "blank: default route"
    );
    assert!(named(&"m".repeat(10)).validate_within(&limits()).is_ok());
    assert_eq!(
        field(named(&"m".repeat(11)).validate_within(&limits())),
        "model"
    );
    assert_eq!(field(named("a b").validate_within(&limits())), "model");
    let user = |chars: usize| GenerateRequest {
        user_id: Some("u".repeat(chars)),
        ..GenerateRequest::new("hi")
    };
    assert!(user(MAX_USER_ID_CHARS).validate_within(&limits()).is_ok());
    assert_eq!(
        field(user(MAX_USER_ID_CHARS + 1).validate_within(&limits())),
        "user_id"
    );
}

#[test]
fn the_old_entry_points_apply_the_defaults() {
    let mut req = chat();
    req.messages[0].role = "root".to_owned();
    assert_eq!(field(req.validate(100)), "messages[0].role");
    let long = GenerateRequest::new("p".repeat(MAX_PROMPT_CHARS + 1));
    assert_eq!(field(long.validate(100)), "prompt");
}
