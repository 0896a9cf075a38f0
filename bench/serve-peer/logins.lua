-- logins.lua — wrk script for bench/serve: POST /v1/logins of users drawn at random from the
-- campaign's recipients (u00000001 .. uN), or a share of users it does not know, with the
-- bearer token; prints one JSON line of results at the end (requests, errors, latency).
-- Environment: BENCH_TOKEN (the token), BENCH_USERS (N, default 1000000), BENCH_UNKNOWN (the
-- share of unknown users, 0 to 1, default 0).
local token = os.getenv("BENCH_TOKEN") or ""
local users = tonumber(os.getenv("BENCH_USERS") or "1000000")
local unknown = tonumber(os.getenv("BENCH_UNKNOWN") or "0")
local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}

function setup(thread)
   thread:set("seed", math.random(1, 2147483647))
end

function init(args)
   math.randomseed(seed)
end

function request()
   local user
   if math.random() >= unknown then
      user = string.format("u%08d", math.random(1, users))
   else
      user = string.format("x%09d", math.random(1, 10 * users))
   end
   local body = '{"user":"' .. user .. '","client_version":"4.6","platform":"windows"}'
   return wrk.format("POST", "/v1/logins", headers, body)
end

-- wrk 4.1 corrects its latency histogram for coordinated omission before done() sees it
-- (stats_correct in its wrk.c): every latency L of at least twice the interval I (the run's
-- duration divided by the requests a connection made) also counts as L - I, L - 2I, ... down
-- to above I, the requests a client sending every I would have had waiting. So one stall of
-- S ms adds about 64 * S / I samples spread up to S, and a few stalls set the p99. The
-- correction only adds, and adds from larger values to smaller, so undoing it from the
-- largest value down gives each request's own latency back: raw_p99_ms beside p99_ms.
local function percentile(values, counts, total, p)
   local rank, seen = math.floor(p / 100 * total + 0.5 + 0.5), 0
   for i = 1, #values do
      seen = seen + counts[i]
      if seen >= rank then return values[i] end
   end
   return values[#values] or 0
end

local function uncorrected(summary, latency)
   local conns = tonumber(os.getenv("BENCH_CONNECTIONS") or "64")
   local per_conn = math.floor(summary.requests / conns)
   local values, counts, total = {}, {}, 0
   for i = 1, #latency do
      local v, c = latency(i)
      values[#values + 1], counts[#counts + 1], total = v, c, total + c
   end
   if per_conn == 0 then return values, counts, total, total end
   local interval = math.floor(summary.duration / per_conn)
   local added, raw, n = {}, {}, 0
   for i = #values, 1, -1 do
      local v = values[i]
      local own = counts[i] - (added[v] or 0)
      raw[i] = own
      n = n + own
      if v >= 2 * interval and own > 0 then
         local m = v - interval
         while m > interval do
            added[m] = (added[m] or 0) + own
            m = m - interval
         end
      end
   end
   return values, raw, n, total
end

function done(summary, latency, requests)
   local e = summary.errors
   local values, raw, n, total = uncorrected(summary, latency)
   io.write(string.format('{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,' ..
      '"p99_ms":%.3f,"max_ms":%.3f,"raw_p50_ms":%.3f,"raw_p99_ms":%.3f,' ..
      '"raw_samples":%d,"samples":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d}}\n', summary.requests, summary.duration / 1e6,
      summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      percentile(values, raw, n, 50) / 1000, percentile(values, raw, n, 99) / 1000, n, total,
      e.connect, e.read, e.write, e.status, e.timeout))
end
