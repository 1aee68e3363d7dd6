-- wrk script for benchmarks/run.py: POSTs OpenAI chat completions and prints a JSON summary.
--
--   wrk -t1 -c64 -d10s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:18902/v1/chat/completions \
--       -- <nonstream|stream> <model> <client-key> [nonce]
--
-- Every request body is unique (nonce + thread id + counter in the user message; give each wrk run its
-- own nonce), so a response cache in front of the upstream sees misses, as it would with real traffic. The summary line starts with BENCH_JSON;
-- latencies are in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local stream = false
local model = "bench-model"
local counter = 0
local prefix

function init(args)
  stream = args[1] == "stream"
  model = args[2] or model
  local key = args[3] or "sk-bench-client"
  local nonce = args[4] or tostring(os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
  local extra = ""
  if stream then
    extra = ',"stream":true,"stream_options":{"include_usage":true}'
  end
  prefix = '{"model":"' .. model .. '"' .. extra .. ',"max_tokens":64,"messages":[{"role":"user","content":"bench '
    .. nonce .. '-' .. tostring(tid) .. '-'
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. counter .. '"}]}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
