//! Prometheus metrics: request counts and latencies per route, plus the cache's counters,
//! read from [`Cache::stats`] at scrape time.
//!
//! The recorder is owned by the app state rather than installed globally, so several apps (in
//! tests) each keep their own numbers and nothing listens on an extra port: `GET /metrics`
//! renders it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use cache_runtime::rate_limit::RateLimitStats;
use cache_runtime::{Cache, L1Stats, PrefixStats};
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::RateLimits;

/// Latency histogram buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// This app's metrics registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The request metrics' handles by route, registered once: looking a metric up in the
    /// recorder by its labels costs allocations and hashing on every request.
    requests: RwLock<HashMap<Box<str>, Vec<RequestHandles>>>,
}

/// The request counter and latency histogram of one route, method and status.
#[derive(Debug)]
struct RequestHandles {
    method: &'static str,
    status: u16,
    count: Counter,
    latency: Histogram,
}

impl RequestHandles {
    fn record(&self, seconds: f64) {
        self.count.increment(1);
        self.latency.record(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        // `set_buckets` only fails for an empty list.
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                requests: RwLock::default(),
            }),
        }
    }

    /// Records one finished request. A method other than the nine standard ones is recorded
    /// as `other` (see [`method_label`]).
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let seconds = elapsed.as_secs_f64();
        let same = |h: &RequestHandles| h.status == status && h.method == method;
        {
            let requests = self
                .inner
                .requests
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = requests.get(route).and_then(|v| v.iter().find(|h| same(h))) {
                handles.record(seconds);
                return;
            }
        }
        let handles = metrics::with_local_recorder(&self.inner.recorder, || {
            let route = route.to_owned();
            RequestHandles {
                count: counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.to_string()),
                latency: histogram!("http_request_duration_seconds", "method" => method, "route" => route),
                method,
                status,
            }
        });
        handles.record(seconds);
        let mut requests = self
            .inner
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let known = requests.entry(route.into()).or_default();
        // Another request may have registered the same metric meanwhile (the recorder hands out
        // the same one either way).
        if !known.iter().any(same) {
            known.push(handles);
        }
    }

    /// The Prometheus text exposition, with `cache`'s and `limits`' counters as of now.
    pub fn render(&self, cache: &Cache, limits: &RateLimits) -> String {
        let stats = cache.stats();
        metrics::with_local_recorder(&self.inner.recorder, || {
            for limiter in limits.stats() {
                record_limiter(&limiter);
            }
            for (prefix, counters) in &stats.prefixes {
                record_prefix(prefix, counters);
            }
            gauge!("cache_hit_ratio").set(stats.hit_ratio);
            gauge!("cache_degraded").set(if stats.degraded { 1.0 } else { 0.0 });
            gauge!("cache_degraded_seconds").set(stats.degraded_seconds);
            gauge!("cache_pending_invalidations").set(stats.pending_invalidations as f64);
            if let Some(l1) = &stats.l1 {
                record_l1(l1);
            }
            let mode = serde_json::to_value(stats.mode).unwrap_or_default();
            for name in ["redis", "memory", "disabled"] {
                let current = mode.as_str() == Some(name);
                gauge!("cache_mode", "mode" => name).set(if current { 1.0 } else { 0.0 });
            }
        });
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }
}

/// The `method` label of a request: the method itself for the nine standard methods
/// (`GET`, `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`, `OPTIONS`, `CONNECT`, `TRACE`), else
/// `other`.
///
/// HTTP lets a client send any token as a method, and every label value is a series of its
/// own, registered for good: without this, a client looping over random method names would
/// grow the registry and the exposition without bound.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method)
        .unwrap_or("other")
}

/// Counters of one key prefix; they only grow, so `absolute` keeps them monotonic.
fn record_prefix(prefix: &str, s: &PrefixStats) {
    let values = [
        ("cache_hits_total", s.hits),
        ("cache_misses_total", s.misses),
        ("cache_stale_total", s.stale),
        ("cache_sets_total", s.sets),
        ("cache_errors_total", s.errors),
        ("cache_invalidations_total", s.invalidations),
        ("cache_decode_failures_total", s.decode_failures),
        ("cache_loads_total", s.loads),
        ("cache_coalesced_total", s.coalesced),
    ];
    for (name, value) in values {
        counter!(name, "prefix" => prefix.to_owned()).absolute(value);
    }
}

