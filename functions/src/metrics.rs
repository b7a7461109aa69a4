//! The runner's metrics.

use herald_core::metrics::{Counter, Gauge, Histogram, LATENCY_SECONDS, Render, SIZES};

/// Where a request's time goes, each measured from its acceptance by `HERALD_IN`: taken by the
/// runner (`fetched`, once per request), its copy acknowledged by `HERALD_USER` (`published`,
/// per copy) and its item written (`stored`, per copy).
#[derive(Debug)]
pub struct Stages {
    pub fetched: Histogram,
    pub published: Histogram,
    pub stored: Histogram,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            fetched: Histogram::new(LATENCY_SECONDS),
            published: Histogram::new(LATENCY_SECONDS),
            stored: Histogram::new(LATENCY_SECONDS),
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub handled: Counter,
    pub delivered: Counter,
    pub dead_lettered: Counter,
    pub retried: Counter,
    pub deadline_exceeded: Counter,
    pub recipients_total: Counter,
    pub copies_stored: Counter,
    pub copies_published: Counter,
    pub copies_muted: Counter,
    pub copies_found: Counter,
    pub in_flight: Gauge,
    pub handle_seconds: Histogram,
    pub recipients: Histogram,
    pub stages: Stages,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            handled: Counter::default(),
            delivered: Counter::default(),
            dead_lettered: Counter::default(),
            retried: Counter::default(),
            deadline_exceeded: Counter::default(),
            recipients_total: Counter::default(),
            copies_stored: Counter::default(),
            copies_published: Counter::default(),
            copies_muted: Counter::default(),
            copies_found: Counter::default(),
            in_flight: Gauge::default(),
            handle_seconds: Histogram::new(LATENCY_SECONDS),
            recipients: Histogram::new(SIZES),
            stages: Stages::default(),
        }
    }
}

impl Metrics {
    /// The page, with the store's request counts (`herald_store_requests_total`) appended.
    pub fn render(&self, store: Option<&herald_store::RequestCounts>) -> String {
        let mut r = Render::default();
        r.counter("herald_functions_messages_total", "Requests taken from HERALD_IN.", "", self.handled.get())
            .counters(
                "herald_functions_outcomes_total",
                "Handling outcomes.",
                [
                    ("outcome=\"delivered\"", self.delivered.get()),
                    ("outcome=\"dead_lettered\"", self.dead_lettered.get()),
                    ("outcome=\"retried\"", self.retried.get()),
                ],
            )
            .counter(
                "herald_functions_deadline_exceeded_total",
                "Handlers stopped at HERALD_HANDLER_DEADLINE_SECONDS (then redelivered).",
                "",
                self.deadline_exceeded.get(),
            )
            .counter(
                "herald_functions_recipients_total",
                "Recipient copies handled (after team expansion), by delivered requests.",
                "",
                self.recipients_total.get(),
            )
            .counter("herald_functions_copies_stored_total", "Inbox items written.", "", self.copies_stored.get())
            .counter(
                "herald_functions_copies_published_total",
                "Per-user copies published to HERALD_USER.",
                "",
                self.copies_published.get(),
            )
            .counter(
                "herald_functions_copies_muted_total",
                "Copies of a kind the user muted: published with Herald-Muted, stored read, not pushed.",
                "",
                self.copies_muted.get(),
            )
            .counter(
                "herald_functions_copies_found_total",
                "Copies found already in HERALD_USER on a redelivery or re-drive (not published again).",
                "",
                self.copies_found.get(),
            )
            .gauge("herald_functions_in_flight", "Requests being handled now.", self.in_flight.get())
            .histogram("herald_functions_handle_seconds", "Time to handle one request.", &self.handle_seconds)
            .histogram("herald_functions_recipients", "Recipients per request after expansion.", &self.recipients)
            .histograms(
                "herald_functions_stage_seconds",
                "Time from acceptance by HERALD_IN to each stage: fetched by the runner, copy published (acked), \
                 item stored.",
                [
                    ("stage=\"fetched\"", &self.stages.fetched),
                    ("stage=\"published\"", &self.stages.published),
                    ("stage=\"stored\"", &self.stages.stored),
                ],
            );
        if let Some(store) = store {
            store.render(&mut r);
        }
        r.finish()
    }
}
