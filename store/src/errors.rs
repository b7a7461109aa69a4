//! Every DynamoDB error, classified once: can retrying help (transient) or not (permanent)?
//!
//! Transient: throttling, server errors, timeouts, connection failures, a table that is missing
//! (being created or restored), transaction conflicts, and credential trouble that fixes itself:
//! expired or not-yet-valid credentials, keys the service does not recognise yet, and access
//! denied while a role or policy propagates (IAM changes take seconds to minutes to be seen
//! everywhere). A credential that stays wrong is bounded by the caller's delivery count and
//! then dead-lettered, from where it can be re-driven once fixed. Permanent: what the service
//! refuses for the request itself (a `ValidationException`, an item too large).

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Unavailable, throttled, timed out, unreachable, or credentials not (yet) usable: retry.
    Transient,
    /// The request itself was refused: retrying the same request cannot succeed.
    Permanent,
}

/// A store request that did not succeed. Every write of the store is conditional or
/// idempotent, so nothing it did is lost or doubled by retrying.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct StoreError {
    /// What was being done, e.g. `"dynamodb insert"`.
    pub op: &'static str,
    pub kind: ErrorKind,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn transient(op: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError { op, kind: ErrorKind::Transient, source: source.into() }
    }

    pub fn permanent(op: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError { op, kind: ErrorKind::Permanent, source: source.into() }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// Service error codes worth retrying (see the module docs).
pub const TRANSIENT_CODES: &[&str] = &[
    // Throttling and capacity.
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    // The service itself.
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    // Transactions that met another.
    "TransactionInProgressException",
    "TransactionConflictException",
    // A table being created or restored.
    "ResourceNotFoundException",
    // Credentials and permissions that are being rotated or propagated.
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
    "AccessDenied",
];

/// Whether a service error code is transient; an error without a code is judged by its HTTP
/// status instead (5xx and 429 are transient).
pub fn is_transient_code(code: Option<&str>, status: Option<u16>) -> bool {
    match code {
        Some(c) if !c.is_empty() => TRANSIENT_CODES.contains(&c),
        _ => status.is_some_and(|s| s >= 500 || s == 429),
    }
}

/// Classifies an SDK error (see the module docs).
pub fn classify<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::ServiceError(ctx) => is_transient_code(ctx.err().code(), Some(ctx.raw().status().as_u16())),
        // Credentials that could not be loaded (an instance role not there yet, an SSO session
        // being refreshed) fail while the request is built; anything else that fails there is
        // a request that will not build next time either.
        SdkError::ConstructionFailure(_) => mentions_credentials(&e),
        // Timeouts, connection failures, unreadable responses: the network or the server.
        _ => true,
    };
    if transient { StoreError::transient(op, e) } else { StoreError::permanent(op, e) }
}

fn mentions_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = format!("{err} {err:?}").to_ascii_lowercase();
        if text.contains("credential") || text.contains("identity") || text.contains("token") {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service(code: &str, status: u16) -> StoreError {
        let err = PutItemError::generic(ErrorMetadata::builder().code(code).message("test").build());
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        classify("test", SdkError::service_error(err, raw))
    }

    #[test]
    fn throttling_credentials_and_propagating_permissions_are_transient() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "ExpiredTokenException",
            "UnrecognizedClientException",
            "AccessDeniedException",
            "InternalServerError",
            "ResourceNotFoundException",
            "TransactionConflictException",
        ] {
            assert!(service(code, 400).is_transient(), "{code}");
        }
    }

    #[test]
    fn what_the_service_refuses_for_the_request_is_permanent() {
        for code in ["ValidationException", "ItemCollectionSizeLimitExceededException", "SerializationException"] {
            assert_eq!(service(code, 400).kind, ErrorKind::Permanent, "{code}");
        }
    }

    #[test]
    fn codeless_errors_follow_the_http_status() {
        assert!(service("", 503).is_transient());
        assert!(service("", 429).is_transient());
        assert!(!service("", 400).is_transient());
    }

    #[test]
    fn timeouts_are_transient_and_credential_loading_too() {
        let timeout: SdkError<PutItemError, Response> = SdkError::timeout_error("operation timed out");
        assert!(classify("test", timeout).is_transient());
        let creds: SdkError<PutItemError, Response> =
            SdkError::construction_failure("an error occurred while loading credentials");
        assert!(classify("test", creds).is_transient());
        let bad: SdkError<PutItemError, Response> = SdkError::construction_failure("missing field `table_name`");
        assert!(!classify("test", bad).is_transient());
    }
}
