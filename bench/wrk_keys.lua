-- wrk script: GET <path> with an ApiKey header taken from a file of key values.
--
--   wrk ... -s bench/wrk_keys.lua http://127.0.0.1:PORT/PATH -- KEYS_FILE PATH MODE THREADS \
--       [METHOD [HEADER]]
--
-- METHOD (default GET) and HEADER (default ApiKey) give each request's method and the
-- header the line's value goes into. A line may hold a tab and then a body, sent with
-- "Content-Type: application/json" (e.g. POST /v1/apiKeys/verify's {"key": ...}).
-- MODE "random": each request uses a key picked at random from the file (many clients).
-- MODE "sequential": thread i of THREADS uses keys i+1, i+1+THREADS, ... in order, so that
-- every request carries a key not used before (until the file runs out, then it wraps).
-- Requests are formatted once in init(), as wrk's SCRIPTING advises, so that building them
-- costs the load generator nothing per request. done() prints one WRK_JSON line.

local thread_counter = 0

function setup(thread)
  thread:set("thread_index", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  local keys_file, path = args[1], args[2]
  mode = args[3] or "random"
  local threads = tonumber(args[4] or "1")
  local method = args[5] or "GET"
  local header = args[6] or "ApiKey"
  requests = {}
  for line in io.lines(keys_file) do
    if #line > 0 then
      local tab = string.find(line, "\t", 1, true)
      local headers = {}
      local body = nil
      if tab then
        headers[header] = string.sub(line, 1, tab - 1)
        headers["Content-Type"] = "application/json"
        body = string.sub(line, tab + 1)
      else
        headers[header] = line
      end
      requests[#requests + 1] = wrk.format(method, path, headers, body)
    end
  end
  count = #requests
  step = threads
  position = (thread_index or 0) + 1
  math.randomseed(os.time() + (thread_index or 0) * 7919)
end

function request()
  if mode == "sequential" then
    local chosen = requests[position]
    position = position + step
    if position > count then
      position = position - count
    end
    return chosen
  end
  return requests[math.random(count)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
