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

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format('{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,' ..
      '"p99_ms":%.3f,"max_ms":%.3f,"errors":{"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d}}\n', summary.requests, summary.duration / 1e6,
      summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, e.connect, e.read, e.write,
      e.status, e.timeout))
end
