//! The runner's metrics.

use herald_core::metrics::{Counter, Gauge, Histogram, LATENCY_SECONDS, Render, SIZES};

#[derive(Debug)]
pub struct Metrics {
    pub handled: Counter,
    pub delivered: Counter,
    pub dead_lettered: Counter,
    pub retried: Counter,
    pub copies_stored: Counter,
    pub copies_published: Counter,
    pub copies_muted: Counter,
    pub in_flight: Gauge,
    pub handle_seconds: Histogram,
    pub recipients: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            handled: Counter::default(),
            delivered: Counter::default(),
            dead_lettered: Counter::default(),
            retried: Counter::default(),
            copies_stored: Counter::default(),
            copies_published: Counter::default(),
            copies_muted: Counter::default(),
            in_flight: Gauge::default(),
            handle_seconds: Histogram::new(LATENCY_SECONDS),
            recipients: Histogram::new(SIZES),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
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
            .counter("herald_functions_copies_stored_total", "Inbox items written.", "", self.copies_stored.get())
            .counter(
                "herald_functions_copies_published_total",
                "Per-user copies published to HERALD_USER.",
                "",
                self.copies_published.get(),
            )
            .counter(
                "herald_functions_copies_muted_total",
                "Inbox items stored but not published: the user muted the kind.",
                "",
                self.copies_muted.get(),
            )
            .gauge("herald_functions_in_flight", "Requests being handled now.", self.in_flight.get())
            .histogram("herald_functions_handle_seconds", "Time to handle one request.", &self.handle_seconds)
            .histogram("herald_functions_recipients", "Recipients per request after expansion.", &self.recipients);
        r.finish()
    }
}
