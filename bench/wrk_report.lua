-- wrk script: prints one machine-readable line with the run's totals.
-- Latencies are in microseconds; "status" counts responses >= 400.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-WRK requests=%.0f bytes=%.0f duration_us=%.0f status=%.0f connect=%.0f read=%.0f write=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
