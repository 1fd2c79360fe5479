-- wrk script of the benchmark (tests/bench/run.sh): at the end of a run it
-- prints one line that the script parses, with exact counts instead of
-- wrk's rounded human-readable figures. Latencies are in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d bytes=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f" ..
      " connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration,
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout))
end
