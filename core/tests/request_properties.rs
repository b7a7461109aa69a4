//! Property tests of request validation: whatever bytes arrive, `parse` answers (never panics),
//! and it accepts exactly the requests the contract allows.

use herald_core::request::{InvalidRequest, MAX_ID_BYTES, MAX_REQUEST_BYTES, NotificationRequest, Recipients};
use proptest::prelude::*;
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time")
}

/// Ids around the limits: empty, short, any UTF-8, and just under and over 256 bytes.
fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{1,40}",
        Just("x".repeat(MAX_ID_BYTES)),
        Just("x".repeat(MAX_ID_BYTES + 1)),
        Just("é".repeat(MAX_ID_BYTES / 2 + 1)),
    ]
}

fn any_request() -> impl Strategy<Value = NotificationRequest> {
    (
        any_id(),
        prop::collection::vec(any_id(), 0..4),
        prop::collection::vec(any_id(), 0..3),
        prop_oneof![Just(String::new()), "[a-z.]{1,20}"],
        "\\PC{0,60}",
        prop::option::of("\\PC{0,60}"),
        prop::option::of(prop_oneof![
            Just("2026-11-28T12:00:00Z".to_owned()),
            Just("yesterday".to_owned()),
            "\\PC{0,30}"
        ]),
    )
        .prop_map(|(id, users, teams, kind, title, body, created_at)| NotificationRequest {
            id,
            recipients: Recipients { users, teams },
            kind,
            title,
            body,
            data: None,
            created_at,
        })
}

fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

proptest! {
    #[test]
    fn arbitrary_bytes_get_an_answer(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = NotificationRequest::parse(&body, now());
    }

    #[test]
    fn arbitrary_json_gets_an_answer(text in "\\{(\"[a-z_]{1,12}\": ?(\"\\PC{0,20}\"|[0-9]{1,5}|null|\\[\\]|\\{\\}|true), ?){0,6}\\}") {
        let _ = NotificationRequest::parse(text.as_bytes(), now());
    }

    /// Valid exactly when the contract says so, and the same through JSON as in memory.
    #[test]
    fn accepts_exactly_what_the_contract_allows(r in any_request()) {
        let should = id_ok(&r.id)
            && !(r.recipients.users.is_empty() && r.recipients.teams.is_empty())
            && r.recipients.users.iter().all(|u| id_ok(u))
            && r.recipients.teams.iter().all(|t| id_ok(t))
            && !r.kind.is_empty()
            && r.created_at.as_deref().is_none_or(|c| c == "2026-11-28T12:00:00Z"
                || time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).is_ok());
        let body = serde_json::to_vec(&r).expect("serializes");
        let parsed = NotificationRequest::parse(&body, now());
        if body.len() > MAX_REQUEST_BYTES {
            prop_assert_eq!(parsed, Err(InvalidRequest::TooLarge(body.len())));
        } else {
            prop_assert_eq!(parsed.is_ok(), should, "{:?}", parsed);
            prop_assert_eq!(parsed, r.clone().validate(now()));
        }
        if let Ok(v) = r.clone().validate(now()) {
            prop_assert_eq!(v.request, r);
        }
    }
}
