//! The gateway's metrics.

use std::sync::Mutex;

use herald_core::metrics::{Counter, Gauge, Histogram, LATENCY_SECONDS, Render, SIZES};

#[derive(Debug)]
pub struct Metrics {
    pub connections: Gauge,
    pub handshakes: Counter,
    pub auth_failures: Mutex<Vec<(&'static str, u64)>>,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub replays: Counter,
    pub resets: Counter,
    pub gaps: Counter,
    pub gap_filled: Counter,
    pub replay_sizes: Histogram,
    pub replay_seconds: Histogram,
    pub push_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: Gauge::default(),
            handshakes: Counter::default(),
            auth_failures: Mutex::new(Vec::new()),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            replays: Counter::default(),
            resets: Counter::default(),
            gaps: Counter::default(),
            gap_filled: Counter::default(),
            replay_sizes: Histogram::new(SIZES),
            replay_seconds: Histogram::new(LATENCY_SECONDS),
            push_latency: Histogram::new(LATENCY_SECONDS),
        }
    }
}

impl Metrics {
    /// Counts a refused handshake or token by reason (a small fixed set of codes).
    pub fn auth_failure(&self, reason: &'static str) {
        // Failures are rare next to frames; a short locked scan is cheaper than a map.
        let mut f = self.auth_failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => f.push((reason, 1)),
        }
    }

    pub fn render(&self) -> String {
        let failures: Vec<(String, u64)> = self
            .auth_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(r, n)| (format!("reason=\"{r}\""), *n))
            .collect();
        let mut r = Render::default();
        r.gauge(
            "herald_gateway_connections",
            "Open WebSocket connections.",
            self.connections.get(),
        )
        .counter(
            "herald_gateway_handshakes_total",
            "Authenticated handshakes.",
            "",
            self.handshakes.get(),
        )
        .counters(
            "herald_gateway_auth_failures_total",
            "Refused tokens and handshakes by reason.",
            failures.iter().map(|(l, n)| (l.as_str(), *n)),
        )
        .counter(
            "herald_gateway_frames_in_total",
            "Frames received after hello.",
            "",
            self.frames_in.get(),
        )
        .counter(
            "herald_gateway_frames_out_total",
            "Frames sent.",
            "",
            self.frames_out.get(),
        )
        .counter(
            "herald_gateway_replays_total",
            "Replays from a cursor.",
            "",
            self.replays.get(),
        )
        .counter(
            "herald_gateway_resets_total",
            "Cursors too old or unknown.",
            "",
            self.resets.get(),
        )
        .counter(
            "herald_gateway_gaps_total",
            "Live gaps detected.",
            "",
            self.gaps.get(),
        )
        .counter(
            "herald_gateway_gap_filled_total",
            "Notifications fetched from the stream to fill live gaps.",
            "",
            self.gap_filled.get(),
        )
        .histogram(
            "herald_gateway_replay_size",
            "Notifications per replay.",
            &self.replay_sizes,
        )
        .histogram(
            "herald_gateway_replay_seconds",
            "Time to replay.",
            &self.replay_seconds,
        )
        .histogram(
            "herald_gateway_push_latency_seconds",
            "From acceptance by HERALD_IN to the live push.",
            &self.push_latency,
        );
        r.finish()
    }
}
