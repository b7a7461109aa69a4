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
    pub replays_limited: Counter,
    pub resets: Counter,
    pub gaps: Counter,
    pub gap_filled: Counter,
    pub overflows: Counter,
    pub stale_reads: Counter,
    pub settle_catchups: Counter,
    pub slow_closes: Counter,
    pub ping_timeouts: Counter,
    pub revoked_closes: Counter,
    pub rate_limited: Counter,
    pub refused_connections: Mutex<Vec<(&'static str, u64)>>,
    pub refreshes: Counter,
    pub replay_sizes: Histogram,
    pub replay_seconds: Histogram,
    pub push_latency: Histogram,
    /// From acceptance by `HERALD_IN` to a session taking the live copy (`stage="received"`).
    pub received_latency: Histogram,
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
            replays_limited: Counter::default(),
            resets: Counter::default(),
            gaps: Counter::default(),
            gap_filled: Counter::default(),
            overflows: Counter::default(),
            stale_reads: Counter::default(),
            settle_catchups: Counter::default(),
            slow_closes: Counter::default(),
            ping_timeouts: Counter::default(),
            revoked_closes: Counter::default(),
            rate_limited: Counter::default(),
            refused_connections: Mutex::new(Vec::new()),
            refreshes: Counter::default(),
            replay_sizes: Histogram::new(SIZES),
            replay_seconds: Histogram::new(LATENCY_SECONDS),
            push_latency: Histogram::new(LATENCY_SECONDS),
            received_latency: Histogram::new(LATENCY_SECONDS),
        }
    }
}

impl Metrics {
    /// Counts a refused handshake or token by reason (a small fixed set of codes).
    pub fn auth_failure(&self, reason: &'static str) {
        bump(&self.auth_failures, reason);
    }

    /// Counts an upgrade refused before it happened, by reason.
    pub fn refused(&self, reason: &'static str) {
        bump(&self.refused_connections, reason);
    }

    pub fn render(&self) -> String {
        let failures = labelled(&self.auth_failures);
        let refused = labelled(&self.refused_connections);
        let mut r = Render::default();
        r.gauge("herald_gateway_connections", "Open WebSocket connections.", self.connections.get())
            .counter("herald_gateway_handshakes_total", "Authenticated handshakes.", "", self.handshakes.get())
            .counters(
                "herald_gateway_auth_failures_total",
                "Refused tokens and handshakes by reason.",
                failures.iter().map(|(l, n)| (l.as_str(), *n)),
            )
            .counters(
                "herald_gateway_refused_total",
                "Upgrades refused before the WebSocket opened, by reason.",
                refused.iter().map(|(l, n)| (l.as_str(), *n)),
            )
            .counter(
                "herald_gateway_slow_closes_total",
                "Sessions closed 4029 as too slow.",
                "",
                self.slow_closes.get(),
            )
            .counter(
                "herald_gateway_ping_timeouts_total",
                "Peers that did not answer a ping.",
                "",
                self.ping_timeouts.get(),
            )
            .counter(
                "herald_gateway_revoked_closes_total",
                "Open sessions closed by a revocation.",
                "",
                self.revoked_closes.get(),
            )
            .counter(
                "herald_gateway_rate_limited_total",
                "Sessions closed for too many frames.",
                "",
                self.rate_limited.get(),
            )
            .counter("herald_gateway_refreshes_total", "In-band token refreshes.", "", self.refreshes.get())
            .counter("herald_gateway_frames_in_total", "Frames received after hello.", "", self.frames_in.get())
            .counter("herald_gateway_frames_out_total", "Frames sent.", "", self.frames_out.get())
            .counter("herald_gateway_replays_total", "Replays from a cursor.", "", self.replays.get())
            .counter(
                "herald_gateway_replays_limited_total",
                "Sessions closed with 4029 because the user's replays had read their byte budget.",
                "",
                self.replays_limited.get(),
            )
            .counter("herald_gateway_resets_total", "Cursors too old or unknown.", "", self.resets.get())
            .counter("herald_gateway_gaps_total", "Live gaps detected.", "", self.gaps.get())
            .counter(
                "herald_gateway_gap_filled_total",
                "Notifications fetched from the stream to fill live gaps.",
                "",
                self.gap_filled.get(),
            )
            .counter(
                "herald_gateway_mailbox_overflows_total",
                "Live mailboxes that overflowed (the session caught up from the stream).",
                "",
                self.overflows.get(),
            )
            .counter(
                "herald_gateway_stale_reads_total",
                "Direct Get answers short of a sequence known to exist (a lagging replica).",
                "",
                self.stale_reads.get(),
            )
            .counter(
                "herald_gateway_settle_catchups_total",
                "Sessions that found missed notifications when their interest had settled.",
                "",
                self.settle_catchups.get(),
            )
            .histogram("herald_gateway_replay_size", "Notifications per replay.", &self.replay_sizes)
            .histogram("herald_gateway_replay_seconds", "Time to replay.", &self.replay_seconds)
            .histogram(
                "herald_gateway_push_latency_seconds",
                "From acceptance by HERALD_IN to the live push.",
                &self.push_latency,
            )
            .histograms(
                "herald_gateway_stage_seconds",
                "From acceptance by HERALD_IN to a session receiving the live copy (received) and queueing its \
                 frame for the socket (written).",
                [("stage=\"received\"", &self.received_latency), ("stage=\"written\"", &self.push_latency)],
            );
        r.finish()
    }
}

// Labelled counters are rare events (refusals by reason); a short locked scan beats a map.
fn bump(series: &Mutex<Vec<(&'static str, u64)>>, reason: &'static str) {
    let mut f = series.lock().unwrap_or_else(|p| p.into_inner());
    match f.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => f.push((reason, 1)),
    }
}

fn labelled(series: &Mutex<Vec<(&'static str, u64)>>) -> Vec<(String, u64)> {
    series.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(r, n)| (format!("reason=\"{r}\""), *n)).collect()
}
