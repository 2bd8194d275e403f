-- wrk script for the polling scenario: every connection sends the metadata GET with
-- If-None-Match, waits for the answer, then waits `interval` ms before the next one (wrk
-- calls delay() per connection after each response), so each connection is one polling
-- client with at most one request in flight. Arguments after `--`: the ETag, the interval.
-- Prints the BENCH-WRK line of wrk_report.lua plus "not304", the answers other than 304.
local threads = {}
local interval = 100

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.headers["If-None-Match"] = args[1]
  interval = tonumber(args[2])
  not304 = 0
end

function delay()
  return interval
end

function response(status, headers, body)
  if status ~= 304 then
    not304 = not304 + 1
  end
end

done = function(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + t:get("not304")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH-WRK requests=%.0f bytes=%.0f duration_us=%.0f status=%.0f connect=%.0f read=%.0f write=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f not304=%.0f\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, n))
end
