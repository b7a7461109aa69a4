//! How many requests the store sent to DynamoDB, by operation: what the benchmark divides by
//! the recipients handled to print writes per recipient.

use herald_core::metrics::{Counter, Render};

/// One DynamoDB request kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    TransactWrite,
    BatchWrite,
    BatchGet,
    Get,
    Query,
    Update,
    Delete,
    Scan,
    /// Table administration (describe, create): start-up only.
    Admin,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Put,
        Op::TransactWrite,
        Op::BatchWrite,
        Op::BatchGet,
        Op::Get,
        Op::Query,
        Op::Update,
        Op::Delete,
        Op::Scan,
        Op::Admin,
    ];

    /// The `op` label value.
    pub fn label(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::TransactWrite => "transact_write",
            Op::BatchWrite => "batch_write",
            Op::BatchGet => "batch_get",
            Op::Get => "get",
            Op::Query => "query",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Scan => "scan",
            Op::Admin => "admin",
        }
    }
}

/// Requests sent, by [`Op`]; shared by every clone of a [`crate::Store`].
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: [Counter; Op::ALL.len()],
}

impl RequestCounts {
    pub fn count(&self, op: Op) {
        self.counts[op as usize].inc();
    }

    pub fn get(&self, op: Op) -> u64 {
        self.counts[op as usize].get()
    }

    /// Adds `herald_store_requests_total{op="…"}` to a metrics page.
    pub fn render(&self, r: &mut Render) {
        let labels: Vec<String> = Op::ALL.iter().map(|op| format!("op=\"{}\"", op.label())).collect();
        r.counters(
            "herald_store_requests_total",
            "DynamoDB requests sent, by operation.",
            labels.iter().zip(Op::ALL).map(|(l, op)| (l.as_str(), self.get(op))),
        );
    }
}
