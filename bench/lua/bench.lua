-- One wrk script for every endpoint of the benchmark (bench/loadgen.py passes the arguments):
--   wrk -s bench/lua/bench.lua URL -- MODE TOKEN ARG NONCE THREADS CONNECTION
-- CONNECTION "close" (the default of bench/run.py) sends "Connection: close", so every request
-- comes on a new connection, as from a reverse proxy without upstream keep-alive; "keep-alive"
-- keeps connections open (see bench/README.md for why that is not the default).
-- MODE get:  ARG is the path; the same GET with the bearer token on every request.
-- MODE put:  ARG is a comma-separated list of source ids; each request sets frequency_in_minutes
--            of the next id to "360" on the first pass over the ids, "60" on the next, and so on,
--            so every PUT is a real change. Each wrk thread takes its own share of the ids, so two
--            threads never undo each other's change.
-- MODE post: creates a platform.google-analytics source; display names are unique per request
--            ("Bench <NONCE> <thread> <counter>", NONCE is random per run).
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles (µs).

local counter = 0
local threads = {}
local mode, path, nonce, static_request
local ids = {}
local headers = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  mode, nonce = args[1], args[4] or "x"
  local token, arg, nthreads = args[2], args[3], tonumber(args[5] or "1")
  if token and token ~= "-" then
    headers["Authorization"] = "Bearer " .. token
  end
  if (args[6] or "close") == "close" then
    headers["Connection"] = "close"
  end
  if mode == "get" then
    static_request = wrk.format("GET", arg, headers)
  elseif mode == "put" then
    headers["Content-Type"] = "application/json"
    local index = 0
    for id in string.gmatch(arg, "%d+") do
      if index % nthreads == (tid - 1) then table.insert(ids, id) end
      index = index + 1
    end
  elseif mode == "post" then
    headers["Content-Type"] = "application/json"
  else
    error("unknown mode " .. tostring(mode))
  end
end

function request()
  if static_request then
    return static_request
  end
  counter = counter + 1
  if mode == "put" then
    local n = #ids
    local id = ids[(counter - 1) % n + 1]
    local value = (math.floor((counter - 1) / n) % 2 == 0) and "360" or "60"
    local body = '{"properties":{"frequency_in_minutes":"' .. value .. '"}}'
    return wrk.format("PUT", "/v4/sources/" .. id, headers, body)
  end
  local body = string.format(
    '{"type":"platform.google-analytics","display_name":"Bench %s %d %d",' ..
    '"properties":{"start_date":"2024-01-01T00:00:00Z","frequency_in_minutes":"60"}}',
    nonce, tid, counter)
  return wrk.format("POST", "/v4/sources", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
