//! The batch event the bridge sends the `deliver` Lambda function, and its partial-batch answer.
//!
//! AWS has no NATS event source, so the event is ours; its answer follows the shape Lambda uses
//! for SQS and Kinesis partial-batch responses, so the function reads like any other:
//!
//! ```json
//! {"max_deliver": 20,
//!  "records": [{"seq": 42, "subject": "herald.in.billing", "data": "<base64 body>",
//!               "published_ms": 1764331200000, "delivered": 1}]}
//! ```
//! answered by `{"batchItemFailures": [{"itemIdentifier": "42"}]}`, listing the records to
//! retry (by `HERALD_IN` sequence); every other record is done (delivered or dead-lettered).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Batch {
    /// The consumer's `max_deliver`: a record on its last delivery that fails is dead-lettered.
    #[serde(default)]
    pub max_deliver: i64,
    pub records: Vec<Record>,
}

/// One `HERALD_IN` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Its stream sequence: the item identifier of the answer.
    pub seq: u64,
    pub subject: String,
    /// The body, base64 (standard alphabet, padded).
    pub data: String,
    /// When `HERALD_IN` stored it, Unix milliseconds.
    pub published_ms: i64,
    /// This delivery's number, from 1.
    #[serde(default = "one")]
    pub delivered: u64,
    /// On a re-driven request: when the original was accepted (Unix ms; 0 when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_since_ms: Option<i64>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl BatchResponse {
    /// Sequences the function asked to retry; an identifier that is not one is ignored.
    pub fn failed_seqs(&self) -> Vec<u64> {
        self.batch_item_failures.iter().filter_map(|f| f.item_identifier.parse().ok()).collect()
    }
}