/// The two-level cache's L1 (with `CACHE_L1=true`).
fn record_l1(s: &L1Stats) {
    let counters = [
        ("cache_l1_hits_total", s.hits),
        ("cache_l1_misses_total", s.misses),
        ("cache_l1_entry_only_reads_total", s.entry_only_reads),
        ("cache_l1_fills_total", s.fills),
        ("cache_l1_flushes_total", s.flushes),
        ("cache_l1_messages_total", s.messages),
    ];
    for (name, value) in counters {
        counter!(name).absolute(value);
    }
    gauge!("cache_l1_live").set(if s.live { 1.0 } else { 0.0 });
    gauge!("cache_l1_entries").set(s.entries as f64);
    gauge!("cache_l1_markers").set(s.markers as f64);
    gauge!("cache_l1_lag_last_seconds").set(s.lag_last_us as f64 / 1e6);
    gauge!("cache_l1_lag_max_seconds").set(s.lag_max_us as f64 / 1e6);
}

fn record_limiter(s: &RateLimitStats) {
    let name = || s.name.clone();
    for (decision, value) in [("allowed", s.allowed), ("limited", s.limited)] {
        counter!("rate_limit_decisions_total", "limiter" => name(), "decision" => decision)
            .absolute(value);
    }
    for (mode, value) in [("local", s.local), ("open", s.open), ("closed", s.closed)] {
        counter!("rate_limit_fallback_total", "limiter" => name(), "mode" => mode).absolute(value);
    }
    counter!("rate_limit_redis_errors_total", "limiter" => name()).absolute(s.redis_errors);
    for mode in ["redis", "memory", "local", "open", "closed"] {
        let current = if s.mode == mode { 1.0 } else { 0.0 };
        gauge!("rate_limit_mode", "limiter" => name(), "mode" => mode).set(current);
    }
}

fn describe() {
    describe_counter!(
        "rate_limit_decisions_total",
        "Rate-limit checks by limiter and decision (allowed, limited)"
    );
    describe_counter!(
        "rate_limit_fallback_total",
        "Rate-limit checks decided without Redis, by limiter and mode (local, open, closed)"
    );
    describe_counter!(
        "rate_limit_redis_errors_total",
        "Rate-limit checks whose Redis call failed"
    );
    describe_gauge!(
        "rate_limit_mode",
        "1 for who decides a limiter's checks now (redis, memory, or the failure mode)"
    );
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and route"
    );
    describe_counter!(
        "cache_hits_total",
        "Cache reads served from the cache, per key prefix"
    );
    describe_counter!(
        "cache_misses_total",
        "Cache reads that found nothing usable, per key prefix"
    );
    describe_counter!(
        "cache_stale_total",
        "Misses because of a newer invalidation, per key prefix"
    );
    describe_counter!("cache_sets_total", "Cache entries written, per key prefix");
    describe_counter!("cache_errors_total", "Cache store failures, per key prefix");
    describe_counter!(
        "cache_invalidations_total",
        "Invalidations issued, per key prefix"
    );
    describe_counter!(
        "cache_decode_failures_total",
        "Corrupt or foreign entries, per key prefix"
    );
    describe_counter!(
        "cache_loads_total",
        "Loader (database) runs, per key prefix"
    );
    describe_counter!(
        "cache_coalesced_total",
        "Calls that shared another call's load, per key prefix"
    );
    describe_gauge!("cache_hit_ratio", "hits / (hits + misses) since start");
    describe_gauge!("cache_degraded", "1 while Redis is enabled but not serving");
    describe_gauge!(
        "cache_degraded_seconds",
        "Total seconds spent degraded since start"
    );
    describe_gauge!(
        "cache_pending_invalidations",
        "Invalidations waiting for Redis to return"
    );
    describe_gauge!(
        "cache_mode",
        "1 for the store serving now (redis, memory or disabled)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_labels() {
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
        ] {
            assert_eq!(method_label(method), method);
        }
        for method in ["get", "PROPFIND", "XYZZY", ""] {
            assert_eq!(method_label(method), "other");
        }
    }
}
